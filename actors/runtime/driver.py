"""The pipeline as supervised Ray actors, wired only through Kafka topics and consumer groups.

Actors:
- ``StageHost`` — one replica of one registered stage (``actors.pipeline.StageSpec``). Its constructor starts a
  thread that runs a ``StageRunner`` (or the stage's own ``Worker`` loop) until told to stop, so when Ray restarts a
  crashed actor (``max_restarts=-1``) the constructor runs again and the stage resumes from its committed offsets
  (or database checkpoint) with no help from the driver. Errors inside the loop (a broker restart outlasting the
  client's retries) rebuild the stage in-process with backoff; it is rebuilt rather than reused because its state
  must match the offsets it resumes from. Either way a stage with memory (``StageSpec.memory_s``) is first given
  the input it finished just before those offsets (``recent_input``), so it decides as it would have.
- ``SourceHost`` — one capture source (one stream), publishing StreamStarted → chunks → StreamEnded/Failed; after a
  crash it continues its stream's run where the topics say it stopped (``locate_stream_run``,
  ``ResumingPublisher``).
- ``MetricsHost`` — follows every topic, resolves per-stage latency, polls stage backlogs, serves Prometheus.

Backpressure: stages process synchronously, one bounded batch (``StageSpec.max_batch``) at a time, and each
``StageRunner`` consumer's prefetch queue is bounded (``runtime.consumer_prefetch_kbytes``). A slow stage (ASR)
therefore holds at most one batch plus that queue in memory; everything it has not reached waits in Kafka, on disk,
and shows up as lag in `distress status`. Producers block (serving delivery reports) when librdkafka's local queue
is full. (``Worker`` stages — alerting, projections — read in bounded batches of their own.)

Shutdown (Ctrl-C / SIGTERM on the driver): sources stop first (each publishes StreamEnded "stopped"), stages get a
short drain period for what is already on the topics, then every stage finishes its batch, flushes its producer,
commits its offsets and leaves its group; then the actors are killed and a local cluster shut down.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType
from typing import Any, Protocol, cast

import ray
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.capture.actor import EventPublisher
from actors.metrics import EMPTY_SNAPSHOT, ObserverSnapshot, PipelineObserver, PrometheusExporter
from actors.pipeline import StageSpec, Worker, check_unique
from actors.stage import StageRunner
from config import Settings, StreamConfig
from config.logging import configure_logging
from config.settings import RuntimeConfig
from events import Event
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamFailed, StreamStarted
from events.kafka.admin import KafkaProbe, MetricsError
from events.kafka.bus import Bus
from events.kafka.consumer import ConsumedEvent, DecodeFailure, ErrorAction, EventConsumer, dead_letter_everything
from events.kafka.log import EventReader
from events.kafka.producer import EventProducer

log = logging.getLogger(__name__)

RAY_NAMESPACE = "distress"
LAG_POLL_S = 5.0
MAX_BACKOFF_S = 30.0
RESTART_ALLOWANCE_S = 60.0  # how long rebuilding a restarted stage's memory may spend reading its input


class RuntimeStartError(Exception):
    """The pipeline could not be brought up; the message names the stage or source and the cause."""


class CaptureSource(Protocol):
    """One stream's capture: publishes StreamStarted, its chunks, then StreamEnded or StreamFailed.

    ``run`` returns when the source is exhausted, has failed (after publishing StreamFailed) or ``stop`` is set.
    The host gives the publisher, so that a restarted capture can continue its stream's run (``ResumingPublisher``).
    ``live``: the audio arrives as it happens (a microphone, a camera) rather than being read from a recording.
    """

    @property
    def live(self) -> bool: ...

    def run(self, stop: threading.Event, publisher: EventPublisher) -> object: ...


SourceFactory = Callable[[StreamConfig, Settings, bool], CaptureSource]  # (stream, settings, realtime)


@dataclass(frozen=True, kw_only=True)
class HostStatus:
    """What a host actor reports about itself (also what the fault tests need: its pid)."""

    name: str
    pid: int
    node_id: str
    running: bool
    processed: int
    published: int
    restarts: int
    error: str | None


class _PrefetchBoundedBus(Bus):
    """A bus whose consumers prefetch at most ``prefetch_kbytes``: with synchronous batches this bounds memory."""

    def __init__(self, bus: Bus, prefetch_kbytes: int) -> None:
        super().__init__(bus.connection, bus.catalogue, bus.codec)
        self._prefetch_kbytes = prefetch_kbytes

    def consumer(
        self,
        *,
        group_id: str,
        topics: Sequence[str],
        producer: EventProducer,
        on_decode_error: Callable[[DecodeFailure], ErrorAction] = dead_letter_everything,
        **extra_config: Any,
    ) -> EventConsumer:
        bounded = {
            "queued.max.messages.kbytes": self._prefetch_kbytes,
            "fetch.max.bytes": max(self._prefetch_kbytes * 1024, 2 * 1_048_576),
            **extra_config,
        }
        return super().consumer(
            group_id=group_id, topics=topics, producer=producer, on_decode_error=on_decode_error, **bounded
        )


def _prepare_actor_process(settings: Settings) -> None:
    """Logging as configured, and anything printed in the actor sent to stderr: Ray forwards an actor's stdout to
    the driver's stdout, which must carry nothing but a command's (``--json``) output."""
    configure_logging(settings.log_level, json_lines=settings.log_json)
    sys.stdout = sys.stderr


def _restarted_by_ray() -> bool:
    """Whether Ray runs this actor's constructor again, after a crash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # raised by Ray's own implementation of the check
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# ------------------------------------------------------------------------------------------- actor bodies


