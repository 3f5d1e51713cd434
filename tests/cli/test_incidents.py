"""The operator's commands end to end on a real broker and SQLite: project, list, show, decide, streams, replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from actors.incidents.engine import IncidentEngine
from benchmarks.replay import synthetic_history
from cli.incidents import parse_since
from config import Settings
from config.settings import IncidentConfig
from events import Event
from events.catalogue import IncidentOpened
from projections.database import create_database_engine
from projections.schema import IncidentRow
from tests.support.cli import Distress
from tests.support.scenario import Scenario


@pytest.fixture
def distress(kafka_settings: Settings, tmp_path: Path) -> Distress:
    kafka_settings.ensure_topics()
    return Distress(kafka_settings, tmp_path)


def open_incident(settings: Settings) -> IncidentOpened:
    engine = IncidentEngine(IncidentConfig(), clip_store=None, stores_audio=lambda _: True, clock=lambda: 0.0)
    scored = Scenario(stream_id="lobby").score(0, 0.95)
    events: list[Event] = engine.on_score(scored)
    with settings.bus().producer() as producer:
        for event in [*synthetic_history(streams=2, incidents_per_stream=2, windows_per_incident=3), scored, *events]:
            producer.publish(event)
    opened = events[0]
    assert isinstance(opened, IncidentOpened)
    return opened


def test_an_operator_reviews_and_decides_through_the_cli(distress: Distress, kafka_settings: Settings) -> None:
    opened = open_incident(kafka_settings)
    applied = distress.json("project", "--until-caught-up")["events"]
    assert applied["incidents"] > 0 and set(applied) == {"incidents", "streams", "alerts", "transcripts"}

    listed = distress.json("incidents", "list", "--status", "open")
    assert [item["incident_id"] for item in listed] == [opened.incident_id]
    assert (
        distress.json("incidents", "list", "--stream", "cam-000", "--since", "2026-01-01")[0]["stream_id"] == "cam-000"
    )
    assert "open" in distress("incidents", "list").stdout

    ack = distress.json("incidents", "ack", opened.incident_id, "--note", "on my way", "--actor", "operator:ana")
    assert (ack["event_type"], ack["actor"], ack["note"]) == ("IncidentAcknowledged", "operator:ana", "on my way")
    distress("project", "--until-caught-up")
    shown = distress.json("incidents", "show", opened.incident_id)
    assert (shown["status"], shown["acknowledged_by"], shown["severity"]) == ("acknowledged", "operator:ana", "high")
    assert [entry["event_type"] for entry in shown["timeline"]] == ["IncidentOpened", "IncidentAcknowledged"]
    assert shown["timeline"][1]["summary"] == "acknowledged (on my way)" and shown["clip_path"] is None
    assert "on my way" in distress("incidents", "show", opened.incident_id).stdout

    distress("incidents", "resolve", opened.incident_id, "--note", "all fine")
    refused = distress("incidents", "ack", opened.incident_id, code=2)
    assert "already resolved by operator:" in refused.stderr
    assert "unknown incident" in distress("incidents", "false-alarm", "lobby:000000000000", code=2).stderr
    assert "note" in distress.json("incidents", "note", opened.incident_id, "called family")["event_type"].lower()
    assert "unknown status" in distress("incidents", "list", "--status", "closed", code=2).stderr
    assert "--since" in distress("incidents", "list", "--since", "yesterday", code=2).stderr
    assert "unknown incident" in distress("incidents", "show", "lobby:000000000000", code=2).stderr

    streams = distress.json("streams")
    assert {stream["stream_id"] for stream in streams} == {"cam-000", "cam-001", "lobby"}
    assert "cam-000" in distress("streams").stdout


def test_replay_rebuilds_verifies_and_reports_tampering(
    distress: Distress, kafka_settings: Settings, tmp_path: Path
) -> None:
    open_incident(kafka_settings)
    distress("project", "--until-caught-up")
    rebuilt = distress.json("replay")
    assert rebuilt["mode"] == "rebuild" and rebuilt["events"] > 0 and rebuilt["events_per_s"] > 0
    assert [item["projection"] for item in rebuilt["projections"]] == ["incidents", "streams", "alerts", "transcripts"]
    assert distress.json("replay", "--verify")["differences"] == 0

    engine = create_database_engine(f"sqlite:///{tmp_path / 'distress.db'}")
    with engine.begin() as connection:
        connection.execute(update(IncidentRow).where(IncidentRow.stream_id == "lobby").values(status="resolved"))
    engine.dispose()
    report = distress.json("replay", "--verify", "--projection", "incidents", code=1)
    [difference] = report["projections"][0]["tables"][0]["differences"]
    assert difference["problem"] == "changed"
    assert difference["columns"] == {"status": {"live": "resolved", "rebuilt": "open"}}
    assert "live 'resolved' != rebuilt 'open'" in distress("replay", "--verify", code=1).stdout

    assert "unknown projection" in distress("replay", "--projection", "nope", code=2).stderr
    assert "only apply with --rescore" in distress("replay", "--threshold", "0.5", code=2).stderr
    assert "no such file" in distress("replay", "--rescore", "--model", "missing.pt", code=2).stderr


def test_since_accepts_spans_and_iso_times() -> None:
    now = parse_since("2026-02-01T10:00:00+01:00")
    assert now.utcoffset() is not None and now.hour == 10
    assert parse_since("90m", now) == parse_since("2026-02-01T07:30:00Z")
    assert parse_since("2026-02-01 09:00").tzinfo is not None
    with pytest.raises(ValueError, match="expected an ISO 8601 time"):
        parse_since("last week")
