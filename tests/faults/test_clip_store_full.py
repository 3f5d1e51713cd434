"""Disk full on the clip store: the incident still opens and alerts once, and its evidence is marked missing.

The incident actor runs as in production (``build_incident_stage`` hosted by a ``StageRunner`` on a real broker)
with its clip store on a tmpfs that is full; the alerting actor sends to a real HTTP receiver. One stream's scores
come after all its audio (the clip is written as the incident opens), the other's before it (the clip is written
later, when the post-roll arrives): both ways a clip can fail to be written.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from actors.alerting.actor import run_alerting
from actors.incidents.stage import build_incident_stage
from actors.stage import StageRunner
from config import Settings
from config.alerting import AlertingConfig
from config.settings import IncidentConfig
from domain.types import SYSTEM_ACTOR
from events.base import utc_now
from events.catalogue import (
    AlertDispatched,
    AlertRequested,
    IncidentNoteAdded,
    IncidentOpened,
    IncidentUpdated,
)
from projections.database import create_database_engine, migrate
from projections.projector import Projector
from projections.queries import incident_detail
from projections.read_models import PROJECTIONS
from tests.conftest import wait_for
from tests.faults.conftest import events_on, fill, tiny_filesystem
from tests.support.alerting import JsonReceiver
from tests.support.scenario import Scenario

# One-second windows; 4 and 5 are positive, so the clip needs audio up to window 25. The long post-roll keeps the
# wall-clock stall timeout (post-roll + 2 s) far from the gap between the two rounds of input on a busy machine.
POST_ROLL_S = 20
WINDOWS = 30


def test_a_full_clip_store_still_opens_and_alerts_once_and_marks_the_evidence_missing(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    with tiny_filesystem(tmp_path / "clips") as clips, JsonReceiver() as receiver:
        fill(clips)
        settings = kafka_settings.model_copy(
            update={
                "data_dir": tmp_path,
                "incidents": IncidentConfig(clip_pre_s=2, clip_post_s=POST_ROLL_S),
                "alerting": AlertingConfig.model_validate(
                    {"channels": {"ops": receiver.url()}, "routes": [{"name": "all", "notify": ["ops"]}]}
                ),
            }
        )
        assert settings.clips_dir == clips
        settings.ensure_topics()
        bus = settings.bus()
        audio_first = Scenario(stream_id=f"hall-{uuid.uuid4().hex[:6]}", session_start=utc_now())
        scores_first = Scenario(stream_id=f"yard-{uuid.uuid4().hex[:6]}", session_start=utc_now())
        stage = build_incident_stage(settings)
        runner = StageRunner(stage, bus)
        stop = threading.Event()
        alerting = threading.Thread(target=run_alerting, args=(settings, stop))
        alerting.start()
        try:
            with bus.producer() as producer:
                for window in range(WINDOWS):
                    producer.publish(audio_first.chunk(window))
                    producer.publish(scores_first.score(window, 0.9 if window in (4, 5) else 0.1))
            wait_for(lambda: runner.run_once() == 0 and runner.processed >= 2 * WINDOWS, what="the first inputs")
            with bus.producer() as producer:
                for window in range(WINDOWS):
                    producer.publish(audio_first.score(window, 0.9 if window in (4, 5) else 0.1))
                    producer.publish(scores_first.chunk(window))
            wait_for(lambda: runner.run_once() == 0 and runner.processed >= 4 * WINDOWS, what="the rest")
            wait_for(lambda: len(receiver.delivered) >= 2, what="both alerts")
        finally:  # a stopping alerting actor records the outcome of every delivery it started
            stop.set()
            alerting.join(timeout=60)
            runner.close()
        leftovers = sorted(path.name for path in clips.rglob("*") if path.is_file() and path.name != "filler")

    incidents = events_on(bus, [bus.catalogue.incidents.name])
    alerting_events = events_on(bus, [bus.catalogue.alerts.name])
    opened = [event for event in incidents if isinstance(event, IncidentOpened)]
    assert sorted(event.stream_id for event in opened) == sorted([audio_first.stream_id, scores_first.stream_id])
    assert all(event.clip_sha256 is None for event in incidents if isinstance(event, IncidentOpened | IncidentUpdated))
    missing = [event for event in incidents if isinstance(event, IncidentNoteAdded)]
    assert sorted(event.incident_id for event in missing) == sorted(event.incident_id for event in opened)
    for note in missing:
        assert note.actor == SYSTEM_ACTOR
        assert "evidence clip missing" in note.note and "No space left on device" in note.note
    requested = [event for event in alerting_events if isinstance(event, AlertRequested)]
    assert sorted(event.incident_id for event in requested) == sorted(event.incident_id for event in opened)
    assert len([event for event in alerting_events if isinstance(event, AlertDispatched)]) == 2
    assert len(receiver.received) == len(receiver.delivered) == 2  # one message per incident, none repeated
    assert leftovers == []  # no partial clip left behind on the full disk

    engine = create_database_engine(f"sqlite:///{tmp_path / 'projections.db'}")
    migrate(engine)
    projector = Projector(engine, bus, PROJECTIONS["incidents"])
    projector.catch_up()
    projector.close()
    with engine.connect() as connection:  # what an operator sees: no clip, and a note saying why
        for incident in opened:
            detail = incident_detail(connection, incident.incident_id)
            assert detail is not None and detail["clip_sha256"] is None
            notes = [entry for entry in detail["timeline"] if entry["event_type"] == "IncidentNoteAdded"]
            assert [entry["actor"] for entry in notes] == [SYSTEM_ACTOR]
            assert "evidence clip missing" in notes[0]["summary"]
    engine.dispose()
