"""`distress dashboard`: serving with a one-time sign-in link, bad arguments, and the account helpers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from config import Settings
from frontend.auth import token_digest, verify_password
from tests.conftest import REPO_ROOT

runner = CliRunner()


def test_new_token_prints_the_token_once_and_only_its_digest_for_the_config() -> None:
    result = runner.invoke(app, ["dashboard", "new-token", "--name", "night shift", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["entry"] == {"name": "night shift", "token_sha256": token_digest(printed["token"])}
    toml = runner.invoke(app, ["dashboard", "new-token", "--name", "cron"])
    assert toml.exit_code == 0 and '[[dashboard.tokens]]\nname = "cron"\ntoken_sha256 = "' in toml.stdout


def test_hash_password_asks_twice_and_prints_a_users_entry() -> None:
    result = runner.invoke(
        app, ["dashboard", "hash-password", "--name", "bob", "--json"], input="tr0ub4dor\ntr0ub4dor\n"
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout.strip().splitlines()[-1])
    assert entry["name"] == "bob" and verify_password("tr0ub4dor", entry["password_hash"])
    assert "tr0ub4dor" not in result.stdout.strip().splitlines()[-1]


def test_bad_names_and_ports_exit_with_2() -> None:
    for arguments in (
        ["dashboard", "new-token", "--name", "system"],
        ["dashboard", "new-token", "--name", "a\nb"],
        ["dashboard", "hash-password", "--name", "-bob"],
        ["dashboard", "--port", "70000"],
    ):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, (arguments, result.output)


def test_a_busy_port_exits_with_1_and_says_so(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = runner.invoke(
            app,
            ["dashboard", "--host", "127.0.0.1", "--port", str(port)],
            env={"DISTRESS_DATA_DIR": str(tmp_path), "DISTRESS_LOG_JSON": "false"},
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_without_accounts_the_dashboard_prints_a_one_time_sign_in_link(
    dashboard_settings: Settings, tmp_path: Path
) -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DISTRESS_DATA_DIR": str(tmp_path / "state"),
        "DISTRESS_KAFKA_BOOTSTRAP": dashboard_settings.bootstrap_servers,
        "DISTRESS_TOPIC_PREFIX": dashboard_settings.topic_prefix,
        "DISTRESS_LOG_JSON": "false",
        "DISTRESS_DASHBOARD": json.dumps({"run_projectors": False}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "dashboard", "--host", "127.0.0.1", "--port", "0"],
        cwd=tmp_path,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        link = ""
        deadline = time.monotonic() + 120
        while not link and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the dashboard exited"
            link = line.strip() if "/login#token=" in line else ""
        base, token = link.split("login#token=")
        request = urllib.request.Request(
            f"{base}api/session",
            data=json.dumps({"token": token}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    session = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.2)
        assert session["operator"] == "operator" and session["via"] == "link"  # once: tests/security/test_4_link.py
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
