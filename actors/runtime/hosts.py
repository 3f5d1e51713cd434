"""The bodies of the pipeline's Ray actors: a stage replica, a capture source, the metrics actor.

- ``StageHost`` - one replica of one registered stage (``actors.pipeline.StageSpec``). Its constructor starts a
  thread that runs a ``StageRunner`` (or the stage's own ``Worker`` loop) until told to stop, so when Ray restarts a
  crashed actor (``max_restarts=-1``) the constructor runs again and the stage resumes from its committed offsets
  (or database checkpoint) with no help from the driver. Errors inside the loop (a broker restart outlasting the
  client's retries) rebuild the stage in-process with backoff; it is rebuilt rather than reused because its state
  must match the offsets it resumes from. Either way a stage with memory (``StageSpec.memory_s``) is first given
  the input it finished just before those offsets (``actors.runtime.resume.recent_input``), so it decides as it
  would have.
- ``SourceHost`` - one capture source (one stream), publishing StreamStarted → chunks → StreamEnded/Failed; after a
  crash it continues its stream's run where the topics say it stopped (``locate_stream_run``,
  ``ResumingPublisher``).
- ``MetricsHost`` - follows every topic, resolves per-stage latency, polls stage backlogs, serves Prometheus.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import ray

from actors.capture.actor import EventPublisher
from actors.metrics import EMPTY_SNAPSHOT, ObserverSnapshot, PipelineObserver, PrometheusExporter
from actors.pipeline import StageSpec, Worker
from actors.runtime.resume import ResumingPublisher, StreamRun, locate_stream_run, recent_input
from actors.stage import StageRunner
from config import Settings, StreamConfig
from config.logging import configure_logging
from events.catalogue import StreamFailed
from events.kafka.admin import KafkaProbe, MetricsError
from events.kafka.bus import Bus
from events.kafka.connection import BusError
from events.kafka.consumer import DecodeFailure, ErrorAction, EventConsumer, dead_letter_everything
from events.kafka.producer import EventProducer

log = logging.getLogger(__name__)

LAG_POLL_S = 5.0
MAX_BACKOFF_S = 30.0


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
            except (MetricsError, BusError) as error:
                log.warning(
                    "cannot read how far the stream got; retrying",
                    extra={"stream_id": self._stream.id, "error": str(error)},
                )
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
        return None


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
