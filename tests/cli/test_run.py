"""`distress run`, `distress status` and `distress demo` end to end: real recordings, the real registered stages,
a real broker and real Ray (in process through Typer's runner, and as a separate process, serving its dashboard,
stopped by Ctrl-C or SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from actors.metrics import EMPTY_SNAPSHOT, StreamSummary
from actors.pipeline import default_stages
from actors.runtime.driver import RunSummary
from cli.errors import EXIT_PARTLY_READ
from cli.main import app
from cli.run import exit_code, linked_to_dashboard, stream_warnings
from config import Settings, load_settings
from config.alerting import AlertingConfig
from events.kafka.broker import LocalBroker
from frontend.server import DashboardServer
from tests.conftest import REPO_ROOT
from tests.support.cut_off import DECLARED_S, PRESENT_S, cut_off_wav, whole_wav
from tests.support.toy_pipeline import local_ray


@pytest.fixture
def env(kafka_broker: LocalBroker[Settings], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing `distress` at the session broker, with this test's own topics."""
    settings = kafka_broker.settings
    values = {
        "DISTRESS_DATA_DIR": str(settings.data_dir),
        "DISTRESS_KAFKA_HOME": str(settings.kafka_home),
        "DISTRESS_KAFKA_PORT": str(settings.kafka_port),
        "DISTRESS_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "DISTRESS_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        "DISTRESS_TOPIC_PARTITIONS": "1",
        "DISTRESS_LOG_JSON": "false",
        "DISTRESS_RUNTIME": json.dumps({"metrics_port": 0, "caught_up_poll_s": 0.5}),
        "DISTRESS_DASHBOARD": json.dumps({"port": 0}),
    }
    monkeypatch.delenv("DISTRESS_KAFKA_BOOTSTRAP", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def recording(folder: Path, name: str, seconds: float) -> Path:
    path = folder / name
    rng = np.random.default_rng(7)
    soundfile.write(path, (rng.standard_normal(int(seconds * 16_000)) * 0.01).astype(np.float32), 16_000)
    return path


def test_until_eof_processes_recordings_through_every_stage_and_reports(env: dict[str, str], tmp_path: Path) -> None:
    local_ray()
    first, second = recording(tmp_path, "lobby.wav", 3.0), recording(tmp_path, "yard.flac", 1.5)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt nothing useful")
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--source",
            str(first),
            "--source",
            str(second),
            "--source",
            str(corrupt),
            "--until-eof",
            "--json",
            "--no-dashboard",
        ],
    )
    assert result.exit_code == 2, result.output  # a recording failed; the others still ran to their end
    assert "dashboard:" not in result.stderr
    summary = json.loads(result.stdout)
    streams = {stream["id"]: stream for stream in summary["streams"]}
    assert (streams["lobby"]["state"], streams["lobby"]["chunks"]) == ("ended", 3)
    assert (streams["yard"]["state"], streams["yard"]["chunks"]) == ("ended", 2)
    assert (streams["lobby"]["warnings"], streams["lobby"]["audio_seconds"]) == ([], 3.0)  # all of it was heard
    assert (streams["yard"]["warnings"], streams["yard"]["audio_seconds"]) == ([], 1.5)
    assert (streams["corrupt"]["warnings"], streams["corrupt"]["audio_seconds"]) == ([], 0.0)
    assert streams["corrupt"]["state"] == "failed" and "corrupt.wav" in streams["corrupt"]["reason"]
    assert streams["corrupt"]["source"] == str(corrupt)  # it failed before it started: the source it was given
    assert summary["chunks"] == 5
    assert summary["incidents"] == [] and summary["alerts_sent"] == 0  # quiet noise: nothing to report
    assert summary["stages"] == {spec.name: 1 for spec in default_stages(load_settings())}
    assert summary["latency"]["features"]["count"] == 5
    assert 0 <= summary["latency"]["features"]["p50_s"] <= summary["latency"]["features"]["p95_s"]

    status = CliRunner().invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    stages = {stage["stage"]: stage for stage in report["stages"]}
    assert set(stages) == {spec.name for spec in default_stages(load_settings())}
    assert all(stage["lag"] == 0 and stage["consumers"] in (0, None) for stage in stages.values())  # done, stopped
    assert stages["features"]["group_id"] == f"{env['DISTRESS_TOPIC_PREFIX']}distress.features"
    assert report["latency"]["features"]["count"] == 5
    assert {stream["id"] for stream in report["streams"]} == {"lobby", "yard", "corrupt"}