class StageHost:
    """Body of a stage replica's Ray actor (see the module docstring for the supervision model)."""

    def __init__(self, spec: StageSpec, settings: Settings, replica: int) -> None:
        _prepare_actor_process(settings)
        self._spec = spec
        self._settings = settings
        self._name = f"{spec.name}[{replica}]"
        self._stop = threading.Event()
        self._built_once = threading.Event()
        self._runner: StageRunner | Worker | None = None
        self._restarts = 0
        # After a crash (Ray ran this constructor again) the stage's memory is gone: rebuild it before resuming.
        self._lost_memory = _restarted_by_ray()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._serve, name=f"stage-{self._name}", daemon=True)
        self._thread.start()

    def ready(self, timeout_s: float) -> HostStatus:
        """Waits until the stage has been built once (or failed to build) and reports."""
        self._built_once.wait(timeout_s)
        return self.status()

    def status(self) -> HostStatus:
        runner = self._runner
        counted = runner if isinstance(runner, StageRunner) else None
        return HostStatus(
            name=self._name,
            pid=os.getpid(),
            node_id=ray.get_runtime_context().get_node_id(),
            running=runner is not None and self._thread.is_alive(),
            processed=counted.processed if counted else 0,
            published=counted.published if counted else 0,
            restarts=self._restarts,
            error=self._error,
        )

    def stop(self, timeout_s: float) -> HostStatus:
        """Finish the current batch, commit, flush and leave the group."""
        self._stop.set()
        self._thread.join(timeout_s)
        return self.status()

    def _serve(self) -> None:
        bus = _PrefetchBoundedBus(self._settings.bus(), self._settings.runtime.consumer_prefetch_kbytes)
        delay = 0.5
        while not self._stop.is_set():
            runner = self._build(bus)
            self._built_once.set()
            if runner is not None:
                self._runner, delay = runner, 0.5
                try:
                    runner.run(self._stop)
                    return
                except Exception as error:  # e.g. Kafka unreachable for longer than the client retries
                    self._error = _describe(error)
                    self._restarts += 1
                    self._lost_memory = True
                    log.exception("stage failed; rebuilding it from the committed offsets", extra={"stage": self._name})
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _build(self, bus: Bus) -> StageRunner | Worker | None:
        try:
            if self._spec.serve is not None:
                worker = self._spec.serve(self._settings)
            else:
                assert self._spec.build is not None  # StageSpec guarantees exactly one of build and serve
                stage = self._spec.build(self._settings)
                self._spec.check_stage(stage, bus.catalogue)
                group_id = self._spec.group_id(self._settings)
                replay = self._lost_memory and self._spec.memory_s > 0
                worker = StageRunner(
                    stage,
                    bus,
                    group_id=group_id,
                    max_batch=self._spec.max_batch,
                    recent_input=partial(
                        recent_input,
                        bus,
                        group_id,
                        self._spec.input_topics(bus.catalogue),
                        window_s=self._spec.memory_s,
                    )
                    if replay
                    else None,
                )
        except Exception as error:  # reported through ready()/status(); retried with backoff
            self._error = _describe(error)
            log.exception("stage could not be built", extra={"stage": self._name})
            return None
        self._error = None
        return worker


