"""`distress run` and `distress demo`: the pipeline on Ray, and the product demo (`distress status`: cli/status.py).

`run` and `demo` also serve the operator dashboard while the pipeline runs (its sign-in URL goes to stderr, so
stdout carries nothing but the summary).

Exit codes: 0 on success; 2 for bad arguments or configuration, or when a recording given to ``--until-eof``
failed (the others still run to their end); 1 when Kafka or Ray is unreachable or the pipeline or the dashboard
could not start.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any

import ray
import typer
from rich.console import Console
from rich.table import Table

from actors.capture.sources import STDIN
from actors.demo import DemoRecordingError, ensure_demo_recording, local_alert_sink, with_sink_route
from actors.metrics import ObserverSnapshot
from actors.pipeline import StageSpec, capture_source, default_stages
from actors.runtime.driver import PipelineRuntime, RunSummary, connect_ray, stop_on_signals
from actors.runtime.hosts import SourceFactory
from cli.broker import reachable_bus
from cli.capture import CaptureUsageError, stream_ids_for
from cli.errors import CliError
from cli.status import print_latency
from config import Settings, StreamConfig, load_settings
from config.logging import configure_logging
from config.redaction import redact_url
from events.kafka.broker import LocalBroker
from frontend.auth import AuthError
from frontend.server import DashboardServer


class RunUsageError(CliError):
    """The command line or the configured streams are wrong; the message says what (exit code 2)."""


def streams_for_run(
    settings: Settings, sources: Sequence[str], stream_ids: Sequence[str], *, until_eof: bool
) -> list[StreamConfig]:
    """The configured streams plus ``--source`` ones; with ``--until-eof`` and sources, only those recordings."""
    try:
        ids = stream_ids_for(sources, stream_ids)
    except CaptureUsageError as error:
        raise RunUsageError(str(error)) from error
    if STDIN in sources:
        raise RunUsageError("'-' (stdin) cannot be captured by pipeline actors; pipe it into `distress capture -`")
    given = [StreamConfig(id=stream_id, source=source) for stream_id, source in zip(ids, sources, strict=True)]
    streams = given if (until_eof and given) else [*settings.streams, *given]
    if not streams:
        raise RunUsageError("no streams: pass --source FILE|URL|mic, or configure `streams` in the config file")
    taken = [stream.id for stream in streams]
    repeated = sorted({stream_id for stream_id in taken if taken.count(stream_id) > 1})
    if repeated:
        raise RunUsageError(f"stream id(s) {repeated} used twice; give --stream-id to tell the sources apart")
    return streams


def ensure_broker(settings: Settings) -> LocalBroker[Settings] | None:
    """Start the managed local broker when it is not running; an external cluster must already answer.

    Returns the broker when this call started it, so that the caller decides whether it outlives the command.
    """
    broker = LocalBroker(settings)
    if settings.uses_local_broker:
        was_running = broker.status().running
        broker.up()
        return None if was_running else broker
    reachable_bus(settings)
    return None


def run_pipeline(
    settings: Settings,
    streams: Sequence[StreamConfig],
    *,
    stages: Sequence[StageSpec],
    source_factory: SourceFactory,
    realtime: bool,
    until_eof: bool,
    address: str | None,
    timeout_s: float | None,
    on_progress: Callable[[ObserverSnapshot], None] | None = None,
) -> RunSummary:
    """Start the pipeline on Ray, run until EOF (or until Ctrl-C/SIGTERM), stop it cleanly and summarise."""
    started_local = connect_ray(settings.runtime, address)
    stop = threading.Event()
    runtime = PipelineRuntime(
        settings, stages=stages, streams=streams, source_factory=source_factory, realtime=realtime
    )
    try:
        with stop_on_signals(stop):
            runtime.start(stream_filter=until_eof)
            if until_eof:
                runtime.wait_until_caught_up(stop, timeout_s=timeout_s, on_progress=on_progress)
            else:
                while not stop.wait(settings.runtime.caught_up_poll_s):
                    if on_progress is not None:
                        on_progress(runtime.snapshot())
    finally:
        summary = runtime.stop()
        if started_local:
            ray.shutdown()
    return summary


# ------------------------------------------------------------------------------------------------ output


def _print_summary(summary: RunSummary, json_output: bool, given: Sequence[StreamConfig]) -> None:
    if json_output:
        report = summary.as_json()
        # A stream that failed before it started (a missing file) has no StreamStarted to take its source from.
        sources = {stream.id: redact_url(stream.source) for stream in given}
        for stream in report["streams"]:
            stream["source"] = stream["source"] or sources.get(stream["id"], "")
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    snapshot = summary.snapshot
    console.print(
        f"{len(snapshot.streams)} stream(s), {snapshot.chunks} chunks, {len(snapshot.incidents)} "
        f"incident(s), {snapshot.alerts_sent} alert(s) sent in {summary.elapsed_s:.1f} s"
    )
    streams = Table(title="streams")
    for column in ("stream", "state", "chunks", "reason"):
        streams.add_column(column)
    for stream in snapshot.streams:
        streams.add_row(stream.id, stream.state, str(stream.chunks), stream.reason)
    console.print(streams)
    _print_incidents(console, snapshot)
    print_latency(console, snapshot)


def _print_incidents(console: Console, snapshot: ObserverSnapshot) -> None:
    if not snapshot.incidents:
        return
    table = Table(title="incidents")
    for column in ("incident", "stream", "onset", "severity", "reason"):
        table.add_column(column)
    for incident in snapshot.incidents:
        table.add_row(incident.id, incident.stream_id, f"{incident.onset_s:.1f} s", incident.severity, incident.reason)
    console.print(table)


class DashboardStartError(CliError):
    """The dashboard `distress run` starts could not be brought up; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="runtime", exit_code=1)


