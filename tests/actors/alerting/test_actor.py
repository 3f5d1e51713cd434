"""The alerting stage's decisions over time (escalation, digests, rate limits, retries), driven in process with a
settable clock and delivering to a real HTTP receiver. ``tests/actors/alerting/test_alerting_on_kafka.py`` runs
the same stage on a real broker and across a killed process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.alerting.actor import AlertingStage, build_stage
from config import load_settings
from domain.types import Severity
from events import Event
from events.base import utc_now
from events.catalogue import (
    AlertDeferred,
    AlertDispatched,
    AlertEvent,
    AlertFailed,
    AlertRequested,
    IncidentAcknowledged,
    IncidentEvent,
    IncidentOpened,
    LabelScore,
)
from events.kafka.consumer import ConsumedEvent
from tests.conftest import free_port, wait_for
from tests.support.alerting import JsonReceiver


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Driver:
    """Hosts a stage the way StageRunner does on Kafka: what the stage publishes on the alerts topic comes back
    to it as input (that topic is one of its inputs) before its next tick."""

    def __init__(self, stage: AlertingStage) -> None:
        self.stage = stage
        self.published: list[Event] = []
        self._echo: list[Event] = []

    def incident(self, event: IncidentEvent) -> list[Event]:
        return self._publish(self.stage.handle(self._consumed(event)))

    def tick(self) -> list[Event]:
        echo, self._echo = self._echo, []
        for event in echo:
            self._publish(self.stage.handle(self._consumed(event)))
        return self._publish(self.stage.tick())

    def settle(self) -> list[Event]:
        """Tick until nothing is left to do at this instant: requests came back, were sent, outcomes came back."""
        events: list[Event] = []
        while True:
            events += self.tick()
            if not self._echo and not self.stage.deliveries_in_flight:
                return events

    def tick_until(self, condition: Callable[[], bool], what: str) -> None:
        def ticked_and_true() -> bool:
            self.tick()
            return condition()

        wait_for(ticked_and_true, what=what)

    def of_type(self, event_type: type[Event]) -> list[Any]:
        return [event for event in self.published if isinstance(event, event_type)]

    def _publish(self, events: Iterable[Event]) -> list[Event]:
        out = list(events)
        self.published += out
        self._echo += [event for event in out if isinstance(event, AlertEvent)]
        return out

    def _consumed(self, event: Event) -> ConsumedEvent:
        topics = self.stage.topics
        topic = topics.alerts.name if isinstance(event, AlertEvent) else topics.incidents.name
        return ConsumedEvent(event=event, topic=topic, partition=0, offset=len(self.published), timestamp_ms=0)


@pytest.fixture
def receivers() -> Iterator[tuple[JsonReceiver, JsonReceiver, JsonReceiver]]:
    with JsonReceiver("a") as a, JsonReceiver("b") as b, JsonReceiver("c") as c:
        yield a, b, c


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def driver(tmp_path: Path, clock: Clock, **alerting: Any) -> Iterator[Driver]:
    settings = load_settings(data_dir=tmp_path, alerting={"timezone": "UTC", **alerting})
    stage = build_stage(settings, clock=clock)
    try:
        yield Driver(stage)
    finally:
        stage.close()


def opened(clock: Clock, incident_id: str, *, severity: Severity = "high", stream_id: str = "ward-3") -> IncidentOpened:
    return IncidentOpened(
        stream_id=stream_id,
        occurred_at=clock.now,
        incident_id=incident_id,
        severity=severity,
        score=0.9,
        reason=f"scream 0.9 ({incident_id})",
        onset_sample=0,
        onset_at=clock.now,
        labels=(LabelScore(label="scream", score=0.9),),
        phrases=(),
        transcript="help",
        clip_sha256=None,
        clip_duration_s=None,
    )


def test_a_transition_reaches_each_channel_once_even_when_replayed(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, b, _ = receivers
    routes = [{"name": "all", "notify": ["a", "b"]}, {"name": "wards", "streams": ["ward-*"], "notify": ["a"]}]
    with driver(tmp_path, clock, channels={"a": a.url(), "b": b.url()}, routes=routes) as run:
        event = opened(clock, "inc-1")
        requests = run.incident(event)
        assert sorted(request.channel for request in requests if isinstance(request, AlertRequested)) == ["a", "b"]
        assert list(run.stage.tick()) == []  # nothing is sent before the requests came back from the alerts topic
        run.settle()
        assert run.incident(event) == []  # the same transition again (a replay): the ledger knows it
        run.settle()
    assert len(a.delivered) == len(b.delivered) == 1
    assert a.delivered[0]["title"] == "[HIGH] ward-3: scream 0.9 (inc-1)"


def test_unacknowledged_incidents_escalate_and_acknowledgement_stops_it(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, b, c = receivers
    route = {
        "name": "staff",
        "notify": ["a"],
        "escalation": [{"after_minutes": 5, "notify": ["b"]}, {"after_minutes": 15, "notify": ["b", "c"]}],
    }
    with driver(tmp_path, clock, channels={"a": a.url(), "b": b.url(), "c": c.url()}, routes=[route]) as run:
        run.incident(opened(clock, "inc-1"))
        run.settle()
        clock.advance(minutes=4)
        assert run.settle() == []
        clock.advance(minutes=1)
        [tier_1] = [event for event in run.settle() if isinstance(event, AlertRequested)]
        assert (tier_1.kind, tier_1.tier, tier_1.channel) == ("escalation", 1, "b")
        run.incident(
            IncidentAcknowledged(
                stream_id="ward-3", occurred_at=clock.now, incident_id="inc-1", actor="operator:ana", note="on my way"
            )
        )
        clock.advance(minutes=30)
        assert run.settle() == []  # acknowledged: no tier 2

        run.incident(opened(clock, "inc-2"))  # nobody answers this one, and the actor looks again 20 min later
        run.settle()
        clock.advance(minutes=20)
        escalations = [event for event in run.settle() if isinstance(event, AlertRequested)]
        assert sorted((event.tier, event.channel) for event in escalations) == [(2, "b"), (2, "c")]
    assert [post["title"].split(":")[0] for post in b.delivered] == ["[HIGH] ESCALATION 1", "[HIGH] ESCALATION 2"]
    assert len(a.delivered) == 2 and len(c.delivered) == 1


def test_low_severity_goes_into_one_digest_per_interval(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, _, _ = receivers
    routes = [{"name": "minor", "severities": ["low"], "digest": True, "notify": ["a"]}]
    with driver(tmp_path, clock, channels={"a": a.url()}, routes=routes, digest_minutes=30) as run:
        for number in range(3):
            [deferred] = run.incident(opened(clock, f"low-{number}", severity="low"))
            assert isinstance(deferred, AlertDeferred) and deferred.reason == "digest"
        run.settle()
        assert a.delivered == []
        clock.advance(minutes=31)
        run.settle()
        clock.advance(minutes=31)
        run.settle()  # the next interval has nothing to say
    [digest] = a.delivered
    assert digest["title"] == "Digest: 3 incident updates on ward-3"
    assert all(f"low-{number}" in digest["message"] for number in range(3))


def test_rate_limits_defer_the_excess_into_a_digest_but_spare_critical(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, _, _ = receivers
    limits = {"window_minutes": 60, "per_stream": 2, "overall": 10, "exempt_severities": ["critical"]}
    with driver(
        tmp_path,
        clock,
        channels={"a": a.url()},
        routes=[{"name": "r", "notify": ["a"]}],
        rate_limit=limits,
        digest_minutes=10,
    ) as run:
        kinds = [type(run.incident(opened(clock, f"inc-{number}"))[0]) for number in range(3)]
        assert kinds == [AlertRequested, AlertRequested, AlertDeferred]
        assert run.of_type(AlertDeferred)[0].reason == "rate limit: 2 alerts per 60 min on ward-3"
        assert isinstance(run.incident(opened(clock, "inc-9", severity="critical"))[0], AlertRequested)
        assert isinstance(run.incident(opened(clock, "inc-4", stream_id="lobby"))[0], AlertRequested)
        run.settle()
        clock.advance(minutes=11)
        run.settle()
    assert len(a.delivered) == 5  # four at once, one digest
    assert "inc-2" in a.delivered[-1]["message"] and a.delivered[-1]["title"].startswith("Digest: 1 ")


def test_retries_back_off_exponentially_and_deliver_once(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, _, _ = receivers
    a.answer([503, 503])
    retry = {"max_attempts": 5, "first_backoff_s": 10, "factor": 2, "max_backoff_s": 60}
    with driver(tmp_path, clock, channels={"a": a.url()}, routes=[{"name": "r", "notify": ["a"]}], retry=retry) as run:
        run.incident(opened(clock, "inc-1"))
        run.settle()
        clock.advance(seconds=9)
        run.settle()
        clock.advance(seconds=1)
        run.settle()  # second attempt, 10 s after the first
        clock.advance(seconds=19)
        run.settle()
        clock.advance(seconds=1)
        run.settle()  # third attempt, 20 s after the second
        outcomes = [
            (type(event).__name__, event.attempts)
            for event in run.published
            if isinstance(event, AlertFailed | AlertDispatched)
        ]
    assert outcomes == [("AlertFailed", 1), ("AlertFailed", 2), ("AlertDispatched", 3)]
    assert len(a.received) == 3 and len(a.delivered) == 1


def test_a_channel_that_stays_down_fails_for_good_while_the_others_get_through(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, _, _ = receivers
    channels = {"a": a.url(), "down": f"json://127.0.0.1:{free_port()}/hook"}
    retry = {"max_attempts": 2, "first_backoff_s": 5}
    with driver(
        tmp_path, clock, channels=channels, routes=[{"name": "r", "notify": ["down", "a"]}], retry=retry
    ) as run:
        run.incident(opened(clock, "inc-1"))
        run.settle()
        clock.advance(seconds=5)
        run.settle()
        clock.advance(minutes=10)
        run.settle()
        failures = [(event.attempts, event.final) for event in run.of_type(AlertFailed)]
        final = run.of_type(AlertFailed)[-1]
        assert [event.channel for event in run.of_type(AlertDispatched)] == ["a"]
    assert failures == [(1, False), (2, True)]
    assert final.channel == "down" and "onnection" in final.reason
    assert len(a.delivered) == 1


def test_history_too_old_to_matter_is_not_notified(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, _, _ = receivers
    with driver(
        tmp_path, clock, channels={"a": a.url()}, routes=[{"name": "r", "notify": ["a"]}], max_delay_minutes=30
    ) as run:
        old = opened(clock, "inc-old")
        clock.advance(minutes=31)
        assert run.incident(old) == []


def test_a_restarted_stage_sends_what_was_requested_but_never_dispatched(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, b, _ = receivers
    alerting = {"channels": {"a": a.url(), "b": b.url()}, "routes": [{"name": "r", "notify": ["a", "b"]}]}
    with driver(tmp_path, clock, **alerting) as first:
        incident = opened(clock, "inc-1")
        requests = first.incident(incident)  # ... and the process dies before sending anything
    assert all(isinstance(request, AlertRequested) for request in requests)
    to_b = next(request for request in requests if isinstance(request, AlertRequested) and request.channel == "b")
    dispatched_to_b = AlertDispatched(
        **to_b.caused(), alert_key=to_b.alert_key, incident_id="inc-1", channel="b", attempts=1
    )
    with driver(tmp_path, clock, **alerting) as second:
        second.stage.recover([*requests, dispatched_to_b, incident])
        assert second.incident(incident) == []  # re-delivered by the consumer group: already decided
        second.settle()
    assert len(a.delivered) == 1 and b.delivered == []  # b had been dispatched before the crash


def test_a_hanging_channel_holds_back_nobody_and_a_clean_stop_waits_for_it(
    tmp_path: Path, clock: Clock, receivers: tuple[JsonReceiver, ...]
) -> None:
    a, b, _ = receivers
    b.hold_next()
    alerting = {
        "channels": {"a": a.url(), "b": b.url()},
        "routes": [{"name": "r", "notify": ["a", "b"]}],
        "delivery_wait_s": 0.1,
    }
    with driver(tmp_path, clock, **alerting) as run:
        run.incident(opened(clock, "inc-1"))
        run.tick_until(lambda: len(run.of_type(AlertDispatched)) == 1, what="a's delivery")
        wait_for(b.holding.is_set, what="b's request")  # b's thread may send it after a's round trip ended
        assert run.stage.deliveries_in_flight == 1
        assert [event.channel for event in run.of_type(AlertDispatched)] == ["a"]
        run.incident(opened(clock, "inc-2"))  # new incidents are handled while b hangs
        run.tick_until(lambda: len(a.delivered) == 2, what="the second incident")

        run.stage.finish()
        threading.Timer(0.3, b.release).start()
        outcomes = run.tick()  # waits for b instead of leaving its attempt unrecorded
        clock.advance(minutes=5)
        assert run.tick() == []  # finishing: no new attempt starts
    assert [(event.channel, event.attempts) for event in outcomes if isinstance(event, AlertFailed)] == [("b", 1)]
    assert run.stage.deliveries_in_flight == 0
