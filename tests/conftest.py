"""Session-wide real services: a Kafka broker started from the project's own jars on private ports."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config import Settings, load_settings
from config.settings import CONFIG_ENV
from events.kafka.broker import LocalBroker

REPO_ROOT = Path(__file__).resolve().parent.parent
KEPT_ENVIRONMENT = ("DISTRESS_TEST_POSTGRES_URL", "DISTRESS_DEBUG")


def pytest_configure(config: pytest.Config) -> None:
    """The tests never read a user's configuration: not their `DISTRESS_*` variables, nor the `distress.toml` the
    README's tour writes into the working directory. Every test starts from an empty file unless it names its own."""
    for name in [name for name in os.environ if name.startswith("DISTRESS_") and name not in KEPT_ENVIRONMENT]:
        del os.environ[name]
    empty = Path(tempfile.mkdtemp(prefix="distress-tests-")) / "distress.toml"
    empty.write_text("")
    os.environ[CONFIG_ENV] = str(empty)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll until ``condition`` holds: what another thread, process or the broker does takes its own time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def broker_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a private broker: own data dir and ports, never a user's external cluster."""
    defaults: dict[str, object] = {
        "kafka_bootstrap": None,
        "kafka_home": REPO_ROOT / ".local" / "kafka",
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
    }
    return load_settings(data_dir=data_dir, **{**defaults, **overrides})


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker[Settings]]:
    broker = LocalBroker(broker_settings(tmp_path_factory.mktemp("kafka")))
    broker.up()
    yield broker
    broker.down()


@pytest.fixture
def kafka_settings(kafka_broker: LocalBroker[Settings]) -> Settings:
    """The session broker with a unique topic prefix, so every test starts from empty topics."""
    return kafka_broker.settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
