"""`distress incidents list|show|ack|resolve|false-alarm|note`: review incidents and record operator decisions.

Queries read the SQL projections; decisions are validated against the incident's event history and appended to
the incidents topic (the audit trail) - they never write SQL. Bad input exits with code 2 and says why; an
unreachable database or broker exits with code 1 (see cli/errors.py).
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from actors.commands import IncidentCommands
from cli.broker import reachable_bus
from cli.database import database
from cli.errors import CliError
from config import load_settings
from events.catalogue import IncidentEvent
from projections.queries import incident_detail, list_incidents

app = typer.Typer(help="Review incidents and record operator decisions.", no_args_is_help=True)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def fail(message: str) -> NoReturn:
    """A usage error: reported by cli.errors (one line, JSON under --json), exit code 2."""
    raise CliError(message)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or a span back from now: ``90s``, ``30m``, ``12h``, ``7d``."""
    match = _RELATIVE.match(text.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected an ISO 8601 time or a span such as 30m, 12h, 7d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def default_actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


def print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


@app.command("list")
def list_command(
    status: str | None = typer.Option(None, help="open, acknowledged, resolved or false_alarm."),
    stream: str | None = typer.Option(None, help="Only this stream id."),
    since: str | None = typer.Option(None, help="Onset at or after: ISO 8601 time or a span like 30m, 12h, 7d."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Incidents, newest first."""
    try:
        since_at = parse_since(since) if since else None
        with database(load_settings()).connect() as connection:
            incidents = list_incidents(connection, status=status, stream_id=stream, since=since_at, limit=limit)
    except ValueError as error:
        fail(str(error))
    if json_output:
        print_json(incidents)
        return
    table = Table("incident", "onset (UTC)", "status", "severity", "score", "reason")
    for incident in incidents:
        table.add_row(
            incident["incident_id"],
            incident["onset_at"][:19],
            incident["status"],
            incident["severity"],
            f"{incident['score']:.2f}",
            incident["reason"],
        )
    Console().print(table)


@app.command("show")
def show_command(incident_id: str, json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One incident: state, evidence, clip, every event of its timeline with reasons, and its alerts."""
    settings = load_settings()
    with database(settings).connect() as connection:
        incident = incident_detail(connection, incident_id)
    if incident is None:
        fail(f"unknown incident {incident_id!r} (or the incidents projection has not caught up yet)")
    sha256 = incident["clip_sha256"]
    incident["clip_path"] = str(settings.clips_dir / sha256[:2] / sha256[2:4] / f"{sha256}.wav") if sha256 else None
    if json_output:
        print_json(incident)
        return
    console = Console()
    console.print(
        f"[bold]{incident['incident_id']}[/bold]  {incident['status']}  {incident['severity']}  "
        f"score {incident['score']:.2f}  stream {incident['stream_id']}  onset {incident['onset_at']}"
    )
    console.print(f"reason: {incident['reason']}")
    labels = ", ".join(f"{item['label']} {item['score']:.2f}" for item in incident["labels"])
    console.print(f"labels: {labels or '-'}")
    console.print(f"phrases: {', '.join(repr(hit['phrase']) for hit in incident['phrases']) or '-'}")
    console.print(f"transcript: {incident['transcript'] or '-'}")
    if incident["clip_path"]:
        console.print(f"clip: {incident['clip_path']} ({incident['clip_duration_s']:.1f} s)")
    if incident["closed_by"]:
        console.print(f"closed by {incident['closed_by']} at {incident['closed_at']}: {incident['close_reason']}")
    timeline = Table("time (UTC)", "event", "by", "what")
    for entry in incident["timeline"]:
        timeline.add_row(entry["occurred_at"][:19], entry["event_type"], entry["actor"] or "detector", entry["summary"])
    console.print(timeline)
    for alert in incident["alerts"]:
        console.print(
            f"alert {alert['channel']}: {alert['status']} after {alert['attempts']} attempt(s)"
            + (f" - {alert['detail']}" if alert["detail"] else "")
        )


def _decide(action: Callable[[IncidentCommands], IncidentEvent], json_output: bool) -> None:
    """A refused decision (CommandRejected) is reported by cli.errors with exit code 2, like bad input."""
    event = action(IncidentCommands(reachable_bus(load_settings())))
    if json_output:
        print_json({"event_id": event.event_id, "event_type": event.event_type, **event.payload()})
    else:
        typer.echo(f"{event.event_type} {event.incident_id} recorded (event {event.event_id})")


NOTE = typer.Option("", "--note", help="Why, for the audit trail.")
ACTOR = typer.Option(None, "--actor", help="Who is deciding (default: operator:<login>).")
JSON = typer.Option(False, "--json", help="Print the appended event as JSON.")


@app.command("ack")
def ack_command(incident_id: str, note: str = NOTE, actor: str | None = ACTOR, json_output: bool = JSON) -> None:
    """Acknowledge an open incident: someone is on it."""
    _decide(lambda commands: commands.acknowledge(incident_id, actor=actor or default_actor(), note=note), json_output)


@app.command("resolve")
def resolve_command(incident_id: str, note: str = NOTE, actor: str | None = ACTOR, json_output: bool = JSON) -> None:
    """Resolve an open or acknowledged incident."""
    _decide(lambda commands: commands.resolve(incident_id, actor=actor or default_actor(), note=note), json_output)


@app.command("false-alarm")
def false_alarm_command(
    incident_id: str, note: str = NOTE, actor: str | None = ACTOR, json_output: bool = JSON
) -> None:
    """Mark an incident a false alarm (also after it auto-resolved); it raises the stream's threshold."""
    _decide(
        lambda commands: commands.mark_false_alarm(incident_id, actor=actor or default_actor(), note=note), json_output
    )


@app.command("note")
def note_command(
    incident_id: str,
    text: str = typer.Argument(..., help="The note."),
    actor: str | None = ACTOR,
    json_output: bool = JSON,
) -> None:
    """Add a note to any incident's timeline."""
    _decide(lambda commands: commands.add_note(incident_id, actor=actor or default_actor(), note=text), json_output)
