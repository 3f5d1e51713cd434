"""The stage registry: which pipeline stages exist, what they consume and what they ask of the cluster.

The runtime (``actors.runtime``) knows nothing about any particular stage; it hosts whatever this registry lists.
Stages are wired only through Kafka topics and consumer groups, so adding a stage is one ``StageSpec`` here.

Two kinds of stage:
* ``build`` gives a ``Stage`` (plain logic) that the runtime hosts in a ``StageRunner``; its consumer group is
  ``<topic prefix>distress.<stage name>`` and its backlog is that group's lag.
* ``serve`` gives a ``Worker`` that runs its own loop (alerting rebuilds its ledger first; projectors keep their
  Kafka position in the database); such a spec says how to measure its ``backlog``.
Builders import their stage's module when called, so the registry itself (and `distress status`) does not load
torch or the speech model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from actors.capture import CaptureActor, CaptureReport, EventPublisher, ReconnectPolicy, SourceOptions, open_source
from actors.capture.normalise import TARGET_SAMPLE_RATE
from actors.stage import Stage
from config import Settings, StreamConfig
from events.kafka.admin import KafkaProbe, MetricsError
from events.topics import TopicCatalogue

# The catalogue properties a stage may consume (dead letters are for people, not for stages).
CONSUMABLE_TOPICS = ("streams", "audio_chunks", "audio_features", "transcripts", "scores", "incidents", "alerts")

Ends = Mapping[tuple[str, int], int]


class PipelineError(Exception):
    """The stage registry or a stage's declaration is inconsistent."""


class Worker(Protocol):
    """A stage that runs its own loop until ``stop`` is set, then finishes its work and releases its resources."""

    def run(self, stop: threading.Event) -> object: ...


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """How to build and host one stage (exactly one of ``build`` and ``serve``).

    Builders must be module-level functions (Ray ships them to the actor by reference). ``inputs`` name
    ``TopicCatalogue`` properties; for a ``build`` stage the runtime checks the stage consumes exactly those, so
    the registry cannot drift from the code. ``max_batch`` bounds the events a replica holds in flight (the
    runtime's backpressure). A stage whose state spans partitions sets ``scale_with_partitions=False``.
    ``local_state`` pins the stage to the driver's node because it writes files there (SQLite, clip store).
    ``backlog`` measures a ``serve`` stage's unfinished input (default: its consumer group's lag).
    ``memory_s``: how many seconds of past input a ``build`` stage's in-memory state depends on; after a crash
    the runtime replays that much to it before it resumes (``StageRunner``), so it decides as it would have.
    """

    name: str
    inputs: tuple[str, ...]
    build: Callable[[Settings], Stage] | None = None
    serve: Callable[[Settings], Worker] | None = None
    backlog: Callable[[Settings, KafkaProbe, Ends | None], int] | None = None
    max_batch: int = 256
    wants_gpu: bool = False
    scale_with_partitions: bool = True
    local_state: bool = False
    memory_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise PipelineError(f"stage name {self.name!r} must be letters, digits, '-' or '_'")
        unknown = [name for name in self.inputs if name not in CONSUMABLE_TOPICS]
        if not self.inputs or unknown:
            raise PipelineError(
                f"stage {self.name}: inputs must be a non-empty subset of {CONSUMABLE_TOPICS}, got {self.inputs}"
            )
        if (self.build is None) == (self.serve is None):
            raise PipelineError(f"stage {self.name}: give exactly one of build (a Stage) and serve (a Worker)")
        if self.memory_s < 0:
            raise PipelineError(f"stage {self.name}: memory_s must not be negative, got {self.memory_s}")
        if self.max_batch < 1:
            raise PipelineError(f"stage {self.name}: max_batch must be at least 1, got {self.max_batch}")

    def input_topics(self, catalogue: TopicCatalogue) -> tuple[str, ...]:
        return tuple(getattr(catalogue, name).name for name in self.inputs)

    def group_id(self, settings: Settings) -> str:
        """The consumer group of the stage (the one ``StageRunner`` uses by default)."""
        return f"{settings.topic_prefix}distress.{self.name}"

    def replicas(self, partitions: int, max_replicas: int) -> int:
        """One replica per input partition (more would idle), at most ``max_replicas``."""
        wanted = partitions if self.scale_with_partitions else 1
        return max(1, min(wanted, max_replicas))

    def unfinished(self, settings: Settings, probe: KafkaProbe, ends: Ends | None = None) -> int:
        """Input events the stage has not finished (committed or checkpointed) yet, measured up to ``ends``."""
        if self.backlog is not None:
            return self.backlog(settings, probe, ends)
        return sum(probe.group_lag(self.group_id(settings), self.input_topics(settings.topics()), ends).values())

    def check_stage(self, stage: Stage, catalogue: TopicCatalogue) -> None:
        """Refuse a stage whose declared inputs differ from what the registry says it consumes."""
        declared, registered = sorted(stage.input_topics()), sorted(self.input_topics(catalogue))
        if declared != registered:
            raise PipelineError(f"stage {self.name} consumes {declared} but the registry says {registered}")


def check_unique(specs: Sequence[StageSpec]) -> tuple[StageSpec, ...]:
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PipelineError(f"stage names must be unique; repeated: {duplicates}")
    return tuple(specs)


# --------------------------------------------------------------------------------------------- the stages


def build_features(settings: Settings) -> Stage:
    from actors.features import FeatureStage
    from models.acoustic import front_end_for

    return FeatureStage(settings.topics(), front_end_for(settings.scorer.model_path))


def build_asr(settings: Settings) -> Stage:
    from actors.asr import build_asr_stage

    return build_asr_stage(settings)


def build_scorer(settings: Settings) -> Stage:
    from actors.scorer import build_scorer as build_live_scorer

    return build_live_scorer(settings)


