"""The topic catalogue: which events travel on which topic, with partitions and retention.

Raw audio is bounded (it is the bulk and the most private data); incident and alert history is kept forever
because it is the system of record that every projection is rebuilt from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from events.base import Event
from events.catalogue import (
    AlertDeferred,
    AlertDispatched,
    AlertFailed,
    AlertRequested,
    AudioChunkCaptured,
    DistressScored,
    FeaturesExtracted,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    StreamEnded,
    StreamFailed,
    StreamStarted,
    TranscriptProduced,
)

FOREVER = -1
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """A topic's logical name and the settings it is created with."""

    name: str
    partitions: int
    retention_ms: int
    event_types: tuple[type[Event], ...]
    max_message_bytes: int = 1_048_576

    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": "delete",
            "max.message.bytes": str(self.max_message_bytes),
        }


@dataclass(frozen=True, kw_only=True)
class TopicCatalogue:
    """All topics of one deployment; ``prefix`` lets several deployments share a cluster."""

    prefix: str = ""
    stream_partitions: int = 4
    audio_retention_ms: int = DAY_MS
    analysis_retention_ms: int = 30 * DAY_MS

    @property
    def streams(self) -> TopicSpec:
        return self._spec("streams", (StreamStarted, StreamEnded, StreamFailed), FOREVER)

    @property
    def audio_chunks(self) -> TopicSpec:
        return self._spec("audio.chunks", (AudioChunkCaptured,), self.audio_retention_ms)

    @property
    def audio_features(self) -> TopicSpec:
        return self._spec("audio.features", (FeaturesExtracted,), self.analysis_retention_ms)

    @property
    def transcripts(self) -> TopicSpec:
        return self._spec("asr.transcripts", (TranscriptProduced,), self.analysis_retention_ms)

    @property
    def scores(self) -> TopicSpec:
        return self._spec("distress.scores", (DistressScored,), self.analysis_retention_ms)

    @property
    def incidents(self) -> TopicSpec:
        return self._spec(
            "incidents",
            (
                IncidentOpened,
                IncidentUpdated,
                IncidentEscalated,
                IncidentAcknowledged,
                IncidentResolved,
                IncidentMarkedFalseAlarm,
                IncidentNoteAdded,
            ),
            FOREVER,
        )

    @property
    def alerts(self) -> TopicSpec:
        return self._spec("alerts", (AlertRequested, AlertDeferred, AlertDispatched, AlertFailed), FOREVER)

    @property
    def dead_letters(self) -> TopicSpec:
        # Holds undecodable originals plus diagnostics, so allow larger messages than the source topics.
        return TopicSpec(
            name=f"{self.prefix}dead.letters",
            partitions=1,
            retention_ms=FOREVER,
            event_types=(),
            max_message_bytes=4 * 1_048_576,
        )

    def all(self) -> tuple[TopicSpec, ...]:
        return (
            self.streams,
            self.audio_chunks,
            self.audio_features,
            self.transcripts,
            self.scores,
            self.incidents,
            self.alerts,
            self.dead_letters,
        )

    def topic_for(self, event: Event | type[Event]) -> str:
        """The topic an event type is published to; every catalogue event has exactly one."""
        event_class = event if isinstance(event, type) else type(event)
        topic = _index(self.all()).get(event_class)
        if topic is None:
            raise LookupError(f"no topic carries {event_class.__name__}")
        return topic

    def _spec(self, name: str, event_types: tuple[type[Event], ...], retention_ms: int) -> TopicSpec:
        return TopicSpec(
            name=f"{self.prefix}{name}",
            partitions=self.stream_partitions,
            retention_ms=retention_ms,
            event_types=event_types,
        )


def _index(specs: Iterable[TopicSpec]) -> Mapping[type[Event], str]:
    return {event_type: spec.name for spec in specs for event_type in spec.event_types}
