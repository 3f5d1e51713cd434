"""Broker lifecycle through the real `distress broker` command: up twice, status, down, up with data kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest

from config import Settings
from events.catalogue import StreamEnded
from events.kafka.broker import BrokerError, LocalBroker
from tests.conftest import REPO_ROOT, broker_settings, free_port
from tests.support.kafka import drain


def distress(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_broker_lifecycle_keeps_data(tmp_path: Path) -> None:
    env = {
        "DISTRESS_DATA_DIR": str(tmp_path),
        "DISTRESS_KAFKA_PORT": str(free_port()),
        "DISTRESS_KAFKA_CONTROLLER_PORT": str(free_port()),
        "DISTRESS_KAFKA_HOME": str(REPO_ROOT / ".local" / "kafka"),
    }
    env.pop("DISTRESS_KAFKA_BOOTSTRAP", None)
    try:
        first = distress(env, "broker", "up", "--json")
        assert first.returncode == 0, first.stderr
        second = distress(env, "broker", "up", "--json")
        assert second.returncode == 0, second.stderr
        assert json.loads(first.stdout)["pid"] == json.loads(second.stdout)["pid"]  # idempotent
        status = json.loads(distress(env, "broker", "status", "--json").stdout)
        assert status["reachable"] and status["managed"]

        settings = broker_settings(
            tmp_path,
            kafka_port=int(env["DISTRESS_KAFKA_PORT"]),
            kafka_controller_port=int(env["DISTRESS_KAFKA_CONTROLLER_PORT"]),
        )
        bus = settings.bus()
        bus.ensure_topics()
        kept = StreamEnded(stream_id="kept", reason="eof", chunks=1, samples=16000)
        with bus.producer() as producer:
            producer.publish(kept)

        assert distress(env, "broker", "down").returncode == 0
        stopped = distress(env, "broker", "status", "--json")
        assert stopped.returncode == 1 and not json.loads(stopped.stdout)["running"]

        assert distress(env, "broker", "up").returncode == 0
        assert bus.ensure_topics() == []  # topics survived
        with bus.producer() as producer:
            consumer = bus.consumer(
                group_id=f"g-{uuid.uuid4()}", topics=[bus.catalogue.streams.name], producer=producer
            )
            received = drain(consumer, 1)
            consumer.close()
        assert [consumed.event for consumed in received] == [kept]
    finally:
        distress(env, "broker", "down")


def test_a_broker_started_in_process_is_reaped_when_stopped(tmp_path: Path) -> None:
    """The test session and `distress demo` start the broker from Python: stopping it must leave no zombie,
    and starting it must not drop a still-running Popen (ResourceWarning)."""
    broker = LocalBroker(broker_settings(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            pid = broker.up().pid
        finally:
            broker.down()
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert [str(warning.message) for warning in caught if warning.category is ResourceWarning] == []


def test_external_cluster_is_used_instead_of_starting_one(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path, kafka_bootstrap="127.0.0.1:9")  # nothing listens on port 9
    broker = LocalBroker(settings)
    with pytest.raises(BrokerError, match="external cluster"):
        broker.up()
    status = broker.status()
    assert not status.managed and not status.reachable and status.bootstrap_servers == "127.0.0.1:9"


def test_missing_jars_and_busy_ports_give_clear_errors(tmp_path: Path, kafka_broker: LocalBroker[Settings]) -> None:
    no_jars = LocalBroker(broker_settings(tmp_path / "a", kafka_home=tmp_path / "nowhere"))
    with pytest.raises(BrokerError, match="make setup"):
        no_jars.up()
    busy = LocalBroker(broker_settings(tmp_path / "b", kafka_port=kafka_broker.settings.kafka_port))
    with pytest.raises(BrokerError, match="already in use"):
        busy.up()
