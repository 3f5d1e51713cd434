"""What the alerting actor knows about each incident: the details messages quote and whether anyone responded.

Applying an event twice changes nothing (events are remembered by id), because the actor sees incident events
both while rebuilding its state at start and again when its consumer group re-delivers uncommitted ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from events.catalogue import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    LabelScore,
)

TRANSITIONS: dict[type[IncidentEvent], str] = {
    IncidentOpened: "opened",
    IncidentUpdated: "updated",
    IncidentEscalated: "escalated",
    IncidentAcknowledged: "acknowledged",
    IncidentResolved: "resolved",
    IncidentMarkedFalseAlarm: "false_alarm",
}


@dataclass(kw_only=True)
class IncidentState:
    """The latest facts of one incident, folded from its events."""

    incident_id: str
    stream_id: str
    correlation_id: str
    severity: str = "unknown"
    onset_at: datetime | None = None
    score: float = 0.0
    reason: str = ""
    labels: tuple[LabelScore, ...] = ()
    transcript: str = ""
    clip_sha256: str | None = None
    acknowledged: bool = False
    closed: bool = False
    last_event_at: datetime
    applied: set[str] = field(default_factory=set)

    @property
    def responded(self) -> bool:
        """Someone acknowledged it, or it is over: escalation stops."""
        return self.acknowledged or self.closed


class IncidentBook:
    """Incident states by id, pruned once an incident has been quiet for longer than the history horizon."""

    def __init__(self) -> None:
        self._incidents: dict[str, IncidentState] = {}

    def apply(self, event: IncidentEvent) -> IncidentState:
        state = self._incidents.get(event.incident_id)
        if state is None:
            state = IncidentState(
                incident_id=event.incident_id,
                stream_id=event.stream_id,
                correlation_id=event.correlation_id or event.event_id,
                last_event_at=event.occurred_at,
            )
            self._incidents[event.incident_id] = state
        if event.event_id in state.applied:
            return state
        state.applied.add(event.event_id)
        state.last_event_at = max(state.last_event_at, event.occurred_at)
        if isinstance(event, IncidentOpened):
            state.severity, state.onset_at = event.severity, event.onset_at
            _take_evidence(state, event)
        elif isinstance(event, IncidentUpdated):
            _take_evidence(state, event)
        elif isinstance(event, IncidentEscalated):
            state.severity = event.to_severity
        elif isinstance(event, IncidentAcknowledged):
            state.acknowledged = True
        elif isinstance(event, IncidentResolved | IncidentMarkedFalseAlarm):
            state.closed = True
        return state

    def awaiting_response(self) -> Iterator[IncidentState]:
        return (state for state in self._incidents.values() if not state.responded)

    def prune(self, before: datetime) -> None:
        stale = [key for key, state in self._incidents.items() if state.last_event_at < before]
        for key in stale:
            del self._incidents[key]


def _take_evidence(state: IncidentState, event: IncidentOpened | IncidentUpdated) -> None:
    state.score, state.reason, state.labels = event.score, event.reason, event.labels
    state.transcript = event.transcript or state.transcript
    state.clip_sha256 = event.clip_sha256 or state.clip_sha256
