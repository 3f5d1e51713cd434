"""The HTTP API against real events on the test broker, projected by the real projectors into SQLite."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from events.catalogue import IncidentAcknowledged, IncidentEvent, IncidentNoteAdded
from events.kafka.log import read_all
from tests.conftest import wait_for
from tests.frontend.conftest import ALICE_TOKEN, BOB_PASSWORD
from tests.support.world import LEAKY_CHANNEL_ERROR, RATE, SECRETS, World

UNKNOWN_INCIDENT = "hall-1:0123456789ab"


def incident_events(world: World, incident_id: str) -> list[IncidentEvent]:
    return [
        consumed.event
        for consumed in read_all(world.bus, [world.bus.catalogue.incidents.name])
        if isinstance(consumed.event, IncidentEvent) and consumed.event.incident_id == incident_id
    ]


# ------------------------------------------------------------------------------------------ authentication


def test_health_needs_no_sign_in_and_reports_broker_database_and_pipeline(world: World, anonymous: TestClient) -> None:
    response = anonymous.get("/api/health")  # ``world`` made the topics: an idle pipeline that never ran
    assert response.status_code == 200
    health = response.json()
    assert {
        key: health[key]
        for key in (
            "status",
            "reasons",
            "broker",
            "database",
            "database_error",
            "pipeline_error",
            "projectors",
            "live_clients",
        )
    } == {
        "status": "ok",
        "reasons": [],
        "broker": {"reachable": True, "error": None},
        "database": True,
        "database_error": None,
        "pipeline_error": None,
        "projectors": {},
        "live_clients": 0,
    }
    assert [(stage["stage"], stage["lag"], stage["state"]) for stage in health["pipeline"]] == [
        *((name, 0, "idle") for name in ("features", "asr", "scorer", "incidents", "alerting")),
        ("projections", 0, "ok"),
    ]  # no consumer group: its position is in the database


def test_health_says_which_stage_is_not_running_while_its_input_waits(world: World, anonymous: TestClient) -> None:
    world.incident(with_alerts=False)
    world.project()
    wait_for(lambda: anonymous.get("/api/health").status_code == 503, timeout_s=30, what="the next probe")
    response = anonymous.get("/api/health")
    stages = {stage["stage"]: stage for stage in response.json()["pipeline"]}
    assert (stages["incidents"]["consumers"], stages["incidents"]["state"]) == (0, "stopped")
    assert stages["incidents"]["lag"] > 0
    assert "stage incidents not running, " in " ".join(response.json()["reasons"])
    assert stages["projections"]["state"] == "ok"  # ``project`` applied everything
    world.finish_pipeline()
    wait_for(lambda: anonymous.get("/api/health").status_code == 200, timeout_s=30, what="the next probe")


def test_every_endpoint_but_health_refuses_missing_or_wrong_credentials(anonymous: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    reads = [
        "/api/streams",
        "/api/incidents",
        f"/api/incidents/{incident.incident_id}",
        f"/api/incidents/{incident.incident_id}/evidence",
        f"/api/incidents/{incident.incident_id}/clip",
        f"/api/incidents/{incident.incident_id}/waveform",
        "/api/events",
        "/api/session",
        "/metrics",
        "/fragments/streams",
        "/fragments/incidents",
        f"/fragments/incidents/{incident.incident_id}/timeline",
    ]
    commands = [
        f"/api/incidents/{incident.incident_id}/{action}"
        for action in ("acknowledge", "resolve", "false-alarm", "notes")
    ]
    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {ALICE_TOKEN}"},
        {"Authorization": "Bearer "},
    ):
        for url in reads:
            response = anonymous.get(url, headers=headers)
            assert response.status_code == 401, (url, headers, response.text)
        for url in commands:
            response = anonymous.post(url, json={"note": "x"}, headers=headers)
            assert response.status_code == 401, (url, headers)
    assert anonymous.get("/api/streams").headers["www-authenticate"].startswith("Bearer")
    assert incident_events(world, incident.incident_id) == [incident.opened]  # nothing was appended


def test_password_sign_in_gives_a_session_whose_commands_need_the_csrf_token(
    anonymous: TestClient, world: World
) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    signed_in = anonymous.post("/api/session", json={"username": "bob", "password": BOB_PASSWORD})
    assert signed_in.status_code == 200
    session = signed_in.json()
    assert session["operator"] == "bob" and session["via"] == "password"
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert anonymous.get("/api/incidents").status_code == 200
    assert anonymous.get("/api/session").json()["operator"] == "bob"

    url = f"/api/incidents/{incident.incident_id}/notes"
    assert anonymous.post(url, json={"note": "on my way"}).status_code == 403
    assert anonymous.post(url, json={"note": "on my way"}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    noted = anonymous.post(url, json={"note": "on my way"}, headers={"X-CSRF-Token": session["csrf_token"]})
    assert noted.status_code == 200
    assert noted.json()["actor"] == "bob"

    assert anonymous.delete("/api/session").status_code == 403
    assert anonymous.delete("/api/session", headers={"X-CSRF-Token": session["csrf_token"]}).status_code == 204
    anonymous.cookies.set("distress_session", cookie.split(";")[0].split("=", 1)[1])  # a copy kept elsewhere
    assert anonymous.get("/api/incidents").status_code == 401  # revoked


def test_sign_in_validates_input(anonymous: TestClient) -> None:
    """(Throttling, oversized bodies and what refusals may say: tests/security.)"""
    for body in (
        {},
        {"username": "bob"},
        {"username": "bob", "password": "x", "token": "y"},
        {"token": ""},
        {"username": "b" * 65, "password": "x"},
        {"token": "t", "role": "admin"},
    ):
        assert anonymous.post("/api/session", json=body).status_code == 422, body
    assert anonymous.post("/api/session", json={"token": ALICE_TOKEN}).json()["operator"] == "alice"
    assert anonymous.post("/api/session", json={"username": "bob", "password": "guess"}).status_code == 401
    assert anonymous.post("/api/session", json={"username": "bob", "password": BOB_PASSWORD}).status_code == 200


# ---------------------------------------------------------------------------------------------- reading


def test_streams_show_status_level_labels_last_words_and_active_incidents(client: TestClient, world: World) -> None:
    world.incident("hall-1")
    world.project()
    tiles = client.get("/api/streams").json()
    assert [tile["stream_id"] for tile in tiles] == ["hall-1"]
    tile = tiles[0]
    assert tile["status"] == "running" and tile["source_kind"] == "file"
    assert tile["rms_dbfs"] == -14.0 and tile["level"] == pytest.approx(46 / 60)
    assert [label["label"] for label in tile["labels"]] == ["scream", "speech"]
    assert tile["last_transcript"] == "please help me"
    assert tile["active_incidents"] == 1


def test_incidents_filter_and_page(client: TestClient, world: World) -> None:
    now = datetime.now(UTC)
    high = world.incident("hall-1", severity="high", with_alerts=False, onset_at=now - timedelta(minutes=3))
    critical = world.incident("hall-2", severity="critical", with_alerts=False, onset_at=now - timedelta(minutes=2))
    low = world.incident(
        "yard", severity="low", with_alerts=False, with_clip=False, onset_at=now - timedelta(minutes=1)
    )
    client.post(f"/api/incidents/{critical.incident_id}/acknowledge", json={})
    world.project()

    def ids(**params: str | list[str]) -> list[str]:
        response = client.get("/api/incidents", params=params)
        assert response.status_code == 200, response.text
        return [item["incident_id"] for item in response.json()["items"]]

    assert ids() == [low.incident_id, critical.incident_id, high.incident_id]  # newest onset first
    assert ids(severity=["critical", "low"]) == [low.incident_id, critical.incident_id]
    assert ids(status="acknowledged") == [critical.incident_id]
    assert ids(status=["open"], stream_id="hall-1") == [high.incident_id]
    assert ids(since=(now - timedelta(minutes=2, seconds=30)).isoformat()) == [low.incident_id, critical.incident_id]
    assert ids(until=(now - timedelta(minutes=2, seconds=30)).isoformat()) == [high.incident_id]
    page = client.get("/api/incidents", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and page["limit"] == 1 and page["offset"] == 1
    assert [item["incident_id"] for item in page["items"]] == [critical.incident_id]
    summary = page["items"][0]
    assert summary["status"] == "acknowledged" and summary["acknowledged_by"] == "alice"
    assert summary["labels"][0] == {"label": "scream", "score": 0.91} and summary["has_clip"] is True


BAD_FILTERS: list[dict[str, str | int]] = [
    {"status": "closed"},
    {"severity": "extreme"},
    {"stream_id": "../etc"},
    {"stream_id": "a" * 70},
    {"limit": 0},
    {"limit": 201},
    {"offset": -1},
    {"limit": "ten"},
    {"since": "2026-03-01T12:00:00"},
    {"since": "yesterday"},
    {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
]


def test_bad_incident_filters_are_refused_with_the_reason(client: TestClient) -> None:
    for params in BAD_FILTERS:
        response = client.get("/api/incidents", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"]
        assert client.get("/fragments/incidents", params=params).status_code == 422, params


def test_incident_detail_has_timeline_alerts_and_allowed_actions_without_secrets(
    client: TestClient, world: World
) -> None:
    incident = world.incident()
    world.project()
    response = client.get(f"/api/incidents/{incident.incident_id}")
    assert response.status_code == 200
    detail = response.json()
    assert detail["incident"]["reason"].startswith("2 of the last 3 windows positive")
    assert [(entry["event_type"], entry["actor"]) for entry in detail["timeline"]] == [("IncidentOpened", None)]
    assert detail["allowed"] == {"acknowledge": True, "resolve": True, "false_alarm": True, "note": True}
    [alert] = detail["alerts"]
    assert alert["channel"] == "ops-hook" and alert["status"] == "retrying" and alert["attempts"] == 1
    assert alert["kind"] == "notify" and alert["route"] == "all"
    assert "hooks.example.org" in alert["detail"]
    assert not any(secret in response.text for secret in SECRETS), alert["detail"]
    assert LEAKY_CHANNEL_ERROR not in response.text


def test_unknown_and_malformed_incident_ids(client: TestClient) -> None:
    for suffix in ("", "/evidence", "/clip", "/waveform"):
        assert client.get(f"/api/incidents/{UNKNOWN_INCIDENT}{suffix}").status_code == 404
        for malformed in ("hall-1", "hall-1:XYZ", "hall-1:0123456789abc", ":0123456789ab", "a%20b:0123456789ab"):
            assert client.get(f"/api/incidents/{malformed}{suffix}").status_code == 422, (malformed, suffix)


def test_evidence_has_scores_over_time_and_the_spoken_phrase_at_its_word_times(
    client: TestClient, world: World
) -> None:
    incident = world.incident()
    world.project()
    evidence = client.get(f"/api/incidents/{incident.incident_id}/evidence").json()
    assert evidence["problem"] is None
    assert evidence["clip_url"] == f"/api/incidents/{incident.incident_id}/clip"
    assert evidence["clip_start_s"] == 0.0 and evidence["onset_in_clip_s"] == 5.0  # clip_pre_s = 5
    assert [point["t_s"] for point in evidence["scores"]] == [float(window - 5) for window in range(9)]
    assert [point["is_distress"] for point in evidence["scores"]] == [False] * 5 + [True] * 4
    assert evidence["top_labels"] == ["scream", "speech"]
    [line] = evidence["transcripts"]
    assert line["timed"] and line["text"] == "please help me"
    assert [(token["text"], token["phrase"]) for token in line["tokens"]] == [
        ("please", False),
        ("help", True),
        ("me", True),
    ]
    assert line["tokens"][1]["start_s"] == pytest.approx(5.5)


def test_clip_is_served_as_wav_with_byte_ranges(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    assert incident.clip_bytes is not None
    size = len(incident.clip_bytes)
    url = f"/api/incidents/{incident.incident_id}/clip"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == incident.clip_bytes
    assert whole.headers["content-type"] == "audio/wav" and whole.headers["accept-ranges"] == "bytes"
    head = client.get(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206 and head.content == incident.clip_bytes[:100]
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    tail = client.get(url, headers={"Range": "bytes=-44"})
    assert tail.status_code == 206 and tail.content == incident.clip_bytes[-44:]
    rest = client.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    ignored = client.get(url, headers={"Range": "bytes=0-1,5-9"})  # multiple ranges: RFC 9110 lets us send all
    assert ignored.status_code == 200 and ignored.content == incident.clip_bytes
    assert whole.headers["etag"] == f'"{incident.clip_sha256}"'
    unchanged = client.get(url, headers={"If-None-Match": whole.headers["etag"]})
    assert unchanged.status_code == 304 and not unchanged.content


def test_clip_and_waveform_of_an_incident_without_audio_are_404(client: TestClient, world: World) -> None:
    incident = world.incident(with_clip=False, with_alerts=False)
    world.project()
    for suffix in ("clip", "waveform"):
        response = client.get(f"/api/incidents/{incident.incident_id}/{suffix}")
        assert response.status_code == 404 and "privacy mode" in response.json()["detail"]


def test_a_tampered_clip_fails_its_integrity_check(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    assert incident.clip_sha256 is not None
    path = world.clips.path_for(incident.clip_sha256)
    path.write_bytes(path.read_bytes()[:-2] + b"\x00\x01")
    response = client.get(f"/api/incidents/{incident.incident_id}/clip")
    assert response.status_code == 500 and "integrity" in response.json()["detail"]


def test_waveform_peaks_follow_the_clip(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    url = f"/api/incidents/{incident.incident_id}/waveform"
    waveform = client.get(url, params={"points": 100}).json()
    assert waveform["duration_s"] == 8.0 and waveform["sample_rate"] == RATE and len(waveform["peaks"]) == 100
    loudest = max(range(100), key=lambda index: waveform["peaks"][index][1])
    assert 40 <= loudest <= 60  # the tone swells in the middle
    assert all(-1.0 <= low <= high <= 1.0 for low, high in waveform["peaks"])
    for points in (5, 4001, "many"):
        assert client.get(url, params={"points": points}).status_code == 422


# --------------------------------------------------------------------------------------------- commands


def test_commands_append_events_as_the_signed_in_operator(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    base = f"/api/incidents/{incident.incident_id}"
    acknowledged = client.post(f"{base}/acknowledge", json={"note": "calling the guard"})
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["actor"] == "alice" and acknowledged.json()["event_type"] == "IncidentAcknowledged"
    again = client.post(f"{base}/acknowledge", json={})
    assert again.status_code == 409 and "already acknowledged by alice" in again.json()["detail"]
    assert client.post(f"{base}/notes", json={"note": "guard on site"}).status_code == 200
    assert client.post(f"{base}/resolve", json={"note": "all fine"}).status_code == 200
    assert client.post(f"{base}/false-alarm", json={}).status_code == 409

    events = incident_events(world, incident.incident_id)
    assert [type(event).__name__ for event in events] == [
        "IncidentOpened",
        "IncidentAcknowledged",
        "IncidentNoteAdded",
        "IncidentResolved",
    ]
    assert all(event.actor == "alice" for event in events[1:])  # type: ignore[attr-defined]
    ack = events[1]
    assert isinstance(ack, IncidentAcknowledged) and ack.note == "calling the guard"
    assert ack.causation_id == incident.opened.event_id and ack.correlation_id == incident.opened.correlation_id

    world.project()
    detail = client.get(base).json()
    assert detail["incident"]["status"] == "resolved" and detail["incident"]["closed_by"] == "alice"
    assert [(entry["event_type"], entry["actor"]) for entry in detail["timeline"]] == [
        ("IncidentOpened", None),
        ("IncidentAcknowledged", "alice"),
        ("IncidentNoteAdded", "alice"),
        ("IncidentResolved", "alice"),
    ]
    assert detail["allowed"] == {"acknowledge": False, "resolve": False, "false_alarm": False, "note": True}


BAD_COMMANDS: list[tuple[str, object]] = [
    ("notes", {}),
    ("notes", {"note": ""}),
    ("notes", {"note": "   "}),
    ("acknowledge", {"note": "x" * 4001}),
    ("resolve", {"note": "bell\x07"}),
    ("acknowledge", {"note": 5}),
    ("acknowledge", {"actor": "mallory"}),
    ("acknowledge", None),
    ("false-alarm", ["note"]),
]


def test_bad_command_input_is_refused_and_nothing_is_appended(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    for action, body in BAD_COMMANDS:
        response = client.post(f"/api/incidents/{incident.incident_id}/{action}", json=body)
        assert response.status_code == 422, (action, body, response.text)
    assert incident_events(world, incident.incident_id) == [incident.opened]


def test_commands_on_unknown_incidents_are_404(client: TestClient, world: World) -> None:
    response = client.post(f"/api/incidents/{UNKNOWN_INCIDENT}/acknowledge", json={})
    assert response.status_code == 404 and "no such incident" in response.json()["detail"]


def test_the_note_and_actor_end_up_in_the_timeline(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    client.post(f"/api/incidents/{incident.incident_id}/notes", json={"note": "camera 3 shows nobody"})
    [note] = [event for event in incident_events(world, incident.incident_id) if isinstance(event, IncidentNoteAdded)]
    assert note.actor == "alice" and note.note == "camera 3 shows nobody"
    world.project()
    timeline = client.get(f"/api/incidents/{incident.incident_id}").json()["timeline"]
    assert timeline[-1]["summary"] == "note: camera 3 shows nobody" and timeline[-1]["actor"] == "alice"


# ------------------------------------------------------------------------------------------- operations


def test_metrics_count_requests_commands_and_incidents(client: TestClient, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    client.get("/api/incidents")
    client.post(f"/api/incidents/{incident.incident_id}/acknowledge", json={})
    client.post(f"/api/incidents/{incident.incident_id}/acknowledge", json={})
    text = client.get("/metrics").text
    assert 'distress_incidents{severity="high",status="open"} 1.0' in text
    assert re.search(
        r'distress_dashboard_requests_total\{method="GET",route="/api/incidents",status="200"\} 1\.0', text
    )
    assert 'distress_dashboard_commands_total{action="acknowledge",outcome="appended"} 1.0' in text
    assert 'distress_dashboard_commands_total{action="acknowledge",outcome="refused"} 1.0' in text
    assert "distress_dashboard_live_clients 0.0" in text


def test_openapi_documents_every_endpoint(anonymous: TestClient) -> None:
    document = anonymous.get("/api/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/session",
        "/api/health",
        "/api/streams",
        "/api/incidents",
        "/api/incidents/{incident_id}",
        "/api/incidents/{incident_id}/evidence",
        "/api/incidents/{incident_id}/clip",
        "/api/incidents/{incident_id}/waveform",
        "/api/incidents/{incident_id}/acknowledge",
        "/api/incidents/{incident_id}/resolve",
        "/api/incidents/{incident_id}/false-alarm",
        "/api/incidents/{incident_id}/notes",
        "/api/events",
        "/metrics",
    }
    assert "IncidentDetail" in document["components"]["schemas"]
    assert anonymous.get("/docs").status_code == 404  # no CDN-backed docs page


def test_responses_carry_security_headers(anonymous: TestClient) -> None:
    response = anonymous.get("/api/health")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert anonymous.get("/static/app.js").status_code == 200
