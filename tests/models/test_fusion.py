from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from events.catalogue import LabelScore, PhraseHit
from models.fusion import (
    Accumulation,
    FusedScore,
    FusionConfig,
    StreamFusion,
    explain,
    loudness_weight,
    on_fusion_scale,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
SCREAM = (LabelScore(label="scream", score=0.93), LabelScore(label="speech", score=0.2))
HELP = (PhraseHit(phrase="help me", matched_text="help me", score=0.95, start_s=12.4, end_s=12.9),)


def fuse(
    fusion: StreamFusion,
    probability: float,
    *,
    phrases: tuple[PhraseHit, ...] = (),
    dbfs: float = -20.0,
    pitch: float = 0.0,
    labels: tuple[LabelScore, ...] = SCREAM,
    now: datetime = NOW,
) -> FusedScore:
    return fusion.fuse(
        now=now, acoustic_probability=probability, labels=labels, phrases=phrases, rms_dbfs=dbfs, pitch_hz=pitch
    )


def test_phrase_and_acoustic_evidence_combine_by_noisy_or() -> None:
    fusion = StreamFusion(FusionConfig())
    result = fuse(fusion, 0.5, phrases=HELP)
    assert result.score == pytest.approx(1 - 0.5 * (1 - 0.95 * 0.9))
    assert result.is_distress
    assert result.reason == "scream 0.93 + 'help me' at 12.4 s (-20 dBFS)"


def test_quiet_audio_cannot_fire_on_acoustics_alone() -> None:
    fusion = StreamFusion(FusionConfig())
    assert not fuse(fusion, 0.99, dbfs=-65.0).is_distress
    assert loudness_weight(-51.0, FusionConfig()) == pytest.approx(0.5)
    assert fuse(fusion, 0.99, dbfs=-30.0).is_distress


def test_hysteresis_holds_then_releases() -> None:
    fusion = StreamFusion(FusionConfig(threshold=0.6, hysteresis=0.15))
    decisions = [fuse(fusion, p).is_distress for p in (0.55, 0.65, 0.5, 0.46, 0.44, 0.55)]
    assert decisions == [False, True, True, True, False, False]


def test_false_alarms_raise_threshold_bounded_and_decaying() -> None:
    config = FusionConfig(threshold=0.6, false_alarm_step=0.05, false_alarm_max_raise=0.2)
    fusion = StreamFusion(config)
    for day in range(10):
        fusion.record_false_alarm(NOW - timedelta(hours=day))
    assert fusion.threshold(NOW) == pytest.approx(0.8)  # capped at +0.2
    assert fusion.threshold(NOW + timedelta(days=30)) == pytest.approx(0.6)  # forgotten after the memory window


def test_sensitivity_moves_the_threshold() -> None:
    assert StreamFusion(FusionConfig(), sensitivity=2.0).threshold(NOW) == pytest.approx(0.4)
    assert StreamFusion(FusionConfig(), sensitivity=0.5).threshold(NOW) == pytest.approx(0.7)


def test_high_pitch_voiced_scream_gets_a_small_boost() -> None:
    low = fuse(StreamFusion(FusionConfig()), 0.5, pitch=200.0).score
    high = fuse(StreamFusion(FusionConfig()), 0.5, pitch=900.0).score
    assert high == pytest.approx(low * 1.1)


def test_invalid_inputs_and_config_are_rejected() -> None:
    with pytest.raises(ValueError, match="rms_dbfs"):
        fuse(StreamFusion(FusionConfig()), 0.5, dbfs=math.nan)
    with pytest.raises(ValueError, match="threshold"):
        FusionConfig(threshold=1.5)


def test_explain_without_evidence() -> None:
    assert explain([LabelScore(label="speech", score=0.9)], [], -33.4) == "no distress evidence (-33 dBFS)"


def test_classifier_operating_point_maps_onto_the_fusion_threshold() -> None:
    config = FusionConfig(threshold=0.6, acoustic_operating_point=0.99)
    assert on_fusion_scale(0.99, config) == pytest.approx(0.6)
    assert on_fusion_scale(0.999, config) > 0.6 > on_fusion_scale(0.95, config)
    fusion = StreamFusion(config)
    assert not fuse(fusion, 0.97).is_distress  # below the classifier's own operating point
    assert fuse(StreamFusion(config), 0.5, phrases=HELP).is_distress  # a clear spoken call still fires


def test_a_label_with_its_own_operating_point_is_judged_at_it() -> None:
    config = FusionConfig(threshold=0.6, acoustic_operating_point=0.99, label_operating_points={"crying": 0.9})
    crying = (
        LabelScore(label="speech", score=0.5),
        LabelScore(label="crying", score=0.3),
        LabelScore(label="scream", score=0.2),
    )
    assert on_fusion_scale(0.9, config, "crying") == pytest.approx(0.6)
    assert on_fusion_scale(0.9, config, "scream") < 0.6
    assert fuse(StreamFusion(config), 0.95, labels=crying).is_distress  # crying's 0.9, though speech tops it
    assert not fuse(StreamFusion(config), 0.95).is_distress  # scream: the checkpoint's 0.99
    with pytest.raises(ValueError, match="speech"):
        FusionConfig(label_operating_points={"speech": 0.5})


ADDING_UP = FusionConfig(acoustic_operating_point=0.99, accumulation=Accumulation(memory=0.7, needed=5.0))


def test_evidence_adds_up_over_consecutive_windows_so_one_sure_window_is_not_enough() -> None:
    assert fuse(StreamFusion(FusionConfig(acoustic_operating_point=0.99)), 0.9999).is_distress  # judged alone
    adding = StreamFusion(replace(ADDING_UP, accumulation=Accumulation(memory=0.7, needed=7.5)))
    decisions = [fuse(adding, 0.9999) for _ in range(3)]  # 4.6 log-odds above the point, capped at 4, each
    assert [decision.is_distress for decision in decisions] == [False, False, True]
    assert decisions[-1].reason.endswith("(-20 dBFS), over 3 windows")
    assert adding.evidence == pytest.approx(4.0 * (1 + 0.7 + 0.49))


def test_accumulated_evidence_leaks_and_windows_below_the_point_take_it_away() -> None:
    fusion = StreamFusion(ADDING_UP)
    for _ in range(2):
        fuse(fusion, 0.9999)
    held = fusion.evidence
    fuse(fusion, 0.99)  # exactly at the point: adds nothing, the sum leaks
    assert fusion.evidence == pytest.approx(0.7 * held)
    fuse(fusion, 0.01)  # far below: takes away at most the cap
    assert fusion.evidence == 0.0 and fusion.evidence_windows == 0


def test_one_window_adds_at_most_the_cap() -> None:
    fusion = StreamFusion(FusionConfig(acoustic_operating_point=0.5, accumulation=Accumulation(memory=0.0, needed=4.5)))
    assert not fuse(fusion, 1.0 - 1e-9).is_distress  # log-odds 20.7 above the point, capped at 4
    assert fusion.evidence == pytest.approx(4.0)


def test_a_loudness_jump_over_the_stream_background_adds_evidence() -> None:
    rule = Accumulation(memory=0.0, needed=3.5, jump_weight=1.0, jump_full_db=10.0)
    steady, jumping = (StreamFusion(FusionConfig(acoustic_operating_point=0.5, accumulation=rule)) for _ in range(2))
    for fusion in (steady, jumping):
        for _ in range(5):
            fuse(fusion, 0.1, dbfs=-30.0)  # the stream's background
    point_five_log_odds = math.log(0.97 / 0.03)  # 3.48: just short of 3.5 alone
    assert not fuse(steady, 0.97, dbfs=-30.0).is_distress
    assert fuse(jumping, 0.97, dbfs=-25.0).is_distress  # 5 dB over the background: half the weight
    assert jumping.evidence == pytest.approx(point_five_log_odds + 0.5)


def test_an_accumulation_out_of_range_is_refused() -> None:
    for bad in (
        {"memory": 1.0, "needed": 1.0},
        {"memory": 0.5, "needed": -1.0},
        {"memory": 0.5, "needed": 1.0, "cap": 0},
    ):
        with pytest.raises(ValueError, match="accumulation"):
            Accumulation(**bad)
