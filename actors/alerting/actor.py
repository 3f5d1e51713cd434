"""The alerting actor: incident transitions in, notifications out, each exactly once per channel.

It consumes the incidents topic and its own ledger, the alerts topic (see ``ledger`` for the exactly-once rules):

- ``handle`` folds incident events into the incident book and decides: for each matching route and channel it
  records AlertRequested (send now) or AlertDeferred (into a digest: digest routes, and transitions over a rate
  limit), unless the alert key is already in the ledger. It never sends.
- ``tick`` fires time-based work: escalation tiers of unacknowledged incidents, digests whose interval ended, and
  deliveries: requests that came back from the alerts topic and are due (first attempt or backoff elapsed). It
  sends them in parallel and yields each outcome (AlertDispatched / AlertFailed) the moment Apprise returns, so
  the runner hands it to Kafka at once. A tick waits at most ``delivery_wait_s`` for them: a channel that hangs
  does not hold back new incidents; its outcome is yielded by a later tick (a slightly longer at-least-once
  window for that message only). ``finish`` makes the next tick start nothing new and wait for everything still
  in flight, so a clean stop leaves no delivery without its recorded outcome.

Time-based escalation is recorded as AlertRequested(kind="escalation", tier=n) on the alerts topic, not as
IncidentEscalated: that event means the incident's severity changed and belongs to the incident actor, the one
writer of incident state; a tier is an alerting decision about who else to tell.

Run one alerting actor per deployment: decisions rely on its in-memory ledger of its own recent requests.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta

from actors.alerting.dispatcher import DeliveryResult, Dispatcher
from actors.alerting.incidents import TRANSITIONS, IncidentBook, IncidentState
from actors.alerting.ledger import Ledger, read_history
from actors.alerting.messages import MessageRenderer, severity_rank
from actors.alerting.routing import ChannelRegistry, Router, apprise_asset
from actors.clips import ClipStore
from actors.stage import StageRunner
from config.alerting import AlertingConfig, AlertRoute
from config.settings import Settings
from events import Event
from events.base import utc_now
from events.catalogue import (
    AlertDeferred,
    AlertDispatched,
    AlertEvent,
    AlertFailed,
    AlertRequested,
    IncidentEvent,
    IncidentOpened,
)
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue

log = logging.getLogger(__name__)

# Transitions nobody needs to hear about any more once the incident was acknowledged or closed.
STALE_ONCE_RESPONDED = frozenset({"opened", "updated", "escalated"})
PRUNE_EVERY = timedelta(minutes=5)


def alert_key(*parts: str) -> str:
    return "/".join(parts)


class AlertingStage:
    """The alerting logic, hosted by a ``StageRunner``; ``recover`` must see the history before the first batch."""

    name = "alerting"

    def __init__(
        self,
        config: AlertingConfig,
        topics: TopicCatalogue,
        *,
        router: Router,
        dispatcher: Dispatcher,
        renderer: MessageRenderer,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.topics = topics
        self.router = router
        self.dispatcher = dispatcher
        self.renderer = renderer
        self.clock = clock
        self.ledger = Ledger()
        self.incidents = IncidentBook()
        self._pool = ThreadPoolExecutor(config.max_parallel_deliveries, thread_name_prefix="alert-delivery")
        self._in_flight: dict[Future[DeliveryResult], tuple[AlertRequested, int]] = {}
        self._finishing = False
        self._pruned_at = clock()

    def input_topics(self) -> Sequence[str]:
        return [self.topics.incidents.name, self.topics.alerts.name]

    def recover(self, history: Iterable[Event]) -> None:
        """Rebuild ledger and incident book from the stored history; decides and sends nothing by itself."""
        for event in history:
            if isinstance(event, AlertEvent):
                self.ledger.record(event, durable=True)
            elif isinstance(event, IncidentEvent):
                self.incidents.apply(event)

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        event = consumed.event
        if isinstance(event, AlertEvent):
            self.ledger.record(event, durable=True)  # read back from the topic: the broker has it
            return ()
        if isinstance(event, IncidentEvent):
            incident = self.incidents.apply(event)
            decisions = self._decide(event, incident)
            for decision in decisions:
                self.ledger.record(decision, durable=False)
            return decisions
        return ()

    def tick(self) -> Iterator[Event]:
        now = self.clock()
        for decision in [*self._escalations(now), *self._digests(now)]:
            self.ledger.record(decision, durable=False)
            yield decision
        yield from self._deliver(now)
        if now - self._pruned_at >= PRUNE_EVERY:
            horizon = now - timedelta(minutes=self.config.history_horizon_minutes)
            self.ledger.prune(horizon)
            self.incidents.prune(horizon)
            self._pruned_at = now

    def finish(self) -> None:
        """Stop starting deliveries; the next tick waits for those in flight and yields their outcomes."""
        self._finishing = True

    @property
    def deliveries_in_flight(self) -> int:
        return len(self._in_flight)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------- decisions

    def _decide(self, event: IncidentEvent, incident: IncidentState) -> list[AlertEvent]:
        transition = TRANSITIONS.get(type(event))
        if transition is None:
            return []
        now = self.clock()
        if now - event.occurred_at > timedelta(minutes=self.config.max_delay_minutes):
            log.info(
                "transition too old to notify",
                extra={"incident_id": incident.incident_id, "transition": transition, "event_id": event.event_id},
            )
            return []
        if transition in STALE_ONCE_RESPONDED and incident.responded:
            return []  # re-delivered after the state was rebuilt past an acknowledgement
        routes = self.router.routes_for(
            stream_id=event.stream_id,
            severity=incident.severity,
            transition=transition,
            at=event.occurred_at,
            labels=incident.labels,
        )
        decisions: list[AlertEvent] = []
        over_limit: str | None = None
        admission_checked = False
        notified: set[str] = set()
        for route in routes:
            for channel in self.router.channels.resolve_all(route.notify):
                key = alert_key(incident.incident_id, event.event_id, channel.id)
                if channel.id in notified or self.ledger.knows(key):
                    continue
                notified.add(channel.id)
                if not route.digest and not admission_checked:
                    over_limit, admission_checked = self._over_rate_limit(event, incident, now), True
                if route.digest or over_limit:
                    decisions.append(
                        self._defer(
                            event, incident, transition, route, channel.id, key, now, reason=over_limit or "digest"
                        )
                    )
                    continue
                message = self.renderer.transition(incident, transition, event, key)
                decisions.append(
                    AlertRequested(
                        **event.caused(),
                        occurred_at=now,
                        alert_key=key,
                        incident_id=incident.incident_id,
                        channel=channel.id,
                        transition_event_id=event.event_id,
                        severity=incident.severity,
                        title=message.title,
                        body=message.body,
                        kind="notify",
                        route=route.name,
                        tier=0,
                        clip_sha256=incident.clip_sha256 if isinstance(event, IncidentOpened) else None,
                    )
                )
        return decisions

    def _over_rate_limit(self, event: IncidentEvent, incident: IncidentState, now: datetime) -> str | None:
        """Why this transition must wait for a digest, or None when it may be sent now."""
        limit = self.config.rate_limit
        if incident.severity in limit.exempt_severities or self.ledger.transition_admitted(event.event_id):
            return None
        since = now - timedelta(minutes=limit.window_minutes)
        window = f"{limit.window_minutes:g} min"
        on_stream = self.ledger.admitted(since=since, stream_id=event.stream_id)
        if limit.per_stream is not None and on_stream >= limit.per_stream:
            return f"rate limit: {limit.per_stream} alerts per {window} on {event.stream_id}"
        if limit.overall is not None and self.ledger.admitted(since=since) >= limit.overall:
            return f"rate limit: {limit.overall} alerts per {window} overall"
        return None

    def _defer(
        self,
        event: IncidentEvent,
        incident: IncidentState,
        transition: str,
        route: AlertRoute,
        channel_id: str,
        key: str,
        now: datetime,
        *,
        reason: str,
    ) -> AlertDeferred:
        interval = timedelta(minutes=self.config.digest_minutes)
        window_start = datetime.fromtimestamp(
            (now.timestamp() // interval.total_seconds()) * interval.total_seconds(), UTC
        )
        digest_key = alert_key("digest", route.name, event.stream_id, f"{window_start:%Y%m%dT%H%M%SZ}", channel_id)
        return AlertDeferred(
            **event.caused(),
            occurred_at=now,
            alert_key=key,
            incident_id=incident.incident_id,
            channel=channel_id,
            transition_event_id=event.event_id,
            severity=incident.severity,
            route=route.name,
            reason=reason,
            digest_key=digest_key,
            digest_due_at=window_start + interval,
            summary=self.renderer.digest_line(incident, transition, event.occurred_at),
        )

    def _escalations(self, now: datetime) -> Iterator[AlertRequested]:
        """The highest due tier of every route that fired for a still unacknowledged incident, once."""
        for incident in list(self.incidents.awaiting_response()):
            for route_name, (anchored_at, transition_event_id) in self.ledger.anchors(incident.incident_id).items():
                route = self.router.route(route_name)
                if route is None:
                    continue
                due = [
                    number
                    for number, tier in enumerate(route.escalation, start=1)
                    if anchored_at + timedelta(minutes=tier.after_minutes) <= now
                ]
                if not due or self.ledger.highest_tier(incident.incident_id, route_name) > due[-1]:
                    continue
                tier_number = due[-1]
                tier = route.escalation[tier_number - 1]
                for channel in self.router.channels.resolve_all(tier.notify):
                    key = alert_key(incident.incident_id, "escalation", route_name, str(tier_number), channel.id)
                    if self.ledger.knows(key):
                        continue
                    message = self.renderer.escalation(incident, tier_number, tier.after_minutes, key)
                    yield AlertRequested(
                        stream_id=incident.stream_id,
                        correlation_id=incident.correlation_id,
                        occurred_at=now,
                        alert_key=key,
                        incident_id=incident.incident_id,
                        channel=channel.id,
                        transition_event_id=transition_event_id,
                        severity=incident.severity,
                        title=message.title,
                        body=message.body,
                        kind="escalation",
                        route=route_name,
                        tier=tier_number,
                        clip_sha256=incident.clip_sha256,
                    )

    def _digests(self, now: datetime) -> Iterator[AlertRequested]:
        for digest in self.ledger.due_digests(now):
            items = sorted(digest.items.values(), key=lambda item: item.occurred_at)
            message = self.renderer.digest(
                digest.stream_id, [item.summary for item in items], [item.reason for item in items], digest.alert_key
            )
            yield AlertRequested(
                stream_id=digest.stream_id,
                occurred_at=now,
                alert_key=digest.alert_key,
                incident_id="",
                channel=digest.channel,
                transition_event_id="",
                severity=max((item.severity for item in items), key=severity_rank),
                title=message.title,
                body=message.body,
                kind="digest",
                route=digest.route,
                tier=0,
                clip_sha256=None,
            )

    # ------------------------------------------------------------------------------------------ deliveries

    def _deliver(self, now: datetime) -> Iterator[AlertEvent]:
        """Start every due request, then yield outcomes as channels answer, for up to ``delivery_wait_s``."""
        if not self._finishing:
            yield from self._start_due(now)
        wait_s = None if self._finishing else self.config.delivery_wait_s
        try:
            for future in as_completed(list(self._in_flight), timeout=wait_s):
                request, attempts = self._in_flight.pop(future)
                yield self._settle(request, future.result(), attempts=attempts)
        except TimeoutError:
            return  # still in flight: a later tick yields their outcomes

    def _start_due(self, now: datetime) -> Iterator[AlertEvent]:
        """Submit due requests to the delivery pool; settle at once those that must not be tried any more."""
        policy = self.config.retry
        expiry = timedelta(minutes=self.config.max_delay_minutes, seconds=policy.span_s)
        busy = {request.alert_key for request, _ in self._in_flight.values()}
        for delivery in self.ledger.due_deliveries(now, policy):
            request = delivery.request
            if request is None or request.alert_key in busy:
                continue
            if delivery.attempts >= policy.max_attempts:  # the budget shrank in the config since the last try
                reason = delivery.last_reason or "retry budget used up"
            elif now - request.occurred_at > expiry:  # the actor was down far longer than the retry schedule
                reason = f"expired: not sent within {self.config.max_delay_minutes:g} min plus the retry schedule"
            else:
                future = self._pool.submit(
                    self.dispatcher.send,
                    request.channel,
                    title=request.title,
                    body=request.body,
                    severity=request.severity,
                    clip_sha256=request.clip_sha256,
                )
                self._in_flight[future] = (request, delivery.attempts + 1)
                continue
            gave_up = DeliveryResult(channel=request.channel, ok=False, retryable=False, reason=reason)
            yield self._settle(request, gave_up, attempts=delivery.attempts)

    def _settle(self, request: AlertRequested, result: DeliveryResult, *, attempts: int) -> AlertEvent:
        now = self.clock()
        common = {
            **request.caused(),
            "occurred_at": now,
            "alert_key": request.alert_key,
            "incident_id": request.incident_id,
            "channel": request.channel,
        }
        outcome: AlertEvent
        if result.ok:
            outcome = AlertDispatched(**common, attempts=attempts)
            log.info(
                "alert dispatched",
                extra={"alert_key": request.alert_key, "channel": request.channel, "attempts": attempts},
            )
        else:
            final = not result.retryable or attempts >= self.config.retry.max_attempts
            outcome = AlertFailed(**common, attempts=attempts, reason=result.reason, final=final)
            log.warning(
                "alert delivery failed",
                extra={
                    "alert_key": request.alert_key,
                    "channel": request.channel,
                    "attempts": attempts,
                    "final": final,
                    "reason": result.reason,
                },
            )
        self.ledger.record(outcome, durable=False)
        return outcome


# ------------------------------------------------------------------------------------------------ hosting


def build_stage(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> AlertingStage:
    """The stage wired from settings; fails with ``AlertingSetupError`` if a channel cannot be set up."""
    config = settings.alerting
    channels = ChannelRegistry.from_config(config)
    router = Router(config, channels)
    renderer = MessageRenderer(
        dashboard_url=config.dashboard_url,
        local=router.local,
        stream_names={stream.id: stream.name for stream in settings.streams if stream.name},
    )
    dispatcher = Dispatcher(
        channels, asset=apprise_asset(config), clips=ClipStore(settings.clips_dir) if config.attach_clips else None
    )
    return AlertingStage(
        config, settings.topics(), router=router, dispatcher=dispatcher, renderer=renderer, clock=clock
    )


def run_until_signalled(settings: Settings) -> None:
    """Run the actor in this process until SIGINT or SIGTERM, then finish deliveries and leave the group cleanly."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    run_alerting(settings, stop)


def run_alerting(settings: Settings, stop: threading.Event) -> None:
    """Rebuild the ledger and incident book from the topics, then run until ``stop`` is set."""
    settings.ensure_topics()
    bus = settings.bus()
    stage = build_stage(settings)
    try:
        since = utc_now() - timedelta(minutes=settings.alerting.history_horizon_minutes)
        stage.recover(read_history(bus, stage.input_topics(), since=since))
        log.info(
            "alerting ledger rebuilt",
            extra={"deliveries": len(stage.ledger.deliveries()), "deferred": len(stage.ledger.deferred())},
        )
        runner = StageRunner(stage, bus)
        try:
            while not stop.is_set():
                runner.run_once()
            log.info("alerting stopping", extra={"deliveries_in_flight": stage.deliveries_in_flight})
            stage.finish()
            runner.run_once()  # its tick waits for the deliveries still in flight and records their outcomes
        finally:
            runner.close()
    finally:
        stage.close()
