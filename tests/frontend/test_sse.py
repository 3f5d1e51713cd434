"""Live updates: the change feed over real projections, and server-sent events from a real server."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

from config import Settings
from frontend.server import DashboardServer
from frontend.sse import Broadcaster, ChangeFeed, LiveUpdate
from tests.frontend.conftest import ALICE_TOKEN, dashboard_config
from tests.support.world import World


def test_the_feed_announces_each_incident_transition_once_and_nothing_from_before(world: World) -> None:
    old = world.incident("hall-1", with_alerts=False)
    world.project()
    feed = ChangeFeed(world.engine)
    assert feed.poll() == []  # the first look only finds where "now" is
    assert feed.poll() == []
    new = world.incident("hall-2")
    world.project()
    updates = feed.poll()
    assert [update.kind for update in updates] == ["incidents", "streams", "alerts"]
    assert updates[0].data == {
        "incidents": [
            {
                "incident_id": new.incident_id,
                "stream_id": "hall-2",
                "status": "open",
                "severity": "high",
                "has_clip": True,
                "event_type": "IncidentOpened",
            }
        ]
    }
    assert feed.poll() == []
    assert old.incident_id not in json.dumps([update.data for update in updates])


def test_a_slow_subscriber_is_told_to_resync_instead_of_growing_without_bound() -> None:
    broadcaster = Broadcaster()
    queue = broadcaster.subscribe()
    for index in range(300):
        broadcaster.publish(LiveUpdate(kind="streams", data={"n": index}))
    drained = [queue.get_nowait() for _ in range(queue.qsize())]
    assert drained[0] == LiveUpdate(kind="resync")
    assert len(drained) < 256
    broadcaster.unsubscribe(queue)
    assert broadcaster.clients == 0


def events_from(response: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = ""
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])


def test_server_sent_events_announce_a_new_incident_to_an_open_connection(dashboard_settings: Settings) -> None:
    settings = dashboard_settings.model_copy(update={"dashboard": dashboard_config(run_projectors=True)})
    world = World(settings)
    with DashboardServer(settings, host="127.0.0.1", port=0) as server:
        host, port = server.socket.getsockname()[:2]
        connection = http.client.HTTPConnection(host, port, timeout=60)
        connection.request("GET", "/api/events", headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        stream = events_from(response)
        assert next(stream) == ("hello", {"operator": "alice"})
        incident = world.incident("hall-7", with_alerts=False)
        deadline = time.monotonic() + 60
        announced: list[dict[str, Any]] = []
        while not announced and time.monotonic() < deadline:
            kind, data = next(stream)
            if kind == "incidents":
                announced = data["incidents"]
        assert [(item["incident_id"], item["event_type"]) for item in announced] == [
            (incident.incident_id, "IncidentOpened")
        ]
        # No stage runs here, so the incident waits for the incident stage: the open page is told, in words.
        told = next(data for kind, data in stream if kind == "health" and data["status"] == "degraded")
        assert any(reason.startswith("stage incidents not running") for reason in told["reasons"])
        world.finish_pipeline()  # as a pipeline that did its work and stopped leaves its groups
        assert next(data for kind, data in stream if kind == "health" and data["status"] == "ok")["reasons"] == []
        status = health_of(host, port)
        assert status["live_clients"] == 1 and status["status"] == "ok"
        assert set(status["projectors"]) == {"incidents", "streams", "alerts", "transcripts"}
        connection.close()


def health_of(host: str, port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/api/health")
        found: dict[str, Any] = json.loads(connection.getresponse().read())
        return found
    finally:
        connection.close()
