"""`distress capture SOURCE...`: publish audio sources onto Kafka, one capture actor (thread) per stream.

Exit codes: 0 when every stream ended with all of its input read, 2 for bad arguments or when any stream failed
(the others still run to their end), otherwise 3 (``EXIT_PARTLY_READ``) when a stream's input was only partly read
(a recording cut off or undecodable part-way: a ``warning:`` line and its report's ``warnings`` say what was never
heard, ``heard_seconds`` how much was), 1 when Kafka is unreachable or a capture broke for a reason other than its
source (cli/errors.py reports those in one line).
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from actors.capture import (
    TARGET_SAMPLE_RATE,
    CaptureActor,
    CaptureReport,
    RawPcmFormat,
    SourceOptions,
    open_source,
)
from actors.capture.blocks import AudioSource
from actors.capture.microphone import MICROPHONE
from actors.capture.sources import STDIN
from cli.broker import reachable_bus
from cli.errors import EXIT_PARTLY_READ, CliError
from config import load_settings
from config.redaction import redact_url

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NOT_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


class CaptureUsageError(CliError):
    """The command line is wrong; the message says which argument and why (exit code 2)."""


def default_stream_id(spec: str) -> str:
    """A readable stream id for a source: the file stem, the URL host, ``mic``/``mic-DEVICE`` or ``stdin``."""
    if spec == STDIN:
        candidate = "stdin"
    elif spec == MICROPHONE or spec.startswith(MICROPHONE + ":"):
        candidate = spec.replace(":", "-")
    elif "://" in spec:
        candidate = redact_url(spec).split("://", 1)[1].split("/", 1)[0].split("@")[-1].replace(":", "-")
    else:
        candidate = Path(spec).stem
    cleaned = _NOT_ID_CHARACTERS.sub("-", candidate).lstrip("._-")[:64]
    return cleaned or "stream"


def stream_ids_for(specs: Sequence[str], explicit: Sequence[str]) -> list[str]:
    """One unique, valid id per source: the ``--stream-id`` values in order, or ids derived from the sources."""
    if explicit and len(explicit) != len(specs):
        raise CaptureUsageError(
            f"--stream-id given {len(explicit)} time(s) for {len(specs)} source(s); "
            "give it once per SOURCE, in the same order, or not at all"
        )
    for stream_id in explicit:
        if not STREAM_ID.match(stream_id):
            raise CaptureUsageError(
                f"--stream-id {stream_id!r} is invalid: use 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
    if len(set(explicit)) != len(explicit):
        raise CaptureUsageError("--stream-id values must be unique")
    if explicit:
        return list(explicit)
    ids: list[str] = []
    for spec in specs:
        base = default_stream_id(spec)
        candidate, suffix = base, 2
        while candidate in ids:
            candidate, suffix = f"{base[:60]}-{suffix}", suffix + 1
        ids.append(candidate)
    return ids


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM end every stream cleanly (StreamEnded "stopped") instead of killing the process."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_captures(actors: Sequence[CaptureActor], stop: threading.Event) -> list[CaptureReport]:
    """Run every actor in its own thread until all streams are over; a bug in one stops the others."""
    with ThreadPoolExecutor(max_workers=len(actors), thread_name_prefix="capture") as pool:
        futures: list[Future[CaptureReport]] = [pool.submit(actor.run, stop) for actor in actors]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                stop.set()
        return [future.result() for future in futures]


def _report_dict(report: CaptureReport) -> dict[str, Any]:
    return {
        **asdict(report),
        "audio_seconds": round(report.audio_seconds, 3),
        "heard_seconds": round(report.heard_seconds, 3),
        "chunks_per_second": round(report.chunks_per_second, 2),
        "wall_seconds": round(report.wall_seconds, 3),
    }


def _partly_read(report: CaptureReport) -> bool:
    return not report.failed and bool(report.warnings)


def _print_reports(reports: Sequence[CaptureReport], json_output: bool) -> None:
    chunks = sum(report.chunks for report in reports)
    wall = max((report.wall_seconds for report in reports), default=0.0)
    summary = {
        "streams": len(reports),
        "ended": sum(not report.failed for report in reports),
        "failed": sum(report.failed for report in reports),
        "partly_read": sum(_partly_read(report) for report in reports),
        "chunks": chunks,
        "audio_seconds": round(sum(report.audio_seconds for report in reports), 3),
        "wall_seconds": round(wall, 3),
        "chunks_per_second": round(chunks / wall, 2) if wall > 0 else 0.0,
    }
    if json_output:
        typer.echo(json.dumps({"streams": [_report_dict(report) for report in reports], "summary": summary}))
    else:
        for report in reports:
            typer.echo(
                f"{report.stream_id}: {report.outcome} ({report.reason}) — {report.chunks} chunks, "
                f"{report.audio_seconds:.1f} s audio in {report.wall_seconds:.2f} s, "
                f"{report.chunks_per_second:.1f} chunks/s"
                + (f", {report.reconnects} reconnect(s)" if report.reconnects else "")
            )
        typer.echo(
            f"{summary['streams']} stream(s): {summary['ended']} ended"
            + (f" ({summary['partly_read']} only partly read)" if summary["partly_read"] else "")
            + f", {summary['failed']} failed; "
            f"{chunks} chunks in {wall:.2f} s ({summary['chunks_per_second']} chunks/s)"
        )
    for report in reports:
        if report.failed:
            typer.echo(f"error: stream {report.stream_id}: {report.reason}", err=True)
        for warning in report.warnings if _partly_read(report) else ():
            typer.echo(f"warning: stream {report.stream_id}: {warning}", err=True)


def capture_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE",
            help="Audio file, rtsp/http(s) URL, 'mic' or 'mic:DEVICE', or '-' for raw PCM on stdin.",
            show_default=False,
        ),
    ],
    stream_id: Annotated[
        list[str] | None,
        typer.Option(
            "--stream-id",
            help="Stream id, once per SOURCE in order (default: derived from each source).",
            show_default=False,
        ),
    ] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Pace publication by the audio's own clock.")] = False,
    chunk_seconds: Annotated[
        float | None,
        typer.Option("--chunk-seconds", help="Window length in seconds (default: capture.chunk_seconds, 1.0)."),
    ] = None,
    stdin_rate: Annotated[int, typer.Option("--stdin-rate", help="Sample rate of raw PCM on stdin.")] = 16000,
    stdin_channels: Annotated[int, typer.Option("--stdin-channels", help="Interleaved channels of raw PCM.")] = 1,
    stdin_format: Annotated[str, typer.Option("--stdin-format", help="s16le, s32le, f32le or f64le.")] = "s16le",
    json_output: Annotated[bool, typer.Option("--json", help="Print the reports and summary as JSON.")] = False,
) -> None:
    """Publish audio sources onto Kafka (StreamStarted, AudioChunkCaptured..., StreamEnded/StreamFailed)."""
    settings = load_settings()
    try:
        if chunk_seconds is not None:
            if not 0 < chunk_seconds <= 10:
                raise CaptureUsageError(f"--chunk-seconds must be in (0, 10], got {chunk_seconds}")
            capture = settings.capture.model_copy(update={"chunk_seconds": chunk_seconds})
            settings = settings.model_copy(update={"capture": capture})
        if sources.count(STDIN) > 1:
            raise CaptureUsageError("'-' (stdin) can be captured only once")
        raw_pcm = RawPcmFormat(sample_rate=stdin_rate, channels=stdin_channels, sample_format=stdin_format)
        ids = stream_ids_for(sources, stream_id or [])
        options = SourceOptions.from_config(settings.capture, raw_pcm)
        stdin = sys.stdin.buffer if STDIN in sources else None
        opened: list[AudioSource] = [open_source(spec, options, stdin=stdin) for spec in sources]
    except ValueError as error:  # a --stdin-* value out of range; SourceError and usage errors go as they are
        raise CaptureUsageError(str(error)) from error

    bus = reachable_bus(settings)
    bus.ensure_topics(replication_factor=settings.replication_factor)
    chunk_samples = settings.capture.chunk_samples(TARGET_SAMPLE_RATE)
    stop = threading.Event()
    with bus.producer() as producer, _stop_on_signals(stop):
        actors = [
            CaptureActor(
                stream_id=sid,
                source=source,
                publisher=producer,
                chunk_samples=chunk_samples,
                realtime=realtime,
                resample_quality=settings.capture.resample_quality,
            )
            for sid, source in zip(ids, opened, strict=True)
        ]
        reports = run_captures(actors, stop)
    _print_reports(reports, json_output)
    if any(report.failed for report in reports):
        raise typer.Exit(2)
    if any(_partly_read(report) for report in reports):
        raise typer.Exit(EXIT_PARTLY_READ)
