"""`distress demo` (what `make run` plays) as a user runs it: it starts its own broker, reaches its incident and
alert, and leaves nothing running behind it, whether it ends by itself or by Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from config import Settings
from events.kafka.broker import LocalBroker
from tests.conftest import REPO_ROOT, broker_settings, wait_for


def demo_environment(settings: Settings) -> dict[str, str]:
    """A private data directory and broker ports: the demo must start (and stop) a broker of its own."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DISTRESS_DATA_DIR": str(settings.data_dir),
        "DISTRESS_KAFKA_HOME": str(settings.kafka_home),
        "DISTRESS_KAFKA_PORT": str(settings.kafka_port),
        "DISTRESS_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "DISTRESS_TOPIC_PARTITIONS": "1",
        "DISTRESS_RUNTIME": json.dumps({"metrics_port": 0, "caught_up_poll_s": 0.5}),
        "DISTRESS_DASHBOARD": json.dumps({"port": 0}),
    }


def test_the_demo_reaches_its_incident_and_alert_then_stops_the_broker_it_started(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path / "data")
    played = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--fast", "--json"],
        cwd=REPO_ROOT,
        env=demo_environment(settings),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert played.returncode == 0, played.stderr[-3000:]
    summary = json.loads(played.stdout)
    assert summary["incidents"] and summary["alerts_sent"] >= 1, summary
    assert "INCIDENT" in played.stderr and "ALERT" in played.stderr
    assert "stopped the local Kafka broker the demo started" in played.stderr
    assert not LocalBroker(settings).status().running


def interrupt_once_playing(settings: Settings, log: Path) -> str:
    """Start the demo, press Ctrl-C once it serves its dashboard (the broker is up by then); its stderr."""
    with log.open("w") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "cli", "demo"],
            cwd=REPO_ROOT,
            env=demo_environment(settings),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        try:
            wait_for(lambda: "dashboard:" in log.read_text(), timeout_s=600, what="the demo to start playing")
            assert LocalBroker(settings).status().running
            time.sleep(2.0)  # a moment of audio through the pipeline
            demo.send_signal(signal.SIGINT)
            demo.wait(timeout=300)
        finally:
            demo.kill()
    return log.read_text()


def test_ctrl_c_stops_the_demo_and_the_broker_it_started(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path / "data")
    try:
        stderr = interrupt_once_playing(settings, tmp_path / "stderr.log")
    finally:
        stopped_here = LocalBroker(settings).down()
    assert "stopped the local Kafka broker the demo started" in stderr, stderr[-3000:]
    assert not stopped_here


def test_a_broker_the_user_already_runs_outlives_the_demo(tmp_path: Path) -> None:
    settings = broker_settings(tmp_path / "data")
    broker = LocalBroker(settings)
    broker.up()
    try:
        stderr = interrupt_once_playing(settings, tmp_path / "stderr.log")
        assert "stopped the local Kafka broker" not in stderr
        assert broker.status().running
    finally:
        broker.down()
