"""The incident actor: the engine as a pipeline stage (scores, transcripts, audio and incident events in;
incident transitions out), its open incidents rebuilt from the incidents topic when it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from actors.clips import ClipStore
from actors.incidents.engine import IncidentEngine
from config.settings import Settings
from events import Event
from events.catalogue import AudioChunkCaptured, DistressScored, IncidentEvent, TranscriptProduced
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import read_all
from events.topics import TopicCatalogue

log = logging.getLogger(__name__)


class IncidentStage:
    """The incident actor: scores, transcripts and audio in; incident transitions out."""

    name = "incidents"

    def __init__(self, catalogue: TopicCatalogue, engine: IncidentEngine) -> None:
        self.catalogue = catalogue
        self.engine = engine

    def input_topics(self) -> Sequence[str]:
        return [
            self.catalogue.scores.name,
            self.catalogue.transcripts.name,
            self.catalogue.audio_chunks.name,
            self.catalogue.incidents.name,
        ]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        event = consumed.event
        if isinstance(event, DistressScored):
            return self.engine.on_score(event)
        if isinstance(event, TranscriptProduced):
            return self.engine.on_transcript(event)
        if isinstance(event, AudioChunkCaptured):
            return self.engine.on_audio(event)
        if isinstance(event, IncidentEvent):
            return self.engine.on_incident_event(event)
        return ()

    def tick(self) -> Iterable[Event]:
        return self.engine.tick()


def build_incident_stage(settings: Settings) -> IncidentStage:
    """The stage with its state rebuilt from the incidents topic, ready for a ``StageRunner``."""
    bus = settings.bus()
    engine = IncidentEngine(
        settings.incidents, clip_store=ClipStore(settings.clips_dir), stores_audio=settings.stores_audio
    )
    restored = engine.restore(consumed.event for consumed in read_all(bus, [bus.catalogue.incidents.name]))
    log.info("incident state restored", extra={"open_incidents": restored})
    return IncidentStage(bus.catalogue, engine)
