"""`distress status`: per-stage consumers, lag and recent latency of the pipeline, read from Kafka.

Apart from `distress run` so that it imports neither Ray nor the dashboard (FastAPI): a script may call it every
few seconds (``tests/cli/test_status_imports.py`` checks). Exit codes: 0 on success; 2 for bad arguments; 1 when
Kafka is unreachable.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from actors.metrics import ObserverSnapshot
from actors.pipeline import default_stages
from actors.runtime.status import PipelineStatus, pipeline_status
from cli.broker import reachable_bus
from cli.errors import CliError
from config import load_settings


class StatusUsageError(CliError):
    """The command line is wrong; the message says what (exit code 2)."""


def print_latency(console: Console, snapshot: ObserverSnapshot) -> None:
    """Each stage's p50/p95 latency since capture (also in `distress run`'s summary)."""
    table = Table(title="latency since capture")
    for column in ("stage", "events", "p50", "p95"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for item in snapshot.latency:
        table.add_row(item.stage, str(item.count), f"{item.p50_s * 1000:.0f} ms", f"{item.p95_s * 1000:.0f} ms")
    console.print(table)


def _print_status(status: PipelineStatus, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(status.as_json(), indent=2))
        return
    console = Console()
    stages = Table(title="stages")
    for column in ("stage", "consumer group", "consumers", "lag"):
        stages.add_column(column, justify="right" if column in ("consumers", "lag") else "left")
    for stage in status.stages:
        stages.add_row(
            stage.stage,
            stage.group_id or "(database checkpoint)",
            "-" if stage.consumers is None else str(stage.consumers),
            str(stage.lag),
        )
    console.print(stages)
    recent = status.recent
    console.print(
        f"last {status.window_s:.0f} s: {len(recent.streams)} stream(s), {recent.chunks} chunks, "
        f"{len(recent.incidents)} incident(s), {recent.alerts_sent} alert(s) sent"
    )
    print_latency(console, recent)


def status_command(
    window: Annotated[float, typer.Option("--window", help="Seconds of recent events for latency.")] = 300.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Per-stage consumers, lag and latency (capture → features → score → incident → alert), read from Kafka."""
    if window <= 0:
        raise StatusUsageError(f"--window must be positive, got {window}")
    settings = load_settings()
    reachable_bus(settings)
    _print_status(pipeline_status(settings, default_stages(settings), window_s=window), json_output)
