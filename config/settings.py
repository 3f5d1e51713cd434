"""The one settings object: built-in defaults < config file (TOML or YAML) < ``DISTRESS_*`` environment variables.

Every component reads its configuration from here so a site configures the product in one place; the file is
found through ``DISTRESS_CONFIG`` or as ``distress.toml`` / ``distress.yaml`` in the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from events import default_codec
from events.bus import Bus, KafkaConnection
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


class Settings(BaseSettings):
    """Configuration of one distress deployment."""

    model_config = SettingsConfigDict(env_prefix="DISTRESS_", extra="forbid", frozen=True)

    data_dir: Path = Path(".local/state")
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
