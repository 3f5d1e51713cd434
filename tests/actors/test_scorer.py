"""The scorer stage: real features and a real (fixed-calibration) classifier, fused with phrases and feedback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.scorer import TRANSCRIPT_HOLD_S, ScorerStage, build_scorer, scorer_from_settings
from config import Settings
from events import Event
from events.catalogue import (
    DistressScored,
    FeaturesExtracted,
    FeatureSummary,
    IncidentMarkedFalseAlarm,
    PhraseHit,
    TranscriptProduced,
)
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue
from models.classifier import Calibration, ClassifierError, DistressClassifier, DistressNet
from models.features import StreamingFeatureExtractor
from models.fused import FusedDistressModel
from models.fusion import FusionConfig
from tests.support.scenario import FakeClock

SUMMARY = FeatureSummary(
    rms_dbfs_mean=-20.0,
    rms_dbfs_max=-12.0,
    zcr_mean=0.1,
    centroid_hz_mean=1500.0,
    rolloff_hz_mean=3000.0,
    flux_mean=0.5,
    flatness_mean=0.1,
    pitch_hz_median=300.0,
    voiced_fraction=0.5,
)


def quiet_classifier() -> DistressClassifier:
    """A real network whose calibration pins the distress probability near sigmoid(-5) = 0.0067."""
    torch.manual_seed(0)
    return DistressClassifier(DistressNet(), Calibration(platt_scale=0.0, platt_bias=-5.0), threshold=0.6)


def feature_events(stream_id: str, seconds: int) -> list[FeaturesExtracted]:
    rng = np.random.default_rng(1)
    extractor = StreamingFeatureExtractor()
    events = []
    for sequence in range(seconds):
        frames = extractor.push((0.1 * rng.standard_normal(16_000)).astype(np.float32))
        events.append(
            FeaturesExtracted(
                stream_id=stream_id,
                sequence=sequence,
                sample_offset=sequence * 16_000,
                first_frame=frames.first_frame,
                frames=frames.log_mel.shape[0],
                n_mels=64,
                log_mel="power",
                log_mel_f16=frames.log_mel.astype("<f2").tobytes(),
                summary=SUMMARY,
                is_last=False,
            )
        )
    return events


def transcript(stream_id: str, phrases: tuple[PhraseHit, ...]) -> TranscriptProduced:
    return TranscriptProduced(
        stream_id=stream_id,
        text="help me",
        words=(),
        language="en",
        model_id="tiny.en",
        model_version="1",
        word_timestamps="whisper",
        first_sequence=1,
        last_sequence=2,
        start_sample=16_000,
        end_sample=40_000,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        is_partial=False,
        guard_flags=(),
        phrases=phrases,
    )


def consumed(event: Event) -> ConsumedEvent:
    return ConsumedEvent(event=event, topic="t", partition=0, offset=0, timestamp_ms=0)


def run(stage: ScorerStage, events: Sequence[Event]) -> list[DistressScored]:
    return [out for event in events for out in stage.handle(consumed(event)) if isinstance(out, DistressScored)]


HELP = (PhraseHit(phrase="help me", matched_text="help me", score=0.95, start_s=1.2, end_s=1.6),)


def test_one_score_per_chunk_once_a_patch_is_full() -> None:
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig())
    scores = run(stage, list(feature_events("door", 3)))
    assert [score.sequence for score in scores] == [0, 1, 2]  # 98 frames from the first second ≥ 96
    assert all(score.acoustic_probability == pytest.approx(0.0067, abs=1e-3) for score in scores)
    assert not any(score.is_distress for score in scores)
    assert scores[0].model_id == "distress-cnn" and len(scores[0].labels) == 3
    assert [label.score for label in scores[0].labels] == sorted(
        (label.score for label in scores[0].labels), reverse=True
    )
    assert scores[1].causation_id is not None


def test_frames_of_another_kind_than_the_model_reads_are_not_scored() -> None:
    """A scorer of YAMNet's log-mel given frames of band power (say, from before a model change) hears nothing."""
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(), log_mel="yamnet")
    assert run(stage, list(feature_events("door", 3))) == []
    matching = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(), log_mel="power")
    assert len(run(matching, list(feature_events("door", 3)))) == 3


def test_spoken_call_for_help_fires_without_acoustic_support() -> None:
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(threshold=0.6))
    scores = run(stage, [*feature_events("door", 3), transcript("door", HELP)])
    spoken = scores[-1]
    assert spoken.is_distress and spoken.score == pytest.approx(1 - (1 - 0.0067) * (1 - 0.855), abs=1e-3)
    assert "'help me' at 1.2 s" in spoken.reason and spoken.phrases == HELP
    assert run(stage, [transcript("door", ())]) == []  # a transcript without phrases adds nothing


def test_false_alarm_feedback_raises_the_threshold_beyond_the_capture_run() -> None:
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(threshold=0.6))
    before = run(stage, [*feature_events("hall", 3), transcript("hall", HELP)])[-1]
    alarm = IncidentMarkedFalseAlarm(stream_id="hall", incident_id="i", actor="ana", note="tv")
    after = run(stage, [alarm, transcript("hall", HELP)])[-1]
    assert after.phrases == HELP and after.threshold == pytest.approx(before.threshold + 0.05)
    *_, last = feature_events("hall", 3)
    restarted = [replace(event, correlation_id="run-2") for event in feature_events("hall", 3)]
    scores = run(stage, [replace(last, is_last=True), *restarted])  # the capture ended and started again
    assert scores[-1].threshold == pytest.approx(after.threshold)


