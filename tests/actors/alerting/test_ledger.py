"""The ledger folded from alert events: idempotent replays, durability before sending, backoff, history reads."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from actors.alerting.ledger import Ledger, read_history
from config import Settings
from config.alerting import AlertRetryPolicy
from events.base import utc_now
from events.catalogue import AlertDeferred, AlertDispatched, AlertFailed, AlertRequested, IncidentNoteAdded

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = AlertRetryPolicy(max_attempts=4, first_backoff_s=10, factor=3, max_backoff_s=60)


def request(
    key: str = "inc-1/e1/desk",
    at: datetime = T0,
    transition: str = "e1",
    *,
    kind: str = "notify",
    tier: int = 0,
    stream_id: str = "ward-3",
) -> AlertRequested:
    return AlertRequested(
        stream_id=stream_id,
        occurred_at=at,
        alert_key=key,
        incident_id="inc-1",
        channel="desk",
        transition_event_id=transition,
        severity="high",
        title="t",
        body="b",
        kind=kind,
        route="r",
        tier=tier,
        clip_sha256=None,
    )


def failed(attempts: int, at: datetime, final: bool = False) -> AlertFailed:
    return AlertFailed(
        stream_id="ward-3",
        occurred_at=at,
        alert_key="inc-1/e1/desk",
        incident_id="inc-1",
        channel="desk",
        attempts=attempts,
        reason=f"HTTP 503 #{attempts}",
        final=final,
    )


def test_only_durable_unsettled_requests_are_due_and_failures_back_off() -> None:
    ledger = Ledger()
    ledger.record(request(), durable=False)
    assert ledger.knows("inc-1/e1/desk")
    assert ledger.due_deliveries(T0, POLICY) == []  # not read back from the topic yet
    ledger.record(request(), durable=True)
    assert [delivery.alert_key for delivery in ledger.due_deliveries(T0, POLICY)] == ["inc-1/e1/desk"]

    ledger.record(failed(1, T0), durable=True)
    ledger.record(failed(2, T0 + timedelta(seconds=10)), durable=True)
    ledger.record(failed(1, T0), durable=True)  # a replayed older failure changes nothing
    [delivery] = ledger.deliveries()
    assert (delivery.attempts, delivery.last_reason, delivery.finished) == (2, "HTTP 503 #2", False)
    assert delivery.next_attempt_at(POLICY) == T0 + timedelta(seconds=40)  # 10 s + 10 s x 3
    assert ledger.due_deliveries(T0 + timedelta(seconds=39), POLICY) == []
    assert len(ledger.due_deliveries(T0 + timedelta(seconds=40), POLICY)) == 1

    ledger.record(
        AlertDispatched(
            **request().caused(), alert_key="inc-1/e1/desk", incident_id="inc-1", channel="desk", attempts=3
        ),
        durable=True,
    )
    assert delivery.dispatched and ledger.due_deliveries(T0 + timedelta(hours=1), POLICY) == []


def test_rate_counts_escalation_anchors_digests_and_pruning() -> None:
    ledger = Ledger()
    ledger.record(request("inc-1/e1/desk"), durable=True)
    ledger.record(request("inc-1/e1/pager"), durable=True)  # same transition, second channel
    ledger.record(
        request("inc-1/e2/desk", at=T0 + timedelta(minutes=5), transition="e2", stream_id="lobby"), durable=True
    )
    ledger.record(request("inc-1/escalation/r/1/desk", kind="escalation", tier=1), durable=True)
    assert ledger.admitted(since=T0) == 2
    assert ledger.admitted(since=T0, stream_id="ward-3") == 1
    assert ledger.admitted(since=T0 + timedelta(minutes=1)) == 1
    assert ledger.transition_admitted("e1") and not ledger.transition_admitted("e3")
    assert ledger.anchors("inc-1") == {"r": (T0, "e1")}
    assert ledger.highest_tier("inc-1", "r") == 1

    deferred = AlertDeferred(
        stream_id="ward-3",
        occurred_at=T0,
        alert_key="inc-2/e9/desk",
        incident_id="inc-2",
        channel="desk",
        transition_event_id="e9",
        severity="low",
        route="minor",
        reason="digest",
        digest_key="digest/minor/ward-3/x/desk",
        digest_due_at=T0 + timedelta(hours=1),
        summary="12:00 LOW opened",
    )
    ledger.record(deferred, durable=True)
    ledger.record(deferred, durable=True)
    assert ledger.knows("inc-2/e9/desk")
    assert ledger.due_digests(T0 + timedelta(minutes=59)) == []
    [digest] = ledger.due_digests(T0 + timedelta(hours=1))
    assert list(digest.items) == ["inc-2/e9/desk"] and digest.channel == "desk"

    ledger.prune(before=T0 + timedelta(days=1))
    assert len(ledger.deliveries()) == 4  # unsettled requests are kept whatever their age
    assert ledger.deferred() == [deferred]  # its digest was never requested


def test_read_history_starts_at_the_requested_time(kafka_settings: Settings) -> None:
    kafka_settings.ensure_topics()
    bus = kafka_settings.bus()
    old = IncidentNoteAdded(stream_id="ward-3", incident_id="inc-1", actor="a", note="before")
    new = IncidentNoteAdded(stream_id="ward-4", incident_id="inc-2", actor="a", note="after")
    with bus.producer() as producer:
        producer.publish(old)
        producer.flush()
        time.sleep(0.05)
        since = utc_now()
        time.sleep(0.05)
        producer.publish(new)
    topics = [bus.catalogue.incidents.name, bus.catalogue.alerts.name]
    assert sorted(event.event_id for event in read_history(bus, topics, since=None)) == [old.event_id, new.event_id]
    assert [event.event_id for event in read_history(bus, topics, since=since)] == [new.event_id]
    assert list(read_history(bus, topics, since=utc_now() + timedelta(minutes=1))) == []
