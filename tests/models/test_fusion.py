from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from events.catalogue import LabelScore, PhraseHit
from models.fusion import FusedScore, FusionConfig, StreamFusion, explain, loudness_weight, on_fusion_scale

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