def test_a_transcript_read_before_its_acoustics_waits_for_them() -> None:
    """A stage that fell behind may read the transcripts topic first: the words still come after the sounds."""
    clock = FakeClock()
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(threshold=0.6), clock=clock)
    chunks = feature_events("door", 4)
    assert run(stage, [transcript("door", HELP)]) == []  # its words end at 2.5 s
    assert [score.phrases for score in run(stage, chunks[:2])] == [(), ()]  # acoustics up to ~2 s
    clock.now += TRANSCRIPT_HOLD_S - 0.1
    assert list(stage.tick()) == []
    scores = run(stage, chunks[2:])
    assert [(score.sequence, score.phrases) for score in scores] == [(2, ()), (2, HELP), (3, ())]
    assert scores[1].acoustic_probability == pytest.approx(max(s.acoustic_probability for s in scores), abs=1e-3)


def test_a_transcript_waits_no_longer_than_the_hold_or_its_runs_end() -> None:
    clock = FakeClock()
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(threshold=0.6), clock=clock)
    assert run(stage, [transcript("door", HELP)]) == []
    clock.now += TRANSCRIPT_HOLD_S
    [alone] = stage.tick()  # the features stage is down: the words alone still count
    assert isinstance(alone, DistressScored) and alone.phrases == HELP and alone.acoustic_probability == 0.0
    assert list(stage.tick()) == []
    first, *_ = feature_events("hall", 1)
    assert run(stage, [transcript("hall", HELP)]) == []
    scores = run(stage, [replace(first, is_last=True)])  # the run ended before its acoustics reached the words
    assert [score.phrases for score in scores] == [(), HELP]
    assert [score.phrases for score in run(stage, [transcript("hall", HELP)])] == [HELP]  # after its end: at once


def test_build_scorer_rebuilds_feedback_from_history(kafka_settings: Settings, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save(quiet_classifier().to_payload(), checkpoint)
    settings = kafka_settings.model_copy(
        update={"scorer": kafka_settings.scorer.model_copy(update={"model_path": checkpoint, "threshold": 0.5})}
    )
    settings.ensure_topics()
    with settings.bus().producer() as producer:
        for _ in range(2):
            producer.publish(IncidentMarkedFalseAlarm(stream_id="hall", incident_id="i", actor="ana", note=""))
    stage = build_scorer(settings)
    now = datetime.now(UTC)
    assert stage.fusion_config.threshold == 0.5
    assert stage.threshold_for("hall", now) == pytest.approx(0.6)
    assert stage.threshold_for("lobby", now) == pytest.approx(0.5)


def decisions(scores: list[DistressScored]) -> list[tuple[str, int, bool, list[str]]]:
    return [
        (score.stream_id, score.sequence, score.is_distress, [label.label for label in score.labels])
        for score in scores
    ]


def batching_scorer(fusion: FusionConfig) -> ScorerStage:
    """A batching scorer past its first batch (of a stream the test does not look at)."""
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), fusion, batch_patches=True)
    assert run(stage, feature_events("warm-up", 2)) != []  # the first batch is scored as it is handled
    assert list(stage.tick()) == []
    return stage


def test_batched_patches_are_scored_at_the_end_of_the_batch_as_one_at_a_time_would() -> None:
    events: list[Event] = [
        event for pair in zip(feature_events("a", 3), feature_events("b", 3), strict=True) for event in pair
    ]
    one_at_a_time = run(ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig()), events)
    batched = batching_scorer(FusionConfig())
    assert run(batched, events) == []
    at_tick = [score for score in batched.tick() if isinstance(score, DistressScored)]
    assert decisions(at_tick) == decisions(one_at_a_time) and len(at_tick) == 6
    assert [score.acoustic_probability for score in at_tick] == pytest.approx(
        [score.acoustic_probability for score in one_at_a_time], abs=1e-5
    )
    assert list(batched.tick()) == []


def test_until_a_batch_was_ticked_patches_are_scored_as_handled_for_a_rebuild_to_drop() -> None:
    stage = ScorerStage(TopicCatalogue(), quiet_classifier(), FusionConfig(), batch_patches=True)
    assert list(stage.tick()) == []  # an empty batch (no partitions assigned yet) does not start batching
    rebuilt = run(stage, feature_events("a", 3))
    assert [score.sequence for score in rebuilt] == [0, 1, 2] and list(stage.tick()) == []
    assert run(stage, feature_events("b", 2)) == [] and len(list(stage.tick())) == 2


def test_a_transcript_first_scores_the_patches_waiting_before_it() -> None:
    stage = batching_scorer(FusionConfig(threshold=0.6))
    scores = run(stage, [*feature_events("door", 3), transcript("door", HELP)])
    assert [(score.sequence, score.phrases) for score in scores] == [(0, ()), (1, ()), (2, ()), (2, HELP)]
    assert scores[-1].is_distress


def test_a_batched_transcript_ahead_of_its_acoustics_is_scored_after_them_at_the_tick() -> None:
    stage = batching_scorer(FusionConfig(threshold=0.6))
    assert run(stage, [transcript("door", HELP), *feature_events("door", 3)]) == []
    scores = [score for score in stage.tick() if isinstance(score, DistressScored)]
    assert [(score.sequence, score.phrases) for score in scores] == [(0, ()), (1, ()), (2, ()), (2, HELP)]


def test_the_scorer_reads_the_second_stage_through_the_configured_encoder(tmp_path: Path) -> None:
    """The default model's CNN second stage loads over the bundled Whisper model by default and refuses a
    configured model it was not trained with, naming it."""
    default = scorer_from_settings(Settings()).classifier
    assert isinstance(default, FusedDistressModel) and default.cnn.second_stage is not None
    elsewhere = tmp_path / "large-v3"
    scorer = Settings().scorer.model_copy(update={"encoder": str(elsewhere)})
    settings = Settings().model_copy(update={"scorer": scorer})
    with pytest.raises(ClassifierError, match="large-v3"):
        scorer_from_settings(settings)
