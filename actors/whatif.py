"""What-if replay: re-run features, classifier, fusion and the incident rules over the retained audio with another
model or other thresholds, and compare the incidents that would have resulted with the ones on record.

Nothing live is touched: the stages run in this process on events read from Kafka (no group, no commits), nothing
is published, no row is written and no clip is stored. The knobs: the classifier checkpoint (``model_path``), its
operating point (the probability at which acoustic evidence alone is distress; default: the checkpoint's own),
and the fusion decision threshold (``scorer.threshold``: what phrases and loudness are weighed against). The
incident rules come from the settings, so a what-if for other incident thresholds is a settings change (config
file or ``DISTRESS_*``) plus ``--rescore``.

Limits, by design: only audio still retained on ``audio.chunks`` can be rescored (recorded incidents outside the
rescored span are not compared); operator false-alarm feedback is applied as it is known now.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from actors.incidents.engine import IncidentEngine
from actors.offline import OfflinePipeline
from actors.scorer import build_scorer
from config.settings import IncidentConfig, Settings
from domain.incidents import IncidentRecord, fold_incidents
from events import Event
from events.catalogue import AudioChunkCaptured, DistressScored, IncidentOpened, TranscriptProduced
from events.kafka.bus import Bus
from events.kafka.log import read_all
from models.fusion import FusionConfig, StreamFusion

_T = TypeVar("_T", bound="_OfStream")


@dataclass(frozen=True, kw_only=True)
class IncidentChange:
    change: str  # "added", "removed", "changed"
    stream_id: str
    recorded: IncidentRecord | None
    rescored: IncidentRecord | None
    differences: dict[str, tuple[Any, Any]]  # field -> (recorded, rescored)

    @property
    def onset_at(self) -> datetime:
        incident = self.recorded or self.rescored
        assert incident is not None
        return incident.onset_at


@dataclass(kw_only=True)
class WhatIfReport:
    model_id: str
    threshold: float
    operating_point: float | None
    label_operating_points: dict[str, float] = field(default_factory=dict)  # the checkpoint's own, per label
    chunks: int = 0
    transcripts: int = 0
    scores: int = 0
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)  # stream -> rescored capture span
    recorded: list[IncidentRecord] = field(default_factory=list)
    rescored: list[IncidentRecord] = field(default_factory=list)
    changes: list[IncidentChange] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return len(self.recorded) - sum(1 for change in self.changes if change.change != "added")


def rescore(
    settings: Settings,
    *,
    model_path: Path | None = None,
    threshold: float | None = None,
    operating_point: float | None = None,
    since: datetime | None = None,
    stream_id: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> WhatIfReport:
    """The incidents the retained audio would have produced under the given model and thresholds, against the
    record."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    for name, value in (("threshold", threshold), ("operating point", operating_point)):
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    scorer_settings = settings.scorer.model_copy(
        update={k: v for k, v in (("model_path", model_path), ("threshold", threshold)) if v is not None}
    )
    trial = settings.model_copy(update={"scorer": scorer_settings})
    scorer = build_scorer(trial)
    if operating_point is not None:  # before the first chunk: each stream's fusion is created from this config
        scorer.fusion_config = dataclasses.replace(
            scorer.fusion_config, acoustic_operating_point=operating_point, label_operating_points={}
        )  # one point, for every label
    pipeline = OfflinePipeline(trial, scorer)
    report = WhatIfReport(
        model_id=f"{scorer.classifier.model_id} {scorer.classifier.model_version}",
        threshold=scorer.fusion_config.threshold,
        operating_point=scorer.fusion_config.acoustic_operating_point,
        label_operating_points=dict(scorer.fusion_config.label_operating_points),
    )
    bus = settings.bus()
    key = stream_id.encode() if stream_id else None

    def wanted(moment: datetime) -> bool:
        return since is None or moment >= since

    speech = _by_stream(
        event
        for event in _events(bus, bus.catalogue.transcripts.name, key)
        if isinstance(event, TranscriptProduced) and wanted(event.occurred_at)
    )
    for transcripts in speech.values():
        transcripts.sort(key=lambda transcript: transcript.occurred_at)
    for chunk in _events(bus, bus.catalogue.audio_chunks.name, key):
        if not isinstance(chunk, AudioChunkCaptured) or not wanted(chunk.captured_at):
            continue
        pending = speech.get(chunk.stream_id, [])
        while pending and pending[0].occurred_at <= chunk.occurred_at:  # speech is recognised after its audio
            pipeline.transcript(pending.pop(0))
            report.transcripts += 1
        pipeline.chunk(chunk)
        report.chunks += 1
        first, _ = report.spans.get(chunk.stream_id, (chunk.captured_at, chunk.captured_at))
        report.spans[chunk.stream_id] = (first, chunk.captured_at)
        if progress is not None:
            progress(1)
    report.scores = sum(isinstance(event, DistressScored) for event in pipeline.events)
    report.rescored = sorted(fold_incidents(pipeline.events).values(), key=lambda record: record.onset_at)
    history = (consumed.event for consumed in read_all(bus, [bus.catalogue.incidents.name], key=key))
    report.recorded = sorted(
        (
            record
            for record in fold_incidents(history).values()
            if record.stream_id in report.spans
            and report.spans[record.stream_id][0] <= record.onset_at <= report.spans[record.stream_id][1]
        ),
        key=lambda record: record.onset_at,
    )
    report.changes = compare(report.recorded, report.rescored, tolerance_s=settings.incidents.merge_gap_s)
    return report