def build_incidents(settings: Settings) -> Stage:
    from actors.incidents.stage import build_incident_stage

    return build_incident_stage(settings)


class AlertingWorker:
    """Alerting rebuilds its ledger from the alerts topic before its first batch and, when stopped, waits for the
    deliveries in flight to be recorded; ``run_alerting`` does both around its ``StageRunner``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, stop: threading.Event) -> None:
        from actors.alerting.actor import run_alerting

        run_alerting(self.settings, stop)


class ProjectionsWorker:
    """Every read model followed into the database, one projector thread each (see ``projections.projector``:
    the checkpoint is stored in the same transaction as the rows, so a restart neither loses nor repeats)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def run(self, stop: threading.Event) -> None:
        from projections.database import open_database
        from projections.pool import ProjectorPool

        engine = open_database(self.settings)
        pool = ProjectorPool(engine, self.settings.bus())
        pool.start()
        try:
            stop.wait()
        finally:
            pool.stop()
            engine.dispose()


def build_alerting(settings: Settings) -> Worker:
    return AlertingWorker(settings)


def build_projections(settings: Settings) -> Worker:
    return ProjectionsWorker(settings)


def projections_backlog(settings: Settings, probe: KafkaProbe, ends: Ends | None) -> int:
    """Events not yet applied to the read models: end offsets minus each projection's stored checkpoint."""
    from sqlalchemy import inspect

    from projections.database import create_database_engine
    from projections.projector import load_checkpoint
    from projections.read_models import PROJECTIONS
    from projections.schema import CheckpointRow

    engine = create_database_engine(settings.sqlalchemy_url)
    try:
        backlog = 0
        with engine.connect() as connection:
            migrated = inspect(connection).has_table(CheckpointRow.__tablename__)
            for projection in PROJECTIONS.values():
                partitions = probe.partitions(projection.topics(settings.topics()))
                starts = probe.start_offsets(partitions)
                targets = ends if ends is not None else probe.end_offsets(partitions)
                applied = load_checkpoint(connection, projection.name) if migrated else {}  # nothing applied yet
                backlog += sum(targets[key] - max(applied.get(key, 0), starts[key]) for key in starts)
        return backlog
    except SQLAlchemyError as error:  # e.g. the projector has not created its tables yet
        raise MetricsError(f"cannot read the projection checkpoints: {error}") from error
    finally:
        engine.dispose()


def default_stages(settings: Settings) -> tuple[StageSpec, ...]:
    """The production pipeline, in data-flow order (ASR only when ``asr.enabled``)."""
    specs = [
        # memory_s: the extractor's context; a speech segment (asr.max_segment_s) and the audio before it; the
        # phrase window and the classifier's patch; the debounce windows and the clip's pre-roll.
        StageSpec(name="features", build=build_features, inputs=("audio_chunks",), memory_s=2.0),
        StageSpec(
            name="asr",
            build=build_asr,
            inputs=("audio_chunks",),
            max_batch=16,
            wants_gpu=True,
            memory_s=2 * settings.asr.max_segment_s,
        ),
        StageSpec(
            name="scorer",
            build=build_scorer,
            inputs=("audio_features", "transcripts", "incidents"),
            memory_s=2 * settings.scorer.phrase_window_s,
        ),
        StageSpec(
            name="incidents",
            build=build_incidents,
            local_state=True,
            inputs=("scores", "transcripts", "audio_chunks", "incidents"),
            memory_s=2
            * max(settings.incidents.debounce_windows * settings.capture.chunk_seconds, settings.incidents.clip_pre_s),
        ),
        StageSpec(
            name="alerting",
            serve=build_alerting,
            inputs=("incidents", "alerts"),
            scale_with_partitions=False,
            local_state=True,
        ),
        StageSpec(
            name="projections",
            serve=build_projections,
            backlog=projections_backlog,
            inputs=("streams", "scores", "incidents", "alerts", "transcripts"),
            scale_with_partitions=False,
            local_state=True,
        ),
    ]
    return check_unique([spec for spec in specs if spec.name != "asr" or settings.asr.enabled])


# ------------------------------------------------------------------------------------------------ capture


class CaptureRun:
    """One stream's capture for the runtime: a ``CaptureActor`` publishing through the host's publisher.

    The source string is parsed here, so a malformed one fails the stream (StreamFailed) instead of the run.
    """

    def __init__(self, stream: StreamConfig, settings: Settings, realtime: bool) -> None:
        capture = settings.capture
        self._settings = settings
        self._stream_id = stream.id
        self._realtime = realtime
        self._source = open_source(
            stream.source,
            SourceOptions(
                connect_timeout_s=capture.connect_timeout_s,
                read_timeout_s=capture.read_timeout_s,
                reconnect=ReconnectPolicy(
                    max_attempts=capture.reconnect_max_attempts,
                    base_delay_s=capture.reconnect_base_delay_s,
                    max_delay_s=max(capture.reconnect_max_delay_s, capture.reconnect_base_delay_s),
                ),
            ),
        )

    @property
    def live(self) -> bool:
        return self._source.live

    def run(self, stop: threading.Event, publisher: EventPublisher) -> CaptureReport:
        capture = self._settings.capture
        return CaptureActor(
            stream_id=self._stream_id,
            source=self._source,
            publisher=publisher,
            chunk_samples=capture.chunk_samples(TARGET_SAMPLE_RATE),
            realtime=self._realtime,
            resample_quality=capture.resample_quality,
        ).run(stop)


def capture_source(stream: StreamConfig, settings: Settings, realtime: bool) -> CaptureRun:
    """The runtime's source factory for real audio (files, URLs, microphones)."""
    return CaptureRun(stream, settings, realtime)