def recent_input(
    bus: Bus, group_id: str, topics: Sequence[str], partitions: Sequence[tuple[str, int]], *, window_s: float
) -> list[ConsumedEvent]:
    """The events of ``partitions`` in the last ``window_s`` before the group's committed offsets, oldest first.

    The window ends at each partition's last finished event (the one before its committed offset), found first, so
    a stage that took long to come back still gets its memory; it is trimmed per partition to ``window_s`` before
    that event. A replay that cannot be read is skipped (logged): the stage then resumes with empty memory, as it
    would without one.
    """
    try:
        probe = KafkaProbe(bus.connection)
        committed = probe.committed(group_id, list(partitions))
        targets = {key: offset for key, offset in committed.items() if offset}
        if not targets:
            return []
        deadline = time.monotonic() + RESTART_ALLOWANCE_S
        last_ms = _last_finished_ms(bus, topics, targets, deadline)
        finished: dict[tuple[str, int], deque[ConsumedEvent]] = {key: deque() for key in targets}
        since_ms = min(last_ms.values()) - int(window_s * 1000)
        with EventReader(bus, topics, since_ms=since_ms) as reader:
            while not reader.caught_up_with(targets) and time.monotonic() < deadline:
                for consumed in reader.poll():
                    key = (consumed.topic, consumed.partition)
                    if key in targets and consumed.offset < targets[key]:
                        window = finished[key]
                        window.append(consumed)
                        while window[0].timestamp_ms < consumed.timestamp_ms - window_s * 1000:
                            window.popleft()
    except MetricsError as error:
        log.warning(
            "cannot read the input to rebuild a stage's memory", extra={"group_id": group_id, "error": str(error)}
        )
        return []
    return sorted((event for window in finished.values() for event in window), key=lambda c: c.timestamp_ms)


def _last_finished_ms(
    bus: Bus, topics: Sequence[str], targets: Mapping[tuple[str, int], int], deadline: float
) -> dict[tuple[str, int], int]:
    """Kafka timestamps of the event before each committed offset; now for one that cannot be read by ``deadline``
    or cannot be decoded (the reader skips it, so waiting for it would only spend the deadline)."""
    last = {key: offset - 1 for key, offset in targets.items()}
    found: dict[tuple[str, int], int] = {}
    with EventReader(bus, topics, offsets=last) as reader:
        while not reader.caught_up_with(targets) and time.monotonic() < deadline:
            for consumed in reader.poll():
                key = (consumed.topic, consumed.partition)
                if last.get(key) == consumed.offset:
                    found[key] = consumed.timestamp_ms
    now_ms = int(time.time() * 1000)
    return {key: found.get(key, now_ms) for key in last}


class SourceHost:
    """Body of a capture source's Ray actor: runs one stream in a thread until it ends or is stopped.

    After a crash Ray runs the constructor again; the host then asks Kafka how far the stream's run got since the
    pipeline started (``locate_stream_run``) and continues that run through a ``ResumingPublisher``: same
    StreamStarted, no chunk published twice (a recording resumes where it stopped, real-time pacing kept; a live
    source goes on from now). A finished run is not started again. If the source cannot even be constructed (e.g. an
    unknown source kind), the host publishes StreamFailed itself, so a run waiting for every stream to finish is
    never left waiting for it.
    """

    def __init__(
        self, stream: StreamConfig, settings: Settings, factory: SourceFactory, realtime: bool, since_ms: int
    ) -> None:
        _prepare_actor_process(settings)
        self._stream = stream
        self._settings = settings
        self._factory = factory
        self._realtime = realtime
        self._since_ms = since_ms
        self._stop = threading.Event()
        self._done = threading.Event()
        self._error: str | None = None
        # Ray runs the constructor again after a crash; only then is there a run on the topics to continue.
        self._restarted = _restarted_by_ray()
        self._thread = threading.Thread(target=self._serve, name=f"source-{stream.id}", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float) -> bool:
        """True once the stream has ended (normally, by failure or by stop)."""
        return self._done.wait(timeout_s)

    def status(self) -> HostStatus:
        return HostStatus(
            name=f"source[{self._stream.id}]",
            pid=os.getpid(),
            node_id=ray.get_runtime_context().get_node_id(),
            running=not self._done.is_set(),
            processed=0,
            published=0,
            restarts=int(self._restarted),
            error=self._error,
        )

    def stop(self, timeout_s: float) -> HostStatus:
        self._stop.set()
        self._thread.join(timeout_s)
        return self.status()

    def _serve(self) -> None:
        bus = self._settings.bus()
        envelope: dict[str, Any] = {"stream_id": self._stream.id}
        try:
            with bus.producer() as producer:
                run = self._locate(bus) if self._restarted else None
                if run is not None and run.finished:
                    log.info("stream already finished before this restart", extra={"stream_id": self._stream.id})
                elif run is not None and run.started is not None:
                    envelope = run.started.caused()
                    log.info(
                        "continuing the stream after a restart",
                        extra={"stream_id": self._stream.id, "next_sequence": run.next_sequence},
                    )
                    # Unpaced: a recording is read again up to where it stopped at once (the publisher paces the
                    # rest); a live source arrives in real time anyway.
                    source = self._factory(self._stream, self._settings, False)
                    source.run(
                        self._stop,
                        ResumingPublisher(producer, run, live=source.live, paced=self._realtime, stop=self._stop),
                    )
                elif not self._stop.is_set():
                    self._factory(self._stream, self._settings, self._realtime).run(self._stop, producer)
        except Exception as error:
            self._error = _describe(error)
            log.exception("capture source failed", extra={"stream_id": self._stream.id})
            with bus.producer() as producer:
                producer.publish(
                    StreamFailed(**envelope, source=self._stream.source, reason=self._error, chunks=0, samples=0)
                )
        finally:
            self._done.set()

    def _locate(self, bus: Bus) -> StreamRun | None:
        """How far the stream got before the crash; waits for Kafka (None: stopped before it answered)."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                return locate_stream_run(bus, self._stream.id, since_ms=self._since_ms)
            except MetricsError as error:
                log.warning(
                    "cannot read how far the stream got; retrying",
                    extra={"stream_id": self._stream.id, "error": str(error)},
                )
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return None


@dataclass(frozen=True, kw_only=True)
class StreamRun:
    """How far a stream's run got since the pipeline started, according to the topics."""

    started: StreamStarted | None  # None: the stream has not started in this run
    finished: bool
    next_sequence: int  # the first chunk not published yet
    next_sample_offset: int  # the first sample not published yet
    anchor: datetime | None  # wall time of the run's first sample (from its latest chunk, else its StreamStarted)