def fuse_again(
    windows: Iterable[DistressScored], fusion: FusionConfig, incidents: IncidentConfig
) -> list[IncidentOpened]:
    """The incidents opened when one stream's scored windows are fused again under ``fusion`` and run through the
    incident rules: another decision rule tried without running the model again (the windows keep the model's
    probability, labels, loudness and pitch)."""
    stream = StreamFusion(fusion)
    engine = IncidentEngine(incidents, clip_store=None, stores_audio=lambda _: False, clock=lambda: 0.0)
    opened: list[IncidentOpened] = []
    for window in windows:
        fused = stream.fuse(
            now=window.occurred_at,
            acoustic_probability=window.acoustic_probability,
            labels=window.labels,
            phrases=window.phrases,
            rms_dbfs=window.rms_dbfs,
            pitch_hz=window.pitch_hz,
        )
        again = dataclasses.replace(
            window, score=fused.score, threshold=fused.threshold, is_distress=fused.is_distress, reason=fused.reason
        )
        opened += [event for event in engine.on_score(again) if isinstance(event, IncidentOpened)]
    return opened


def compare(
    recorded: list[IncidentRecord], rescored: list[IncidentRecord], *, tolerance_s: float
) -> list[IncidentChange]:
    """Pair incidents of the same stream whose onsets lie within ``tolerance_s`` (nearest first)."""
    changes: list[IncidentChange] = []
    candidates = _by_stream(rescored)
    for before in recorded:
        options = candidates.get(before.stream_id, [])
        nearest = min(options, key=lambda after: abs((after.onset_at - before.onset_at).total_seconds()), default=None)
        if nearest is None or abs((nearest.onset_at - before.onset_at).total_seconds()) > tolerance_s:
            changes.append(
                IncidentChange(
                    change="removed", stream_id=before.stream_id, recorded=before, rescored=None, differences={}
                )
            )
            continue
        options.remove(nearest)
        differences = _differences(before, nearest)
        if differences:
            changes.append(
                IncidentChange(
                    change="changed",
                    stream_id=before.stream_id,
                    recorded=before,
                    rescored=nearest,
                    differences=differences,
                )
            )
    changes += [
        IncidentChange(change="added", stream_id=after.stream_id, recorded=None, rescored=after, differences={})
        for options in candidates.values()
        for after in options
    ]
    return sorted(changes, key=lambda change: (change.stream_id, change.onset_at))


def _differences(before: IncidentRecord, after: IncidentRecord) -> dict[str, tuple[Any, Any]]:
    """What an operator would notice: severity, onset, the top label and the phrases heard."""
    differences: dict[str, tuple[Any, Any]] = {}
    if before.severity != after.severity:
        differences["severity"] = (before.severity, after.severity)
    if abs((after.onset_at - before.onset_at).total_seconds()) >= 1.0:
        differences["onset_at"] = (before.onset_at.isoformat(), after.onset_at.isoformat())
    top_before = before.labels[0].label if before.labels else None
    top_after = after.labels[0].label if after.labels else None
    if top_before != top_after:
        differences["top_label"] = (top_before, top_after)
    phrases_before = sorted({hit.phrase for hit in before.phrases})
    phrases_after = sorted({hit.phrase for hit in after.phrases})
    if phrases_before != phrases_after:
        differences["phrases"] = (phrases_before, phrases_after)
    return differences


def _events(bus: Bus, topic: str, key: bytes | None) -> Iterator[Event]:
    return (consumed.event for consumed in read_all(bus, [topic], key=key))


class _OfStream(Protocol):
    @property
    def stream_id(self) -> str: ...


def _by_stream(items: Iterable[_T]) -> dict[str, list[_T]]:
    grouped: dict[str, list[_T]] = defaultdict(list)
    for item in items:
        grouped[item.stream_id].append(item)
    return grouped
