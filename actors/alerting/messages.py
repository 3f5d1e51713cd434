"""The words of every notification: plain text that reads well in an email, a chat message and an SMS.

A message answers what an on-call person needs first: where (stream name), how bad (severity), when (site local
time), why ("scream 0.93 + 'help me'"), what was heard, and where to look (the incident on the dashboard). Each
ends with the alert key, so a receiver can recognise the rare duplicate after a crash mid-delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from actors.alerting.incidents import IncidentState
from domain.types import SEVERITIES
from events.catalogue import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentResolved,
    LabelScore,
)

SNIPPET_CHARS = 160
TOP_LABELS = 3
SEVERITY_ORDER = ("unknown", *SEVERITIES)  # "unknown": the opening of the incident has not been seen


@dataclass(frozen=True, kw_only=True)
class Message:
    title: str
    body: str


def severity_rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


class MessageRenderer:
    """Renders transitions, escalations, digests and test messages for one deployment."""

    def __init__(
        self,
        *,
        dashboard_url: str,
        local: Callable[[datetime], datetime],
        stream_names: Mapping[str, str] | None = None,
    ) -> None:
        self.dashboard_url = dashboard_url.rstrip("/")
        self.local = local
        self.stream_names = dict(stream_names or {})

    def incident_link(self, incident_id: str) -> str:
        return f"{self.dashboard_url}/incidents/{incident_id}"

    def stream_label(self, stream_id: str) -> str:
        name = self.stream_names.get(stream_id)
        return f"{name} ({stream_id})" if name and name != stream_id else stream_id

    def transition(self, incident: IncidentState, transition: str, event: IncidentEvent, alert_key: str) -> Message:
        where = self.stream_names.get(incident.stream_id) or incident.stream_id
        summary, lead, note = _describe(transition, event, incident)
        when = incident.onset_at if transition == "opened" and incident.onset_at else event.occurred_at
        lines = [
            f"{lead} on {self.stream_label(incident.stream_id)}.",
            *([note] if note else []),
            *self._facts(incident, when),
        ]
        return Message(
            title=f"[{incident.severity.upper()}] {where}: {summary}",
            body=self._finish(lines, incident.incident_id, alert_key),
        )

    def escalation(self, incident: IncidentState, tier: int, waited_minutes: float, alert_key: str) -> Message:
        where = self.stream_names.get(incident.stream_id) or incident.stream_id
        waited = f"{waited_minutes:g} min"
        lines = [
            f"ESCALATION (tier {tier}): not acknowledged after {waited} on {self.stream_label(incident.stream_id)}.",
            *self._facts(incident, incident.onset_at or incident.last_event_at),
        ]
        return Message(
            title=f"[{incident.severity.upper()}] ESCALATION {tier}: {where} unacknowledged for {waited}",
            body=self._finish(lines, incident.incident_id, alert_key),
        )

    def digest_line(self, incident: IncidentState, transition: str, at: datetime) -> str:
        """One transition as a line of a digest, complete on its own (the digest is rendered from these)."""
        reason = f": {incident.reason}" if incident.reason else ""
        return (
            f"{self.local(at):%H:%M} {incident.severity.upper()} {transition}{reason} - "
            f"{self.incident_link(incident.incident_id)}"
        )

    def digest(self, stream_id: str, lines: Sequence[str], reasons: Sequence[str], alert_key: str) -> Message:
        where = self.stream_names.get(stream_id) or stream_id
        count = f"{len(lines)} incident update{'s' if len(lines) != 1 else ''}"
        why = ", ".join(dict.fromkeys(reasons))
        body = [f"{count} on {self.stream_label(stream_id)} ({why}):", *lines, "", f"Ref: {alert_key}"]
        return Message(title=f"Digest: {count} on {where}", body="\n".join(body))

    def test(self, at: datetime) -> Message:
        return Message(
            title="distress test notification",
            body=f"Test message sent at {self._time(at)}. If you can read this, the channel works.\n"
            f"Dashboard: {self.dashboard_url}",
        )

    def _facts(self, incident: IncidentState, when: datetime) -> list[str]:
        facts = [f"Severity: {incident.severity}", f"Time: {self._time(when)}"]
        if incident.reason:
            facts.append(f"Reason: {incident.reason}")
        if incident.transcript:
            facts.append(f'Heard: "{_snippet(incident.transcript)}"')
        if incident.labels:
            facts.append(f"Top sounds: {_top_labels(incident.labels)}")
        return facts

    def _finish(self, lines: list[str], incident_id: str, alert_key: str) -> str:
        return "\n".join([*lines, f"Incident: {self.incident_link(incident_id)}", "", f"Ref: {alert_key}"])

    def _time(self, moment: datetime) -> str:
        return f"{self.local(moment):%Y-%m-%d %H:%M:%S %Z}".strip()


def _describe(transition: str, event: IncidentEvent, incident: IncidentState) -> tuple[str, str, str]:
    """The title's summary, the body's opening words, and an optional line naming who acted and why."""
    if isinstance(event, IncidentEscalated):
        change = f"escalated from {event.from_severity} to {event.to_severity}"
        return change, f"Incident {change}", f"Why: {event.reason}"
    if isinstance(event, IncidentAcknowledged):
        return "acknowledged", "Incident acknowledged", _by(event.actor, event.note)
    if isinstance(event, IncidentResolved):
        return "resolved", "Incident resolved", _by(event.actor, event.note or event.reason)
    if isinstance(event, IncidentMarkedFalseAlarm):
        return "false alarm", "Incident marked as a false alarm", _by(event.actor, event.note)
    if transition == "opened":
        return incident.reason or "distress detected", "Distress detected", ""
    return f"update: {incident.reason}" if incident.reason else "update", "Incident updated", ""


def _by(actor: str, note: str) -> str:
    return f"By {actor}" + (f": {note}" if note else "")


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def _top_labels(labels: Sequence[LabelScore]) -> str:
    best = sorted(labels, key=lambda label: label.score, reverse=True)[:TOP_LABELS]
    return ", ".join(f"{label.label} {label.score:.2f}" for label in best)