def locate_stream_run(bus: Bus, stream_id: str, *, since_ms: int, recent_s: float = 60.0) -> StreamRun:
    """Read the stream's events since ``since_ms``: its StreamStarted, whether it ended, its latest chunk.

    Only this stream's messages are decoded, and chunks are first looked for in the last ``recent_s`` (a capture
    is restarted within seconds of its crash) before the whole run is read.
    """
    started: StreamStarted | None = None
    finished = False
    with EventReader(bus, [bus.catalogue.streams.name], since_ms=since_ms, key=stream_id) as reader:
        for consumed in reader.read_to_end():
            event = consumed.event
            if isinstance(event, StreamStarted):
                started, finished = event, False
            elif isinstance(event, StreamEnded | StreamFailed) and started is not None:
                finished = finished or event.correlation_id == started.event_id
    if started is None or finished:
        return StreamRun(started=started, finished=finished, next_sequence=0, next_sample_offset=0, anchor=None)
    started_ms = int(started.occurred_at.timestamp() * 1000)
    latest: AudioChunkCaptured | None = None
    for window_start in (max(started_ms, int((time.time() - recent_s) * 1000)), started_ms):
        with EventReader(bus, [bus.catalogue.audio_chunks.name], since_ms=window_start, key=stream_id) as reader:
            for consumed in reader.read_to_end():
                chunk = consumed.event
                if (
                    isinstance(chunk, AudioChunkCaptured)
                    and chunk.correlation_id == started.event_id
                    and (latest is None or chunk.sequence > latest.sequence)
                ):
                    latest = chunk
        if latest is not None:
            break
    if latest is None:
        return StreamRun(
            started=started, finished=False, next_sequence=0, next_sample_offset=0, anchor=started.occurred_at
        )
    anchor = latest.captured_at - timedelta(seconds=latest.sample_offset / latest.sample_rate)
    return StreamRun(
        started=started,
        finished=False,
        next_sequence=latest.sequence + 1,
        next_sample_offset=latest.sample_offset + len(latest.pcm16) // 2,
        anchor=anchor,
    )


