"""`distress replay` (rebuild, verify, what-if rescore) and `distress project` (keep the projections up to date).

An unreachable database or broker ends either with one line and exit code 1 (cli/errors.py), within seconds.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from cli.broker import reachable_bus
from cli.database import database
from cli.incidents import fail, parse_since, print_json
from config import load_settings
from domain.incidents import IncidentRecord
from projections.projector import Projector
from projections.read_models import projections_named
from projections.replay import ReplayResult, ReplayRun, replay_all

if TYPE_CHECKING:
    from actors.whatif import WhatIfReport

PROJECTION = typer.Option("all", "--projection", help="A projection (incidents, streams, alerts, transcripts) or all.")
BATCH = typer.Option(2000, "--batch-size", min=1, help="Events per transaction.")
MODEL = typer.Option(None, "--model", help="With --rescore: a classifier checkpoint to try.")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} events/s" if task.speed else "- events/s")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def replay_command(
    projection: str = PROJECTION,
    verify: bool = typer.Option(False, "--verify", help="Compare a rebuild with the live tables instead of swapping."),
    rescore_mode: bool = typer.Option(False, "--rescore", help="What-if: rescore retained audio, touch nothing live."),
    model: Path | None = MODEL,
    threshold: float | None = typer.Option(None, "--threshold", help="With --rescore: a fusion threshold to try."),
    operating_point: float | None = typer.Option(
        None,
        "--operating-point",
        help="With --rescore: the classifier probability that alone means distress, for every label (instead of the "
        "checkpoint's own, per label).",
    ),
    since: str | None = typer.Option(None, "--since", help="With --rescore: audio from (ISO time or 30m, 12h, 7d)."),
    stream: str | None = typer.Option(None, "--stream", help="With --rescore: only this stream."),
    batch_size: int = BATCH,
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Rebuild projections from offset 0 into shadow tables and swap them in (or --verify, or --rescore)."""
    if rescore_mode:
        if verify or projection != "all":
            fail("--rescore replays the detection pipeline; it cannot be combined with --verify or --projection")
        try:
            since_at = parse_since(since) if since else None
        except ValueError as error:
            fail(str(error))
        if model is not None and not model.is_file():
            fail(f"--model {model}: no such file")
        knobs = {
            "model_path": model,
            "threshold": threshold,
            "operating_point": operating_point,
            "since": since_at,
            "stream_id": stream,
        }
        _rescore(knobs, json_output)
        return
    if model or threshold is not None or operating_point is not None or since or stream:
        fail("--model, --threshold, --operating-point, --since and --stream only apply with --rescore")
    try:
        chosen = projections_named(projection)
    except KeyError as error:
        fail(str(error.args[0]))

    settings = load_settings()
    bus, engine = reachable_bus(settings), database(settings)
    console = Console(stderr=True)
    with _progress(console) as progress:

        def tracker(name: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(name, total=total)
            return lambda advance: progress.advance(task, advance)

        rebuilt = replay_all(engine, bus, chosen, verify=verify, progress=tracker, batch_size=batch_size)
    _report_replay(rebuilt, verify, json_output)


def _report_replay(run: ReplayRun, verify: bool, json_output: bool) -> None:
    summary = {
        "mode": "verify" if verify else "rebuild",
        "events": run.messages,
        "seconds": round(run.seconds, 3),
        "events_per_s": round(run.events_per_s, 1),
        "differences": run.differences,
        "projections": [_result_json(result) for result in run.results],
    }
    if json_output:
        print_json(summary)
    else:
        for result in run.results:
            outcome = "swapped in" if result.swapped else f"{result.differences} difference(s)"
            typer.echo(
                f"{result.projection}: {result.messages:,} events in {result.seconds:.2f} s "
                f"({result.events_per_s:,.0f} events/s), {outcome}"
            )
            for comparison in result.comparisons:
                for difference in comparison.differences:
                    columns = "; ".join(
                        f"{name}: live {live!r} != rebuilt {rebuilt!r}"
                        for name, (live, rebuilt) in difference.columns.items()
                    )
                    typer.echo(
                        f"  {comparison.table} {list(difference.key)}: {difference.problem}"
                        + (f" ({columns})" if columns else "")
                    )
    if verify and run.differences:
        raise typer.Exit(1)


def _result_json(result: ReplayResult) -> dict[str, Any]:
    return {
        "projection": result.projection,
        "events": result.messages,
        "applied_events": result.events,
        "undecodable": result.undecodable,
        "seconds": round(result.seconds, 3),
        "events_per_s": round(result.events_per_s, 1),
        "swapped": result.swapped,
        "tables": [
            {
                "table": comparison.table,
                "live_rows": comparison.live_rows,
                "rebuilt_rows": comparison.rebuilt_rows,
                "differences": [
                    {
                        "key": list(difference.key),
                        "problem": difference.problem,
                        "columns": {
                            name: {"live": live, "rebuilt": rebuilt}
                            for name, (live, rebuilt) in difference.columns.items()
                        },
                    }
                    for difference in comparison.differences
                ],
            }
            for comparison in result.comparisons
        ],
    }


def _incident_json(record: IncidentRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "incident_id": record.incident_id,
        "stream_id": record.stream_id,
        "onset_at": record.onset_at.isoformat(),
        "severity": record.severity,
        "score": round(record.score, 4),
        "status": record.status,
        "reason": record.reason,
    }


def _rescore(knobs: dict[str, Any], json_output: bool) -> None:
    from actors.whatif import rescore  # loads the classifier (torch): only when rescoring

    settings = load_settings()
    reachable_bus(settings)  # a broker that is down is reported in seconds, before the classifier loads
    console = Console(stderr=True)
    with _progress(console) as progress:
        task = progress.add_task("rescoring audio chunks", total=None)
        try:
            report = rescore(settings, **knobs, progress=lambda advance: progress.advance(task, advance))
        except ValueError as error:
            fail(str(error))
    _report_rescore(report, json_output)


def _per_label(points: dict[str, float]) -> str:
    return f" ({', '.join(f'{label} {point:.3f}' for label, point in sorted(points.items()))})" if points else ""


def _report_rescore(report: WhatIfReport, json_output: bool) -> None:
    grouped = {
        kind: [change for change in report.changes if change.change == kind] for kind in ("added", "removed", "changed")
    }
    if json_output:
        print_json(
            {
                "model": report.model_id,
                "threshold": report.threshold,
                "operating_point": report.operating_point,
                "label_operating_points": report.label_operating_points,
                "chunks": report.chunks,
                "transcripts": report.transcripts,
                "scores": report.scores,
                "recorded": len(report.recorded),
                "rescored": len(report.rescored),
                "unchanged": report.unchanged,
                **{
                    kind: [
                        {
                            "recorded": _incident_json(change.recorded),
                            "rescored": _incident_json(change.rescored),
                            "differences": {name: list(pair) for name, pair in change.differences.items()},
                        }
                        for change in changes
                    ]
                    for kind, changes in grouped.items()
                },
            }
        )
        return
    typer.echo(
        f"what-if with {report.model_id}, threshold {report.threshold:.2f}, operating point "
        f"{report.operating_point}{_per_label(report.label_operating_points)}: {report.chunks} chunks, "
        f"{report.scores} scores; recorded {len(report.recorded)}, rescored {len(report.rescored)}, "
        f"unchanged {report.unchanged}"
    )
    for kind, changes in grouped.items():
        for change in changes:
            incident = change.recorded or change.rescored
            assert incident is not None
            details = "; ".join(f"{name}: {before} -> {after}" for name, (before, after) in change.differences.items())
            typer.echo(
                f"  {kind:8} {incident.stream_id} onset {incident.onset_at.isoformat(timespec='seconds')} "
                f"{incident.severity}" + (f" ({details})" if details else "")
            )


def project_command(
    projection: str = PROJECTION,
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once the current end is applied."),
    batch_size: int = BATCH,
    json_output: bool = typer.Option(False, "--json", help="Print what was applied as JSON."),
) -> None:
    """Keep the SQL projections up to date from Kafka (exactly-once: checkpoints live in the database)."""
    try:
        chosen = projections_named(projection)
    except KeyError as error:
        fail(str(error.args[0]))

    settings = load_settings()
    bus, engine = reachable_bus(settings), database(settings)
    projectors = [Projector(engine, bus, item, batch_size=batch_size) for item in chosen]
    stop = threading.Event()

    def request_stop(_signal: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {number: signal.signal(number, request_stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        if until_caught_up:
            for projector in projectors:
                projector.catch_up()
        else:
            while not stop.is_set():
                if not sum(projector.step(timeout_s=0.1) for projector in projectors):
                    stop.wait(0.2)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for projector in projectors:
            projector.close()
    applied = {projector.projection.name: projector.stats.messages for projector in projectors}
    if json_output:
        typer.echo(json.dumps({"events": applied}))
    else:
        typer.echo(", ".join(f"{name}: {count:,} events" for name, count in applied.items()))
