"""The alert ledger: what was requested, deferred, sent and failed, by alert key, folded from the alerts topic.

The alerts topic is the system of record; this is its in-memory index. Exactly one notification per incident
transition per channel rests on three rules the actor follows:

1. a decision is recorded (AlertRequested, or AlertDeferred into a digest) under a deterministic alert key, and
   a key the ledger knows is never decided again, however often the incident history is replayed; transitions
   older than ``alerting.max_delay_minutes`` (which the ledger may have pruned) are never notified at all;
2. a request is sent only once it has been read back from the alerts topic (``durable``): the broker holds it, so
   a crash at any later point leaves a visible "requested but not dispatched" entry, and the restarted actor,
   which rebuilds the ledger before it does anything, sends it then;
3. a request with an AlertDispatched, or a final AlertFailed, is never sent again.

The residual at-least-once window is the time between Apprise reporting success and the broker storing the
AlertDispatched the actor publishes at once: a few milliseconds, or for a delivery slower than
``alerting.delivery_wait_s`` up to one more consume poll (0.2 s). A crash exactly there re-sends that one message
on restart; every message carries its alert key, so receivers can spot it. A channel that accepts a message but
then times out is retried as a failure, so such a channel can also see a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from config.alerting import AlertRetryPolicy
from events import Event
from events.catalogue import AlertDeferred, AlertDispatched, AlertEvent, AlertFailed, AlertRequested
from events.kafka.bus import Bus
from events.kafka.log import TopicLog

_KAFKA_TIMEOUT_S = 30.0


@dataclass(kw_only=True)
class Delivery:
    """One alert key's request and what became of it."""

    alert_key: str
    request: AlertRequested | None = None
    durable: bool = False  # read back from the alerts topic, so it is safe to send
    attempts: int = 0
    dispatched: bool = False
    failed_final: bool = False
    last_attempt_at: datetime | None = None
    last_reason: str = ""
    last_event_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.dispatched or self.failed_final

    def next_attempt_at(self, policy: AlertRetryPolicy) -> datetime | None:
        """When to try (again); None when the request is unknown or already settled."""
        if self.request is None or self.finished:
            return None
        if self.attempts == 0 or self.last_attempt_at is None:
            return self.request.occurred_at
        return self.last_attempt_at + timedelta(seconds=policy.backoff_s(self.attempts))


@dataclass(kw_only=True)
class Digest:
    """Transitions deferred into one digest message (one route, stream, channel and interval)."""

    alert_key: str
    stream_id: str
    route: str
    channel: str
    due_at: datetime
    items: dict[str, AlertDeferred] = field(default_factory=dict)