class ResumingPublisher:
    """Continues a stream run that a crashed capture left unfinished, from a capture that starts over.

    The new capture's StreamStarted is dropped and everything else is filed under the original one. A recording is
    read again from its start (chunking is deterministic, so its chunks are the same): chunks already published are
    dropped and, with ``paced``, the rest go out on the original run's clock (overdue ones at once, later ones when
    their audio would have been heard) with ``captured_at`` continuing the original timeline. A live source cannot be
    read again: its new audio continues the run, numbered after the last chunk published (the audio missed during
    the restart is a gap, as after a reconnect).
    """

    def __init__(
        self, producer: EventPublisher, run: StreamRun, *, live: bool, paced: bool, stop: threading.Event
    ) -> None:
        if run.started is None:
            raise ValueError("nothing to resume: the stream has not started")
        self._producer = producer
        self._started = run.started
        self._live = live
        self._next_sequence = run.next_sequence
        self._next_sample_offset = run.next_sample_offset
        self._anchor = run.anchor if paced and not live else None
        self._stop = stop

    def publish(self, event: Event) -> None:
        if isinstance(event, StreamStarted):
            return
        changes: dict[str, Any] = self._started.caused()
        if isinstance(event, AudioChunkCaptured) and self._live:
            changes.update(
                sequence=event.sequence + self._next_sequence,
                sample_offset=event.sample_offset + self._next_sample_offset,
            )
        elif isinstance(event, AudioChunkCaptured):
            if event.sequence < self._next_sequence:
                return
            if self._anchor is not None:
                samples = len(event.pcm16) // 2
                due = self._anchor + timedelta(seconds=(event.sample_offset + samples) / event.sample_rate)
                self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                changes["captured_at"] = self._anchor + timedelta(seconds=event.sample_offset / event.sample_rate)
        elif isinstance(event, StreamEnded | StreamFailed) and self._live:
            changes.update(chunks=event.chunks + self._next_sequence, samples=event.samples + self._next_sample_offset)
        self._producer.publish(dataclasses.replace(event, **changes))

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout_s)


class MetricsHost:
    """Body of the metrics actor: observer + lag polling + Prometheus endpoint, all rebuilt from Kafka on restart.

    The observer is built in the background thread, with retries, so a restart while Kafka is down does not fail
    the actor's constructor (Ray does not retry a failed constructor); until then snapshots are empty.
    """

    def __init__(
        self, settings: Settings, specs: Sequence[StageSpec], since_ms: int, stream_ids: Sequence[str] | None
    ) -> None:
        _prepare_actor_process(settings)
        self._settings = settings
        self._specs = tuple(specs)
        self._since_ms = since_ms
        self._stream_ids = stream_ids
        self._exporter = PrometheusExporter()
        self._observer: PipelineObserver | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        config = settings.runtime
        if config.metrics_port:
            self._exporter.serve(config.metrics_host, config.metrics_port)
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self._thread.start()

    def snapshot(self) -> ObserverSnapshot:
        with self._lock:
            return self._observer.snapshot() if self._observer is not None else EMPTY_SNAPSHOT

    def caught_up_with(self, ends: Mapping[tuple[str, int], int]) -> bool:
        with self._lock:
            return self._observer is not None and self._observer.caught_up_with(ends)

    def status(self) -> HostStatus:
        snapshot = self.snapshot()
        return HostStatus(
            name="metrics",
            pid=os.getpid(),
            node_id=ray.get_runtime_context().get_node_id(),
            running=self._thread.is_alive(),
            processed=snapshot.events,
            published=0,
            restarts=0,
            error=None,
        )

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _serve(self) -> None:
        observer = self._connect()
        if observer is None:
            return
        with self._lock:
            self._observer = observer
        probe = KafkaProbe(self._settings.kafka_connection())
        next_lag_poll = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    observer.poll(timeout_s=0.0)
                    snapshot = observer.snapshot()
                self._exporter.update(snapshot)
                if time.monotonic() >= next_lag_poll:
                    next_lag_poll = time.monotonic() + LAG_POLL_S
                    self._poll_lags(probe)
                self._stop.wait(0.05)
        finally:
            observer.close()

    def _connect(self) -> PipelineObserver | None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                return PipelineObserver(
                    self._settings.bus(),
                    since_ms=self._since_ms,
                    stream_ids=self._stream_ids,
                    on_latency=self._exporter.observe_latency,
                )
            except MetricsError as error:
                log.warning("metrics cannot read Kafka yet; retrying", extra={"error": str(error)})
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return None

    def _poll_lags(self, probe: KafkaProbe) -> None:
        for spec in self._specs:
            try:
                self._exporter.set_lag(spec.name, spec.unfinished(self._settings, probe))
            except MetricsError as error:
                log.warning("cannot read a stage's backlog", extra={"stage": spec.name, "error": str(error)})


