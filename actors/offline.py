"""The pipeline's stages chained in one process, without Kafka: for `distress detect` and what-if replays.

The same stage objects the live runtime hosts are driven here through their ``handle`` methods, in data-flow
order, so an offline verdict is the verdict the live pipeline would reach on the same audio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.asr import AsrStage, build_recognizer
from actors.capture.actor import CaptureActor, CaptureReport
from actors.capture.normalise import TARGET_SAMPLE_RATE as SAMPLE_RATE
from actors.capture.sources import open_source
from actors.features import FeatureStage
from actors.incidents.engine import IncidentEngine
from actors.scorer import ScorerStage, scorer_from_settings
from config import Settings
from events import Event
from events.catalogue import (
    AudioChunkCaptured,
    DistressScored,
    IncidentOpened,
    LabelScore,
    PhraseHit,
    TranscriptProduced,
)
from events.kafka.consumer import ConsumedEvent
from models.acoustic import front_end_for


def in_process(event: Event) -> ConsumedEvent:
    """Stages take consumed events; in one process there is no Kafka position to report."""
    return ConsumedEvent(event=event, topic="in-process", partition=0, offset=0, timestamp_ms=0)


class OfflinePipeline:
    """features → scorer (+ ASR when given) → incident rules; collects every event the stages produce.

    It is also an ``EventPublisher``, so a ``CaptureActor`` can publish straight into it.
    """

    def __init__(self, settings: Settings, scorer: ScorerStage, asr: AsrStage | None = None) -> None:
        self.features = FeatureStage(settings.topics(), front_end_for(settings.scorer.model_path))
        self.scorer = scorer
        self.asr = asr
        self.incidents = IncidentEngine(settings.incidents, clip_store=None, stores_audio=settings.stores_audio)
        self.events: list[Event] = []

    def publish(self, event: Event) -> None:
        if isinstance(event, AudioChunkCaptured):
            self.chunk(event)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Nothing is buffered: every event is processed when published."""

    def chunk(self, chunk: AudioChunkCaptured) -> None:
        self.events += self.incidents.on_audio(chunk)
        for features in self.features.handle(in_process(chunk)):
            self._score(self.scorer.handle(in_process(features)))
        if self.asr is not None:
            for transcript in self.asr.handle(in_process(chunk)):
                assert isinstance(transcript, TranscriptProduced)
                self.transcript(transcript)

    def transcript(self, transcript: TranscriptProduced) -> None:
        self.events.append(transcript)
        self.events += self.incidents.on_transcript(transcript)
        self._score(self.scorer.handle(in_process(transcript)))

    def _score(self, outputs: Iterable[Event]) -> None:
        for scored in outputs:
            assert isinstance(scored, DistressScored)
            self.events.append(scored)
            self.events += self.incidents.on_score(scored)


@dataclass(frozen=True, kw_only=True)
class Detection:
    """The verdict on one recording, in the shape `distress detect --json` prints."""

    path: str
    distress: bool
    score: float
    labels: tuple[LabelScore, ...]
    transcript: str
    phrases: tuple[PhraseHit, ...]
    onset_s: float | None
    reason: str
    incidents: int
    heard_s: float  # the recording's own audio that was analysed
    declared_s: float | None  # its length as its container declares it, when it does
    warnings: tuple[str, ...]  # what of it was never heard: the verdict covers only ``heard_s``

    @property
    def complete(self) -> bool:
        """The whole recording was read, so the verdict covers all of it."""
        return not self.warnings

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "distress": self.distress,
            "score": round(self.score, 4),
            "labels": [{"label": label.label, "score": round(label.score, 4)} for label in self.labels],
            "transcript": self.transcript,
            "phrases": [dataclasses.asdict(hit) for hit in self.phrases],
            "onset_s": None if self.onset_s is None else round(self.onset_s, 2),
            "reason": self.reason,
            "incidents": self.incidents,
            "heard_s": round(self.heard_s, 3),
            "declared_s": None if self.declared_s is None else round(self.declared_s, 3),
            "warnings": list(self.warnings),
        }


class DetectionError(Exception):
    """A recording could not be analysed; the message names the file and the reason."""


@dataclass(frozen=True)
class Analysis:
    """Everything the chain produced for one recording, and how its capture went."""

    events: list[Event]
    capture: CaptureReport


class Detector:
    """Runs recordings through the offline pipeline with one loaded classifier and speech model."""

    def __init__(self, settings: Settings, *, with_asr: bool = True) -> None:
        self.settings = settings
        self.scorer = scorer_from_settings(settings)
        self.recognizer = build_recognizer(settings) if with_asr and settings.asr.enabled else None

    def detect(self, path: Path) -> Detection:
        return summarise(str(path), self.analyse(path))

    def events(self, path: Path) -> list[Event]:
        """Every event the chain produces for the recording at ``path``, chunked as live capture would."""
        return self.analyse(path).events

    def analyse(self, path: Path) -> Analysis:
        """The recording at ``path`` through the chain, chunked (and padded when short) as live capture would."""
        stream_id = f"detect-{path.stem}"[:64] or "detect"
        scorer = ScorerStage(
            self.scorer.catalogue, self.scorer.classifier, self.scorer.fusion_config, log_mel=self.scorer.log_mel
        )
        asr = AsrStage(self.settings.topics(), self.recognizer) if self.recognizer else None
        pipeline = OfflinePipeline(self.settings, scorer, asr)
        capture = self.settings.capture
        actor = CaptureActor(
            stream_id=stream_id,
            source=open_source(str(path)),
            publisher=pipeline,
            chunk_samples=capture.chunk_samples(SAMPLE_RATE),
            resample_quality=capture.resample_quality,
        )
        report = actor.run()
        if report.failed:
            raise DetectionError(report.reason)
        return Analysis(pipeline.events, report)


def summarise(path: str, analysis: Analysis) -> Detection:
    """One verdict from a recording's events: distress when the incident rules opened an incident.

    Capture pads every stream it ends to at least one scoring window, so a recording without a score is a broken
    chain, reported as an error rather than as a quiet "no".
    """
    events, capture = analysis.events, analysis.capture
    scores = [event for event in events if isinstance(event, DistressScored)]
    opened = [event for event in events if isinstance(event, IncidentOpened)]
    transcripts = [event for event in events if isinstance(event, TranscriptProduced)]
    best_labels: dict[str, float] = {}
    for scored in scores:
        for label in scored.labels:
            best_labels[label.label] = max(label.score, best_labels.get(label.label, 0.0))
    strongest = max(scores, key=lambda scored: scored.score, default=None)
    if strongest is None:
        raise DetectionError(f"{path}: none of its {capture.heard_seconds:.2f} s of audio was scored")
    reason = opened[0].reason if opened else f"below threshold {strongest.threshold:.2f}: {strongest.reason}"
    return Detection(
        path=path,
        distress=bool(opened),
        score=strongest.score,
        labels=tuple(
            LabelScore(label=label, score=score)
            for label, score in sorted(best_labels.items(), key=lambda item: -item[1])[:5]
        ),
        transcript=" ".join(transcript.text for transcript in transcripts).strip(),
        phrases=tuple(hit for transcript in transcripts for hit in transcript.phrases),
        onset_s=opened[0].onset_sample / SAMPLE_RATE if opened else None,
        reason=reason,
        incidents=len(opened),
        heard_s=capture.heard_seconds,
        declared_s=capture.declared_seconds,
        warnings=capture.warnings,
    )
