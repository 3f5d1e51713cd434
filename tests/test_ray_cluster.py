"""The real cluster launcher on this machine: sshd on loopback (tools/prepare_ssh.sh), `ray up -y
ray_cluster.yaml`, a short pipeline through `distress run --address auto`, then `ray down -y`.

`ray up`/`ray down` run `ray stop`, which ends every Ray instance of this user on the machine, so the session's
in-process Ray is shut down first (later tests start a new one when they need it). In CI (``CI`` set) a machine
that cannot be prepared fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import ray
import soundfile

from config import Settings
from events.kafka.broker import LocalBroker
from tests.conftest import REPO_ROOT

RAY = str(REPO_ROOT / ".venv" / "bin" / "ray")


def run(
    command: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.slow
def test_ray_up_runs_the_pipeline_on_the_launched_cluster_and_ray_down_removes_it(
    kafka_broker: LocalBroker[Settings], tmp_path: Path
) -> None:
    prepared = run(["bash", "tools/prepare_ssh.sh"], timeout_s=120)
    if prepared.returncode != 0:
        reason = f"cannot prepare SSH to 127.0.0.1: {prepared.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    ray.shutdown()
    up = run([RAY, "up", "-y", "ray_cluster.yaml"])
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        recording = tmp_path / "hall.wav"
        soundfile.write(recording, np.zeros(32_000, dtype=np.float32), 16_000)
        settings = kafka_broker.settings
        env = {
            "DISTRESS_DATA_DIR": str(settings.data_dir),
            "DISTRESS_KAFKA_HOME": str(settings.kafka_home),
            "DISTRESS_KAFKA_PORT": str(settings.kafka_port),
            "DISTRESS_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
            "DISTRESS_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
            "DISTRESS_TOPIC_PARTITIONS": "1",
            "DISTRESS_LOG_JSON": "false",
            "DISTRESS_RUNTIME": json.dumps({"metrics_port": 0}),
        }
        # From outside the checkout: the actors' code comes from the cluster's environment, not the driver's cwd.
        result = run(
            [
                sys.executable,
                "-m",
                "cli",
                "run",
                "--address",
                "auto",
                "--source",
                str(recording),
                "--until-eof",
                "--json",
            ],
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Connected to Ray cluster" in result.stderr and "Started a local Ray instance" not in result.stderr
        assert result.stdout.startswith("{"), result.stdout[:3000]
        summary = json.loads(result.stdout)
        assert [(stream["id"], stream["state"], stream["chunks"]) for stream in summary["streams"]] == [
            ("hall", "ended", 2)
        ]
        assert summary["latency"]["features"]["count"] == 2
    finally:
        down = run([RAY, "down", "-y", "ray_cluster.yaml"])
    assert down.returncode == 0, down.stderr[-3000:]
    status = run([RAY, "status", "--address", "127.0.0.1:6379"], env={"RAY_AUTH_MODE": "token"}, timeout_s=120)
    assert status.returncode != 0  # nothing answers any more