# ------------------------------------------------------------------------------------------------ driver


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What `distress run --until-eof --json` prints."""

    snapshot: ObserverSnapshot
    elapsed_s: float
    stages: Mapping[str, int]  # stage → replicas

    def as_json(self) -> dict[str, Any]:
        return {
            "streams": [asdict(stream) for stream in self.snapshot.streams],
            "chunks": self.snapshot.chunks,
            "incidents": [asdict(incident) for incident in self.snapshot.incidents],
            "alerts_sent": self.snapshot.alerts_sent,
            "alerts_failed": self.snapshot.alerts_failed,
            "latency": {
                item.stage: {"p50_s": item.p50_s, "p95_s": item.p95_s, "count": item.count}
                for item in self.snapshot.latency
            },
            "stages": dict(self.stages),
            "elapsed_s": self.elapsed_s,
        }


def connect_ray(config: RuntimeConfig, address: str | None) -> bool:
    """Join an existing cluster (``address``, RAY_ADDRESS or the setting) or start a local one; True if started.

    A cluster we join must run this project's environment (see ray_cluster.yaml); actors import our packages.
    """
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or config.ray_address
    if target:
        ray.init(address=target, namespace=RAY_NAMESPACE, log_to_driver=True)
        return False
    for attempt in (1, 2):
        try:
            ray.init(
                num_cpus=config.local_num_cpus,
                object_store_memory=config.local_object_store_mb * 1_048_576,
                include_dashboard=False,
                namespace=RAY_NAMESPACE,
                log_to_driver=True,
            )
            break
        except Exception as error:  # Ray gives up after a fixed 30 s when its node registers slowly (busy machine)
            if attempt == 2 or "timed out during startup" not in str(error):
                raise
            log.warning("the local Ray node was slow to start; trying once more")
            ray.shutdown()
    return True


class PipelineRuntime:
    """Starts, watches and stops one pipeline: stage replicas, capture sources and the metrics actor."""

    def __init__(
        self,
        settings: Settings,
        *,
        stages: Sequence[StageSpec],
        streams: Sequence[StreamConfig],
        source_factory: SourceFactory,
        realtime: bool,
    ) -> None:
        self.settings = _with_absolute_paths(settings)
        self.stages = check_unique(stages)
        self.streams = tuple(streams)
        ids = [stream.id for stream in self.streams]
        if len(set(ids)) != len(ids):
            raise RuntimeStartError(f"stream ids must be unique, got {ids}")
        self._source_factory = source_factory
        self._realtime = realtime
        self._probe = KafkaProbe(self.settings.kafka_connection())
        self.stage_hosts: dict[str, list[ActorHandle[Any]]] = {}
        self.source_hosts: dict[str, ActorHandle[Any]] = {}
        self._metrics: ActorHandle[Any] | None = None
        self._started_at = 0.0
        self._since_ms = 0
        self._last_ends: dict[tuple[str, int], int] | None = None

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self, *, ready_timeout_s: float = 300.0, stream_filter: bool = True) -> None:
        """Bring up metrics, then every stage replica (waiting until each is built), then the sources.

        Stages come up before sources so a failing stage aborts the run before any audio is captured.
        ``stream_filter`` restricts the run's bookkeeping to this run's streams (`--until-eof`).
        """
        self.settings.ensure_topics()
        self._started_at = time.time()
        self._since_ms = since_ms = int(self._started_at * 1000) - 1000
        node = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        supervised: dict[str, Any] = {"max_restarts": -1, "max_task_retries": -1, "max_concurrency": 4}
        self._metrics = _spawn(
            MetricsHost,
            {"name": self._actor_name("metrics"), "num_cpus": 0, "scheduling_strategy": node, **supervised},
            self.settings,
            self.stages,
            since_ms,
            [s.id for s in self.streams] if stream_filter else None,
        )
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        gpus = float(resources.get("GPU", 0.0))
        # More replicas than CPUs cannot run a CPU-bound stage faster; the setting overrides this cap.
        max_replicas = self.settings.runtime.max_replicas or max(1, int(resources.get("CPU", 1)))
        catalogue = self.settings.topics()
        for spec in self.stages:
            partitions = min(self._probe.partition_count(topic) for topic in spec.input_topics(catalogue))
            replicas = spec.replicas(partitions, max_replicas)
            options: dict[str, Any] = {**supervised, "num_cpus": self.settings.runtime.actor_num_cpus}
            if spec.wants_gpu and gpus >= 1:
                options["num_gpus"] = min(1.0, gpus / replicas)
            if spec.local_state:
                options["scheduling_strategy"] = node
            self.stage_hosts[spec.name] = [
                _spawn(
                    StageHost, {"name": self._actor_name(f"{spec.name}.{index}"), **options}, spec, self.settings, index
                )
                for index in range(replicas)
            ]
        statuses: list[HostStatus] = ray.get(
            [host.ready.remote(ready_timeout_s) for hosts in self.stage_hosts.values() for host in hosts],
            timeout=ready_timeout_s + 30,
        )
        failed = [f"{status.name}: {status.error}" for status in statuses if status.error]
        if failed:
            raise RuntimeStartError("stage(s) failed to start: " + "; ".join(failed))
        log.info("stages up", extra={"stages": {name: len(hosts) for name, hosts in self.stage_hosts.items()}})
        for stream in self.streams:
            self.source_hosts[stream.id] = _spawn(
                SourceHost,
                {
                    "name": self._actor_name(f"source.{stream.id}"),
                    "num_cpus": self.settings.runtime.actor_num_cpus,
                    **supervised,
                },
                stream,
                self.settings,
                self._source_factory,
                self._realtime,
                self._since_ms,
            )

    def stop(self, timeout_s: float = 60.0, drain_s: float = 15.0) -> RunSummary:
        """Graceful stop in data-flow order, then kill whatever did not stop in time; returns the run's summary.

        Sources stop first (each publishes its last chunk and StreamEnded "stopped"); the stages then get up to
        ``drain_s`` to process what is already on the topics before they commit and leave their groups; the
        summary is taken once the metrics actor has read everything that was published.
        """
        self._stop_all(list(self.source_hosts.values()), timeout_s)
        if self.stage_hosts:
            self._drain(drain_s)
        self._stop_all([host for hosts in self.stage_hosts.values() for host in hosts], timeout_s)
        summary = self._final_summary(drain_s)
        if self._metrics is not None:
            self._stop_all([self._metrics], 5.0)
        for handle in [*self.source_hosts.values(), *(h for hs in self.stage_hosts.values() for h in hs)]:
            ray.kill(handle, no_restart=True)
        if self._metrics is not None:
            ray.kill(self._metrics, no_restart=True)
        self.source_hosts.clear()
        self.stage_hosts.clear()
        self._metrics = None
        return summary

    def _final_summary(self, wait_s: float) -> RunSummary:
        """The summary once the metrics actor has read up to the current end of every topic (or ``wait_s`` passed)."""
        if self._metrics is None:
            return RunSummary(snapshot=EMPTY_SNAPSHOT, elapsed_s=0.0, stages={})
        deadline = time.monotonic() + wait_s
        try:
            ends = self._probe.end_offsets(self._probe.partitions(self._observed_topics()))
            while not ray.get(self._metrics.caught_up_with.remote(ends)) and time.monotonic() < deadline:
                time.sleep(0.2)
        except MetricsError as error:
            log.warning("the summary may miss the last events", extra={"error": str(error)})
        return self.summary()

    def _drain(self, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            try:
                if self._stages_idle():
                    return
            except MetricsError as error:
                log.warning("cannot read consumer lag while draining", extra={"error": str(error)})
            time.sleep(0.2)
        log.warning("stages still had input when the drain period ended; they resume from it next run")

    def _stages_idle(self, ends: Mapping[tuple[str, int], int] | None = None) -> bool:
        """Every stage has finished all of its input (up to ``ends`` when given)."""
        return not any(spec.unfinished(self.settings, self._probe, ends) for spec in self.stages)

    # ------------------------------------------------------------------------------------------ queries

    def snapshot(self) -> ObserverSnapshot:
        if self._metrics is None:
            raise RuntimeStartError("the pipeline is not running")
        return cast(ObserverSnapshot, ray.get(self._metrics.snapshot.remote()))

    def caught_up(self, snapshot: ObserverSnapshot) -> bool:
        """Every stream finished, every stage group has committed everything, the observer has read everything,
        and nothing was appended since the previous check (so no stage is still about to publish)."""
        if self._metrics is None or not snapshot.finished(stream.id for stream in self.streams):
            return False
        ends = self._probe.end_offsets(self._probe.partitions(self._observed_topics()))
        if not self._stages_idle(ends) or not ray.get(self._metrics.caught_up_with.remote(ends)):
            return False
        quiet = ends == self._last_ends
        self._last_ends = ends
        return quiet

    def wait_until_caught_up(
        self,
        stop: threading.Event,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[ObserverSnapshot], None] | None = None,
    ) -> RunSummary:
        """Poll until ``caught_up`` (or ``stop`` is set) and summarise; ``on_progress`` sees every snapshot."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not stop.is_set():
            snapshot = self.snapshot()
            if on_progress is not None:
                on_progress(snapshot)
            try:
                if self.caught_up(snapshot):
                    break
            except MetricsError as error:  # Kafka briefly unreachable: the stages recover, so keep waiting
                log.warning("cannot tell whether the pipeline caught up", extra={"error": str(error)})
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the pipeline did not catch up within {timeout_s:.0f} s")
            stop.wait(self.settings.runtime.caught_up_poll_s)
        return self.summary()

    def summary(self) -> RunSummary:
        return RunSummary(
            snapshot=self.snapshot(),
            elapsed_s=time.time() - self._started_at,
            stages={name: len(hosts) for name, hosts in self.stage_hosts.items()},
        )

    def host_statuses(self) -> dict[str, list[HostStatus]]:
        statuses: dict[str, list[HostStatus]] = {
            name: ray.get([host.status.remote() for host in hosts]) for name, hosts in self.stage_hosts.items()
        }
        statuses["capture"] = ray.get([host.status.remote() for host in self.source_hosts.values()])
        if self._metrics is not None:
            statuses["metrics"] = [cast(HostStatus, ray.get(self._metrics.status.remote()))]
        return statuses

    # ---------------------------------------------------------------------------------------- internals

    def _observed_topics(self) -> list[str]:
        catalogue = self.settings.topics()
        return [spec.name for spec in catalogue.all() if spec.name != catalogue.dead_letters.name]

    def _actor_name(self, role: str) -> str:
        return f"{self.settings.topic_prefix}distress.{role}.{int(self._started_at * 1000)}"

    @staticmethod
    def _stop_all(handles: Iterable[ActorHandle[Any]], timeout_s: float) -> None:
        refs: list[ray.ObjectRef[Any]] = [handle.stop.remote(timeout_s) for handle in handles]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s + 10)
        for ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as error:
                log.warning("actor did not stop cleanly", extra={"error": str(error)})
        if pending:
            log.warning("actors did not stop in time; killing them", extra={"count": len(pending)})


