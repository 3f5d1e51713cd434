"""Expected failures of `distress` commands run as real processes, and what their report must look like: the
cases, the private world of files, ports and services they point at (module-scoped fixtures a test module imports),
and the check that a failure was reported in one line (tests/cli/test_errors.py, tests/cli/test_error_paths.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile

from config import Settings
from events.kafka.broker import LocalBroker
from tests.conftest import REPO_ROOT, free_port

# Root passes every file-mode check; without these capabilities it is refused like any other user.
NO_FILE_PRIVILEGES = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--")


PARALLEL = 4


INVALID_CONFIG = "[incidents]\ndebounce_hits = 0\n"  # a setting no DISTRESS_* variable of these tests overrides


@dataclass(frozen=True, kw_only=True)
class Case:
    """One failing invocation and what its report must say."""

    args: tuple[str, ...]
    says: tuple[str, ...]  # substrings of the error message
    kind: str  # the JSON error object's kind (checked when --json is given)
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # "setpriv" or "tmpfs": left out where this machine cannot provide it
    unprivileged: bool = False  # run without root's file privileges (permission cases)
    chatter: tuple[str, ...] = ()  # the command's own progress lines on stderr, besides logs and the error

    @property
    def json_output(self) -> bool:
        return "--json" in self.args


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class World:
    """Files, directories, ports and services the cases point at; private to the test module using it."""

    root: Path
    wav: Path
    not_audio: Path
    unreadable: Path
    read_only: Path
    regular_file: Path
    bad_config: Path
    kafka_down: str  # host:port with nothing listening
    postgres_down: str  # a PostgreSQL URL whose port has nothing listening
    busy_port: int
    kafka_up: str  # the session broker
    full_disk: Path | None  # a full tmpfs, where this machine lets us mount one


def base_environment(world: World) -> dict[str, str]:
    """The user's environment without their distress settings, pointed at private directories and ports."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("DISTRESS_")}
    return {
        **kept,
        "PYTHONPATH": str(REPO_ROOT),
        "DISTRESS_DATA_DIR": str(world.root / "data"),
        "DISTRESS_KAFKA_HOME": str(REPO_ROOT / ".local" / "kafka"),
        "DISTRESS_KAFKA_PORT": str(free_port()),
        "DISTRESS_KAFKA_CONTROLLER_PORT": str(free_port()),
    }


def run_case(case: Case, world: World) -> Outcome:
    prefix = NO_FILE_PRIVILEGES if case.unprivileged and os.geteuid() == 0 else ()
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "cli", *case.args],
        cwd=world.root,
        env={**base_environment(world), **case.env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def available_means(world: World) -> set[str]:
    """What this machine lets the permission and disk-full cases use."""
    means = {"tmpfs"} if world.full_disk is not None else set()
    ordinary_user = os.geteuid() != 0  # refused by file modes alone
    if ordinary_user or (shutil.which("setpriv") and subprocess.run([*NO_FILE_PRIVILEGES, "true"]).returncode == 0):
        means.add("setpriv")
    return means


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A 64 KiB tmpfs filled to the last byte, or None where mounting is not allowed."""
    mount_point = tmp_path_factory.mktemp("full")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        yield None
        return
    try:
        filler = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, bytes(4096)):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(filler)
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, kafka_broker: LocalBroker[Settings], full_disk: Path | None
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("errors")
    wav = root / "tone.wav"
    soundfile.write(wav, (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32), 16000)
    not_audio = root / "notes.txt"
    not_audio.write_text("not audio")
    unreadable = root / "secret.wav"
    shutil.copy(wav, unreadable)
    unreadable.chmod(0o000)
    read_only = root / "read-only"
    read_only.mkdir(mode=0o555)
    bad_config = root / "broken.toml"  # not distress.toml: the cases run in root, where that one would be read
    bad_config.write_text(INVALID_CONFIG)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield World(
            root=root,
            wav=wav,
            not_audio=not_audio,
            unreadable=unreadable,
            read_only=read_only,
            regular_file=not_audio,
            bad_config=bad_config,
            kafka_down=f"127.0.0.1:{free_port()}",
            postgres_down=f"postgresql://distress:hunter2@127.0.0.1:{free_port()}/distress",
            busy_port=busy.getsockname()[1],
            kafka_up=kafka_broker.settings.bootstrap_servers,
            full_disk=full_disk,
        )
    read_only.chmod(0o755)


def problems_with(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with how a failure was reported (nothing, when it was reported as documented)."""
    problems = []
    if outcome.returncode != case.code:
        problems.append(f"exit code {outcome.returncode}, expected {case.code}")
    if "Traceback" in outcome.stdout + outcome.stderr:
        problems.append("a traceback")
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    if len(errors) != 1:
        return [*problems, f"{len(errors)} error lines"]
    message = errors[0].removeprefix("error: ")
    problems += [f"the message does not say {text!r}" for text in case.says if text not in message]
    for line in outcome.stderr.splitlines():
        progress = bool(case.chatter) and line.startswith(case.chatter)
        if line != errors[0] and not progress and not is_log_record(line):
            problems.append(f"a raw line on stderr: {line[:200]!r}")
    if case.json_output:
        last = outcome.stdout.strip().splitlines()[-1:] or [""]
        try:
            document = json.loads(last[0])
        except ValueError:
            document = None
        if document != {"error": message, "kind": case.kind}:
            problems.append(f"stdout does not end with the JSON error object: {last[0][:300]!r}")
    return problems


def is_log_record(line: str) -> bool:
    """One of our structured log lines (JSON, the default format), as opposed to a library writing to stderr."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and {"ts", "level", "logger", "msg"} <= set(record)
