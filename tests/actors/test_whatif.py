"""What-if rescoring on a real broker: features, classifier, fusion and incident rules re-run over retained audio
under another threshold, compared with the incidents on record, with nothing live touched."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.whatif import rescore
from config import Settings
from config.settings import IncidentConfig
from domain.incidents import incident_id_for
from events.catalogue import AudioChunkCaptured, IncidentOpened, IncidentResolved
from events.kafka.log import read_all
from models.classifier import DISTRESS_LABELS, Calibration, DistressClassifier, DistressNet
from tests.support.cli import Distress
from tests.support.scenario import RATE, Scenario

LOUD = (range(5, 9), range(25, 29))  # windows with a loud burst; the rest is near silence


def steady_classifier(path: Path, label_thresholds: dict[str, float] | None = None) -> Path:
    """A real network whose calibrated distress probability is 0.95 for any patch: loudness decides (fusion)."""
    torch.manual_seed(0)
    classifier = DistressClassifier(
        DistressNet(), Calibration(platt_scale=0.0, platt_bias=2.944), threshold=0.6, label_thresholds=label_thresholds
    )
    torch.save(classifier.to_payload(), path)
    return path


def audio(story: Scenario, seconds: int) -> list[AudioChunkCaptured]:
    rng = np.random.default_rng(3)
    chunks = []
    for window in range(seconds):
        level = 12_000 if any(window in burst for burst in LOUD) else 3
        samples = np.clip(rng.standard_normal(RATE) * level, -32_768, 32_767).astype("<i2")
        chunk = story.chunk(window)
        chunks.append(AudioChunkCaptured(**{**chunk.__dict__, "pcm16": samples.tobytes()}))
    return chunks


@pytest.fixture
def recorded(kafka_settings: Settings) -> tuple[Scenario, IncidentOpened]:
    """The audio on record, and one recorded incident at the first burst (resolved since)."""
    kafka_settings.ensure_topics()
    story = Scenario(stream_id="hall-7")
    opened = IncidentOpened(
        stream_id=story.stream_id,
        correlation_id=story.correlation_id,
        incident_id=incident_id_for(story.stream_id, "recorded"),
        severity="high",
        score=0.9,
        reason="recorded",
        onset_sample=5 * RATE,
        onset_at=story.at(5),
        labels=(),
        phrases=(),
        transcript="",
        clip_sha256=None,
        clip_duration_s=None,
    )
    resolved = IncidentResolved(
        stream_id=story.stream_id, incident_id=opened.incident_id, actor="system", reason="quiet", note=""
    )
    with kafka_settings.bus().producer() as producer:
        for event in [*audio(story, 40), opened, resolved]:
            producer.publish(event)
    return story, opened


def incidents_on_record(settings: Settings) -> int:
    bus = settings.bus()
    return len(list(read_all(bus, [bus.catalogue.incidents.name])))


def test_rescoring_finds_what_a_threshold_adds_and_removes(
    kafka_settings: Settings, tmp_path: Path, recorded: tuple[Scenario, IncidentOpened]
) -> None:
    story, opened = recorded
    model = steady_classifier(tmp_path / "steady.pt")
    quick = IncidentConfig(quiet_period_s=8, merge_gap_s=4, cooldown_s=5)
    settings = kafka_settings.model_copy(update={"incidents": quick})
    before = incidents_on_record(settings)

    report = rescore(settings, model_path=model, threshold=0.6)
    assert (report.chunks, report.threshold) == (40, 0.6)
    assert report.scores >= 38  # one per chunk once the classifier has a full patch
    assert [record.onset_at for record in report.rescored] == [story.at(5), story.at(25)]
    assert [(change.change, change.onset_at) for change in report.changes if change.change != "changed"] == [
        ("added", story.at(25))
    ]
    assert report.unchanged + sum(change.change == "changed" for change in report.changes) == 1

    strict = rescore(settings, model_path=model, operating_point=0.97, stream_id=story.stream_id)
    assert strict.rescored == []
    assert [(change.change, change.recorded.incident_id if change.recorded else None) for change in strict.changes] == [
        ("removed", opened.incident_id)
    ]

    # Every label's own operating point above the steady 0.95: nothing fires, unless one point overrides them.
    labelled = steady_classifier(tmp_path / "labelled.pt", dict.fromkeys(DISTRESS_LABELS, 0.97))
    per_label = rescore(settings, model_path=labelled, stream_id=story.stream_id)
    assert per_label.rescored == [] and per_label.label_operating_points == dict.fromkeys(DISTRESS_LABELS, 0.97)
    overridden = rescore(settings, model_path=labelled, operating_point=0.6, stream_id=story.stream_id)
    assert [record.onset_at for record in overridden.rescored] == [story.at(5), story.at(25)]
    assert overridden.label_operating_points == {}

    later = rescore(settings, model_path=model, threshold=0.6, since=story.at(20))
    assert [change.change for change in later.changes] == ["added"] and later.recorded == []
    assert rescore(settings, model_path=model, stream_id="elsewhere").chunks == 0
    assert incidents_on_record(settings) == before  # nothing was published
    with pytest.raises(ValueError, match="threshold must be in"):
        rescore(settings, model_path=model, threshold=1.5)
    with pytest.raises(ValueError, match="operating point must be in"):
        rescore(settings, model_path=model, operating_point=0.0)


def test_the_rescore_command_prints_the_comparison(
    kafka_settings: Settings, tmp_path: Path, recorded: tuple[Scenario, IncidentOpened]
) -> None:
    story, _ = recorded
    model = steady_classifier(tmp_path / "steady.pt")
    distress = Distress(
        kafka_settings,
        tmp_path,
        DISTRESS_INCIDENTS=json.dumps({"quiet_period_s": 8, "merge_gap_s": 4, "cooldown_s": 5}),
    )
    since = (story.at(20) - timedelta(seconds=1)).isoformat()
    arguments = ("--model", str(model), "--threshold", "0.6", "--stream", story.stream_id, "--since", since)
    report = distress.json("replay", "--rescore", *arguments)
    assert (report["chunks"], report["recorded"], report["rescored"], report["removed"]) == (21, 0, 1, [])
    assert (report["threshold"], report["operating_point"]) == (0.6, 0.6)  # the checkpoint's own operating point
    assert report["label_operating_points"] == {}  # this checkpoint has no per-label points
    [added] = report["added"]
    assert added["rescored"]["onset_at"] == story.at(25).isoformat() and added["recorded"] is None
    assert not (tmp_path / "distress.db").exists()  # no projection was written