def test_a_cut_off_recording_is_reported_as_partly_read_with_exit_code_3(env: dict[str, str], tmp_path: Path) -> None:
    local_ray()
    cut, whole = cut_off_wav(tmp_path / "cut.wav"), whole_wav(tmp_path / "whole.wav", 2.0)
    result = CliRunner().invoke(
        app, ["run", "--source", str(cut), "--source", str(whole), "--until-eof", "--json", "--no-dashboard"]
    )
    assert result.exit_code == EXIT_PARTLY_READ, result.output  # answered, but not for all of the recording
    streams = {stream["id"]: stream for stream in json.loads(result.stdout)["streams"]}
    assert (streams["cut"]["state"], streams["cut"]["audio_seconds"]) == ("ended", PRESENT_S)
    (warning,) = streams["cut"]["warnings"]
    assert f"{DECLARED_S - PRESENT_S:.1f} s never heard" in warning
    assert (streams["whole"]["warnings"], streams["whole"]["audio_seconds"]) == ([], 2.0)
    assert f"warning: stream cut: {warning}" in result.stderr.splitlines()


def summary_of(*streams: tuple[str, str]) -> RunSummary:
    """A run summary with streams of these (state, reason)."""
    snapshot = replace(
        EMPTY_SNAPSHOT,
        streams=tuple(
            StreamSummary(id=f"s{index}", source="a.wav", state=state, reason=reason, chunks=1)
            for index, (state, reason) in enumerate(streams)
        ),
    )
    return RunSummary(snapshot=snapshot, elapsed_s=1.0, stages={})


def test_the_exit_code_says_whether_every_recording_was_read_whole() -> None:
    partly = ("ended", "eof; input only partly read: only 31.0 s of the 120.0 s the file declares could be decoded")
    assert exit_code(summary_of(("ended", "eof"), ("ended", "stopped"))) == 0
    assert exit_code(summary_of(("ended", "eof"), partly)) == EXIT_PARTLY_READ
    assert exit_code(summary_of(partly, ("failed", "a.wav: no such file"))) == 2  # a failure outranks it
    assert stream_warnings(summary_of(partly).snapshot.streams[0]) == [
        "only 31.0 s of the 120.0 s the file declares could be decoded"
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run"], "no streams"),
        (["run", "--source", "-"], "stdin"),
        (["run", "--source", "a.wav", "--stream-id", "x", "--stream-id", "y"], "--stream-id"),
        (["run", "--source", "a.wav", "--stream-id", "configured"], "used twice"),
        (["run", "--source", "a.wav", "--until-eof", "--timeout", "0"], "--timeout"),
        (["status", "--window", "-5"], "--window"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    env: dict[str, str], arguments: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTRESS_STREAMS", json.dumps([{"id": "configured", "source": "camera.wav"}]))
    if arguments == ["run"]:
        monkeypatch.delenv("DISTRESS_STREAMS")
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert message in result.stderr


def test_status_without_a_reachable_broker_exits_1(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTRESS_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:9" in result.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_running_pipeline_and_its_dashboard_cleanly(
    env: dict[str, str], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    long_recording = recording(tmp_path, "long.wav", 120.0)
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "--source", str(long_recording), "--realtime", "--json"],
            cwd=REPO_ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not chunks_published(env):
                time.sleep(1.0)
            assert chunks_published(env), "the pipeline never captured audio"
            (sign_in,) = re.findall(r"^dashboard: (http://\S+)$", log.read_text(), flags=re.MULTILINE)
            with urllib.request.urlopen(sign_in.split("login")[0] + "api/health", timeout=30) as response:
                assert json.loads(response.read())["status"] == "ok"  # served while the pipeline runs
            process.send_signal(stop_signal)
            stdout, _ = process.communicate(timeout=180)
        finally:
            process.kill()
    assert process.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(stdout)  # stdout holds the summary and nothing else
    (stream,) = summary["streams"]
    assert stream["state"] == "ended" and stream["reason"] == "stopped" and 0 < stream["chunks"] < 120
    status = CliRunner().invoke(app, ["status", "--json"])
    # Every stage committed all it was given and left its group: a next run starts after it, repeating nothing.
    assert all(stage["lag"] == 0 and stage["consumers"] in (0, None) for stage in json.loads(status.stdout)["stages"])


def chunks_published(env: dict[str, str]) -> bool:
    status = CliRunner().invoke(app, ["status", "--json", "--window", "600"])
    return status.exit_code == 0 and json.loads(status.stdout)["latency"].get("features", {}).get("count", 0) >= 2


def test_alerts_link_to_the_dashboard_the_run_serves_unless_a_link_is_configured(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    configured = Settings(data_dir=tmp_path, alerting=AlertingConfig(dashboard_url="https://ops.example/distress"))
    with DashboardServer(settings, port=0) as server:
        served = linked_to_dashboard(settings, server).alerting.dashboard_url
        assert served == server.url.rstrip("/") and served != settings.alerting.dashboard_url
        assert linked_to_dashboard(configured, server).alerting.dashboard_url == "https://ops.example/distress"