class Ledger:
    """Alert facts by key, with the lookups the actor needs: known keys, due sends, rate counts, escalations."""

    def __init__(self) -> None:
        self._deliveries: dict[str, Delivery] = {}
        self._deferred: dict[str, AlertDeferred] = {}
        self._digests: dict[str, Digest] = {}
        # (incident, route) -> when and by which transition the route first fired: escalation clocks start there.
        self._anchors: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._tiers: dict[tuple[str, str], int] = {}  # (incident, route) -> highest escalation tier requested

    def record(self, event: AlertEvent, *, durable: bool) -> None:
        """Fold one alert event in; recording the same event again (a replay) changes nothing."""
        if isinstance(event, AlertDeferred):
            self._record_deferred(event)
            return
        delivery = self._deliveries.setdefault(event.alert_key, Delivery(alert_key=event.alert_key))
        if delivery.last_event_at is None or event.occurred_at > delivery.last_event_at:
            delivery.last_event_at = event.occurred_at
        if isinstance(event, AlertRequested):
            delivery.request = delivery.request or event
            delivery.durable = delivery.durable or durable
            self._record_request(event)
        elif isinstance(event, AlertDispatched):
            delivery.dispatched = True
            delivery.attempts = max(delivery.attempts, event.attempts)
        elif isinstance(event, AlertFailed):
            delivery.failed_final = delivery.failed_final or event.final
            if event.attempts >= delivery.attempts:
                delivery.attempts, delivery.last_reason = event.attempts, event.reason
                delivery.last_attempt_at = event.occurred_at

    def knows(self, alert_key: str) -> bool:
        """Whether a decision was recorded for this key (requested or deferred)."""
        delivery = self._deliveries.get(alert_key)
        return alert_key in self._deferred or (delivery is not None and delivery.request is not None)

    def deliveries(self) -> list[Delivery]:
        return list(self._deliveries.values())

    def deferred(self) -> list[AlertDeferred]:
        return list(self._deferred.values())

    def due_deliveries(self, now: datetime, policy: AlertRetryPolicy) -> list[Delivery]:
        """Durable, unsettled requests whose next attempt is due, oldest first."""
        due = []
        for delivery in self._deliveries.values():
            next_at = delivery.next_attempt_at(policy)
            if delivery.durable and next_at is not None and next_at <= now:
                due.append(delivery)
        return sorted(due, key=lambda delivery: delivery.next_attempt_at(policy) or now)

    def admitted(self, *, since: datetime, stream_id: str | None = None) -> int:
        """Distinct transitions notified immediately since ``since`` (on one stream, or anywhere): rate limits."""
        return len(
            {
                delivery.request.transition_event_id
                for delivery in self._deliveries.values()
                if delivery.request is not None
                and delivery.request.kind == "notify"
                and delivery.request.occurred_at >= since
                and (stream_id is None or delivery.request.stream_id == stream_id)
            }
        )

    def transition_admitted(self, transition_event_id: str) -> bool:
        """Whether some channel already got this transition immediately (so the rest must, too)."""
        return any(
            delivery.request is not None
            and delivery.request.kind == "notify"
            and delivery.request.transition_event_id == transition_event_id
            for delivery in self._deliveries.values()
        )

    def anchors(self, incident_id: str) -> dict[str, tuple[datetime, str]]:
        """Per route: when it first fired for the incident, and the transition event that made it fire."""
        return {route: anchor for (incident, route), anchor in self._anchors.items() if incident == incident_id}

    def highest_tier(self, incident_id: str, route: str) -> int:
        return self._tiers.get((incident_id, route), 0)

    def due_digests(self, now: datetime) -> list[Digest]:
        return [
            digest for digest in self._digests.values() if digest.due_at <= now and not self.knows(digest.alert_key)
        ]

    def prune(self, before: datetime) -> None:
        """Forget settled facts older than ``before``; decisions that old are never revisited (max delay)."""
        for key, delivery in list(self._deliveries.items()):
            if delivery.finished and delivery.last_event_at is not None and delivery.last_event_at < before:
                del self._deliveries[key]
        for key, deferred in list(self._deferred.items()):
            if deferred.digest_due_at < before and self.knows(deferred.digest_key):
                del self._deferred[key]
                self._digests.pop(deferred.digest_key, None)
        for incident_route, (anchored_at, _) in list(self._anchors.items()):
            if anchored_at < before:
                del self._anchors[incident_route]
                self._tiers.pop(incident_route, None)

    def _record_request(self, event: AlertRequested) -> None:
        if event.kind == "notify":
            self._anchor(event.incident_id, event.route, event.occurred_at, event.transition_event_id)
        if event.kind == "escalation":
            key = (event.incident_id, event.route)
            self._tiers[key] = max(self._tiers.get(key, 0), event.tier)

    def _record_deferred(self, event: AlertDeferred) -> None:
        self._deferred.setdefault(event.alert_key, event)
        digest = self._digests.setdefault(
            event.digest_key,
            Digest(
                alert_key=event.digest_key,
                stream_id=event.stream_id,
                route=event.route,
                channel=event.channel,
                due_at=event.digest_due_at,
            ),
        )
        digest.items.setdefault(event.alert_key, event)
        self._anchor(event.incident_id, event.route, event.occurred_at, event.transition_event_id)

    def _anchor(self, incident_id: str, route: str, at: datetime, transition_event_id: str) -> None:
        key = (incident_id, route)
        if key not in self._anchors or at < self._anchors[key][0]:
            self._anchors[key] = (at, transition_event_id)


# ----------------------------------------------------------------------------------------------- history


def read_history(bus: Bus, topics: Sequence[str], *, since: datetime | None) -> Iterator[Event]:
    """Every decodable event on ``topics`` stored since ``since`` (or ever), up to the ends at call time.

    Read outside any consumer group: this is how the actor rebuilds its ledger and incident book at start, and
    how ``distress alerts list`` reads the history. Partitions come in offset order, topics interleaved. Freshly
    created topics still without partition leaders are waited for up to ``_KAFKA_TIMEOUT_S``.
    """
    since_ms = None if since is None else int(since.timestamp() * 1000)
    with TopicLog(bus, topics, since_ms=since_ms, purpose="alerting.history", timeout_s=_KAFKA_TIMEOUT_S) as log:
        for batch in log.read_until(log.end_offsets()):
            yield from (consumed.event for consumed in batch.events)