def _spawn(body: type, options: Mapping[str, Any], *args: Any) -> ActorHandle[Any]:
    """Start ``body`` as a Ray actor with ``options``."""
    return cast(ActorHandle[Any], ray.remote(body).options(**options).remote(*args))


def _with_absolute_paths(settings: Settings) -> Settings:
    """Actors may run with another working directory: resolve the paths they inherit from the driver."""
    return settings.model_copy(
        update={"data_dir": settings.data_dir.resolve(), "kafka_home": settings.kafka_home.resolve()}
    )


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM ask for a graceful stop; a second Ctrl-C interrupts at once."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True, kw_only=True)
class StageHealth:
    stage: str
    group_id: str | None  # None: the stage keeps its position elsewhere (projections: in the database)
    consumers: int | None  # live members of the stage's consumer group: 0 means the stage is not running
    lag: int  # input events not finished yet


@dataclass(frozen=True, kw_only=True)
class PipelineStatus:
    """What `distress status` shows: per-stage consumers and lag now, latency and activity over a recent window."""

    window_s: float
    stages: tuple[StageHealth, ...]
    recent: ObserverSnapshot

    def as_json(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "stages": [asdict(stage) for stage in self.stages],
            "latency": {
                item.stage: {"p50_s": item.p50_s, "p95_s": item.p95_s, "count": item.count}
                for item in self.recent.latency
            },
            "streams": [asdict(stream) for stream in self.recent.streams],
            "incidents": [asdict(incident) for incident in self.recent.incidents],
            "alerts_sent": self.recent.alerts_sent,
            "alerts_failed": self.recent.alerts_failed,
        }


def pipeline_status(settings: Settings, stages: Sequence[StageSpec], *, window_s: float) -> PipelineStatus:
    """Lag and consumers from the stage groups, latency from the last ``window_s`` of events: all from Kafka."""
    probe = KafkaProbe(settings.kafka_connection())
    grouped = {spec.name: spec.backlog is None for spec in stages}
    health = tuple(
        StageHealth(
            stage=spec.name,
            group_id=spec.group_id(settings) if grouped[spec.name] else None,
            consumers=probe.group_members(spec.group_id(settings)) if grouped[spec.name] else None,
            lag=spec.unfinished(settings, probe),
        )
        for spec in stages
    )
    observer = PipelineObserver(settings.bus(), since_ms=int((time.time() - window_s) * 1000))
    try:
        observer.read_to_end()
        recent = observer.snapshot()
    finally:
        observer.close()
    return PipelineStatus(window_s=window_s, stages=health, recent=recent)
