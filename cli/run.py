"""`distress run` and `distress demo`: the pipeline on Ray, and the product demo (`distress status`: cli/status.py).

`run` and `demo` also serve the operator dashboard while the pipeline runs (its sign-in URL goes to stderr, so
stdout carries nothing but the summary).

Exit codes: 0 on success; 2 for bad arguments or configuration, or when a recording given to ``--until-eof``
failed (the others still run to their end); otherwise 3 (``EXIT_PARTLY_READ``) when a stream's input was only
partly read (a recording cut off or undecodable part-way: its ``warnings`` say what was never heard); 1 when Kafka
or Ray is unreachable or the pipeline or the dashboard could not start.

Each stream of the summary carries its ``warnings`` (empty when all of its input was heard) and ``audio_seconds``,
the audio it published (a recording shorter than one scoring window is padded to it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any

import ray
import typer
from rich.console import Console
from rich.table import Table

from actors.capture import TARGET_SAMPLE_RATE
from actors.capture.sources import STDIN
from actors.demo import DemoRecordingError, ensure_demo_recording, local_alert_sink, with_sink_route
from actors.metrics import ObserverSnapshot, StreamSummary
from actors.pipeline import StageSpec, capture_source, default_stages
from actors.runtime.driver import PipelineRuntime, RunSummary, connect_ray, stop_on_signals
from actors.runtime.hosts import SourceFactory
from cli.broker import reachable_bus
from cli.capture import CaptureUsageError, stream_ids_for
from cli.errors import EXIT_PARTLY_READ, CliError
from cli.status import print_latency
from config import Settings, StreamConfig, load_settings
from config.logging import configure_logging
from config.redaction import redact_url
from events.catalogue import StreamEnded, StreamFailed
from events.kafka.broker import LocalBroker
from events.kafka.connection import BusError
from events.kafka.log import TopicLog
from frontend.auth import AuthError
from frontend.server import DashboardServer

log = logging.getLogger(__name__)

# How the capture actor's StreamEnded reason carries its source's warnings (actors/capture/actor.py, ``_finish``).
PARTLY_READ = "; input only partly read: "
EXIT_FAILED = 2


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


def stream_warnings(stream: StreamSummary) -> list[str]:
    """What of a stream's input was never heard (a cut-off or damaged recording); empty when all of it was."""
    _, found, warnings = stream.reason.partition(PARTLY_READ)
    return warnings.split("; ") if found and stream.state == "ended" else []


def exit_code(summary: RunSummary) -> int:
    """2 when a stream failed, else 3 when one was only partly read, else 0."""
    streams = summary.snapshot.streams
    if any(stream.state == "failed" for stream in streams):
        return EXIT_FAILED
    return EXIT_PARTLY_READ if any(stream_warnings(stream) for stream in streams) else 0


def audio_seconds(settings: Settings, since_ms: int, stream_ids: Sequence[str]) -> dict[str, float]:
    """The seconds of audio each stream published, from its last StreamEnded or StreamFailed since ``since_ms``
    (the run summary counts chunks, not samples); none for a stream whose end cannot be read back."""
    bus = settings.bus()
    wanted, samples = set(stream_ids), {}
    try:
        with TopicLog(
            bus, [bus.catalogue.streams.name], since_ms=since_ms, purpose="run-summary", timeout_s=5.0
        ) as topic_log:
            for batch in topic_log.read_until(topic_log.end_offsets(), within_s=10.0):
                for consumed in batch.events:
                    event = consumed.event
                    if isinstance(event, StreamEnded | StreamFailed) and event.stream_id in wanted:
                        samples[event.stream_id] = event.samples
    except BusError as error:
        log.warning("cannot read the streams' ends back for the summary", extra={"error": str(error)})
    return {stream_id: round(count / TARGET_SAMPLE_RATE, 3) for stream_id, count in samples.items()}


def _print_summary(
    summary: RunSummary, json_output: bool, given: Sequence[StreamConfig], seconds: Mapping[str, float]
) -> None:
    snapshot = summary.snapshot
    for stream in snapshot.streams:
        for warning in stream_warnings(stream):
            typer.echo(f"warning: stream {stream.id}: {warning}", err=True)
    if json_output:
        report = summary.as_json()
        # A stream that failed before it started (a missing file) has no StreamStarted to take its source from.
        sources = {stream.id: redact_url(stream.source) for stream in given}
        for stream, observed in zip(report["streams"], snapshot.streams, strict=True):
            stream["source"] = stream["source"] or sources.get(stream["id"], "")
            stream["warnings"] = stream_warnings(observed)
            stream["audio_seconds"] = seconds.get(stream["id"])
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(
        f"{len(snapshot.streams)} stream(s), {snapshot.chunks} chunks, {len(snapshot.incidents)} "
        f"incident(s), {snapshot.alerts_sent} alert(s) sent in {summary.elapsed_s:.1f} s"
    )
    streams = Table(title="streams")
    for column in ("stream", "state", "chunks", "audio s", "reason"):
        streams.add_column(column)
    for stream in snapshot.streams:
        heard = "" if stream.id not in seconds else f"{seconds[stream.id]:.1f}"
        if stream_warnings(stream):
            heard = f"[yellow]{heard} (partly read)[/yellow]"
        streams.add_row(stream.id, stream.state, str(stream.chunks), heard, stream.reason)
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
    since_ms = int(time.time() * 1000) - 1000  # as the runtime's observer reads: a little before it starts
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
    seen = [stream.id for stream in summary.snapshot.streams]
    _print_summary(summary, json_output, streams, audio_seconds(settings, since_ms, seen))
    code = exit_code(summary)
    if code:
        raise typer.Exit(code)


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
    since_ms = int(time.time() * 1000) - 1000
    console.print(f"playing {recording} through the pipeline{'' if fast else ' in real time'}; Ctrl-C stops")
    started: LocalBroker[Settings] | None = None
    seconds: dict[str, float] = {}
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
        seconds = audio_seconds(settings, since_ms, ["demo"])  # while the broker is still up
    finally:
        if started is not None:  # a demo leaves nothing running behind it
            started.down()
            console.print("stopped the local Kafka broker the demo started")
    show_new_incidents(summary.snapshot)
    _print_summary(summary, json_output, streams, seconds)
