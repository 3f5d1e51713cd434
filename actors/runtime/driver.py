"""The driver: starts the pipeline's actors on Ray, watches them until the run is over, and stops them in order.

``PipelineRuntime`` brings up metrics, then every stage replica, then the capture sources; it answers whether the
run caught up and summarises it (``RunSummary``). ``connect_ray`` joins or starts the cluster; ``stop_on_signals``
turns Ctrl-C / SIGTERM into a graceful stop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any, cast

import ray
from ray.actor import ActorHandle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.metrics import EMPTY_SNAPSHOT, ObserverSnapshot
from actors.pipeline import StageSpec, check_unique
from actors.runtime.hosts import HostStatus, MetricsHost, SourceFactory, SourceHost, StageHost
from config import Settings, StreamConfig
from config.settings import RuntimeConfig
from events.kafka.admin import KafkaProbe, MetricsError

log = logging.getLogger(__name__)

RAY_NAMESPACE = "distress"
# How long `connect_ray` waits for a cluster's port to accept a connection: Ray itself retries for minutes.
RAY_PROBE_TIMEOUT_S = 5.0


class RuntimeStartError(Exception):
    """The pipeline could not be brought up; the message names the stage or source and the cause."""


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

    A cluster we join must run this project's environment (see ray_cluster.yaml); actors import our packages. A
    ``host:port`` (or ``ray://host:port``) address is probed first: a ``RuntimeStartError`` within seconds when
    nothing answers there or the address cannot be parsed, where Ray itself would retry for minutes.
    """
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or config.ray_address
    if target:
        probe_ray_address(target)
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


def probe_ray_address(target: str, timeout_s: float = RAY_PROBE_TIMEOUT_S) -> None:
    """Raise ``RuntimeStartError`` unless ``target`` is ``auto``/``local`` or its host:port accepts a connection."""
    if target in ("auto", "local"):  # Ray finds (or starts) the cluster itself
        return
    host, port = _host_and_port(target)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else error.strerror or str(error) or "unreachable"
        reason = reason[:1].lower() + reason[1:]
        raise RuntimeStartError(
            f"cannot reach the Ray cluster at {target} ({reason}); start it (`ray start --head`, `ray up`) or "
            "check --address, RAY_ADDRESS and runtime.ray_address"
        ) from error


def _host_and_port(target: str) -> tuple[str, int]:
    """``host:port`` of a Ray address (``host:port``, ``[ipv6]:port`` or ``ray://host:port``)."""
    rest = target.removeprefix("ray://").rstrip("/")
    host, colon, port_text = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if colon and host and port_text.isdigit() and 0 < int(port_text) < 65536 and "/" not in host:
        return host, int(port_text)
    raise RuntimeStartError(
        f"cannot use the Ray cluster address {target!r}: expected host:port, ray://host:port or 'auto'"
    )


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