@contextmanager
def pipeline_dashboard(settings: Settings, console: Console) -> Iterator[DashboardServer]:
    """The operator dashboard while the pipeline runs, on its configured port or, if that is taken, a free one.

    The pipeline's projections stage is the one writer of the read models (supervised, and counted when a run
    waits to catch up), so the dashboard only reads them and runs no projectors of its own.
    """
    reader = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(update={"run_projectors": False})})
    try:
        try:
            server = DashboardServer(reader)
        except OSError:
            server = DashboardServer(reader, port=0)
        server.start()
    except (AuthError, OSError, RuntimeError, TimeoutError) as error:
        raise DashboardStartError(
            f"the dashboard could not start ({type(error).__name__}: {error}); fix that or pass --no-dashboard"
        ) from error
    try:
        console.print(f"dashboard: {server.sign_in_url}", soft_wrap=True, highlight=False)
        yield server
    finally:
        server.stop()


def linked_to_dashboard(settings: Settings, server: DashboardServer) -> Settings:
    """Alerts link to the dashboard this run serves (it may be on a free port), unless a link is configured."""
    if "dashboard_url" in settings.alerting.model_fields_set:
        return settings
    alerting = settings.alerting.model_copy(update={"dashboard_url": server.url.rstrip("/")})
    return settings.model_copy(update={"alerting": alerting})


# ---------------------------------------------------------------------------------------------- commands


def run_command(
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="Audio file, URL (rtsp/http) or 'mic'; repeatable.")
    ] = None,
    stream_id: Annotated[
        list[str] | None,
        typer.Option("--stream-id", help="Stream id for each --source, in order (default: derived from the source)."),
    ] = None,
    until_eof: Annotated[
        bool,
        typer.Option("--until-eof", help="Process the recordings, exit once every stage and projection caught up."),
    ] = False,
    realtime: Annotated[bool, typer.Option("--realtime", help="Pace files at real-time speed.")] = False,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster to join ('auto', host:port); default RAY_ADDRESS or a local one."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="With --until-eof: give up (exit 1) after this many seconds.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Serve the operator dashboard while the pipeline runs.")
    ] = True,
) -> None:
    """Run the pipeline as Ray actors (capture per stream, features, ASR, scoring, incidents, alerting, projections)."""
    settings = load_settings()
    streams = streams_for_run(settings, source or [], stream_id or [], until_eof=until_eof)
    if timeout is not None and timeout <= 0:
        raise RunUsageError(f"--timeout must be positive, got {timeout}")
    started = ensure_broker(settings)
    if started is not None:
        typer.echo(
            "started the local Kafka broker; it keeps running after this run (`distress broker down` stops it)",
            err=True,
        )
    with ExitStack() as serving:
        if dashboard:
            server = serving.enter_context(pipeline_dashboard(settings, Console(stderr=True)))
            settings = linked_to_dashboard(settings, server)
        summary = run_pipeline(
            settings,
            streams,
            stages=default_stages(settings),
            source_factory=capture_source,
            realtime=realtime,
            until_eof=until_eof,
            address=address,
            timeout_s=timeout,
        )
    _print_summary(summary, json_output, streams)
    if any(stream.state == "failed" for stream in summary.snapshot.streams):
        raise typer.Exit(2)


# -------------------------------------------------------------------------------------------------- demo


def demo_command(
    fast: Annotated[bool, typer.Option("--fast", help="Play the recording as fast as possible.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """The product demo: a local broker, the bundled models and a demo recording played through the pipeline."""
    settings = load_settings()
    if "log_level" not in settings.model_fields_set:  # the demo's console shows incidents and alerts, not logs
        settings = settings.model_copy(update={"log_level": "WARNING"})
        configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        recording = ensure_demo_recording(
            settings, lambda path: typer.echo(f"generating the demo recording into {path} ...", err=True)
        )
    except DemoRecordingError as error:
        raise CliError(str(error), kind="runtime", exit_code=1) from error
    console = Console(stderr=True)
    seen: set[str] = set()

    def show_new_incidents(snapshot: ObserverSnapshot) -> None:
        for incident in snapshot.incidents:
            if incident.id not in seen:
                seen.add(incident.id)
                console.print(
                    f"[bold red]INCIDENT[/] {incident.severity} on {incident.stream_id} at "
                    f"{incident.onset_s:.1f} s of the recording: {incident.reason}"
                )

    def show_alert(alert: dict[str, Any]) -> None:
        console.print(f"[bold yellow]ALERT[/] {alert.get('title', '')}\n{alert.get('message', '')}")

    streams = [StreamConfig(id="demo", source=str(recording))]
    console.print(f"playing {recording} through the pipeline{'' if fast else ' in real time'}; Ctrl-C stops")
    started: LocalBroker[Settings] | None = None
    try:
        started = ensure_broker(settings)
        with local_alert_sink(show_alert) as sink_url, pipeline_dashboard(settings, console) as server:
            summary = run_pipeline(
                with_sink_route(linked_to_dashboard(settings, server), sink_url),
                streams,
                stages=default_stages(settings),
                source_factory=capture_source,
                realtime=not fast,
                until_eof=True,
                address=None,
                timeout_s=None,
                on_progress=show_new_incidents,
            )
    finally:
        if started is not None:  # a demo leaves nothing running behind it
            started.down()
            console.print("stopped the local Kafka broker the demo started")
    show_new_incidents(summary.snapshot)
    _print_summary(summary, json_output, streams)
