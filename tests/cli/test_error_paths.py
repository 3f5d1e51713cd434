"""More of `distress`'s expected failures, as real processes: the error paths tests/cli/test_errors.py walks only
through an invalid configuration. Each one ends with a non-zero exit code, exactly one ``error:`` line on stderr
naming what was wrong, no traceback and, under ``--json``, a JSON error object as the last line of stdout (the
checks, helpers and private world of tests/support/cli_errors.py, reused).

Also: `distress run` joining a Ray cluster that is not there fails within seconds (Ray itself retried for minutes,
printing its C++ log lines); `distress run` that started its own broker says that it keeps running and how to stop
it; a reader closing stdout early is no error; `dashboard hash-password` reads a piped password without warnings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import EXIT_BROKEN_PIPE
from events.kafka.broker import LocalBroker
from frontend.auth import verify_password
from tests.conftest import broker_settings, free_port
from tests.support import cli_errors as errors
from tests.support.cli_errors import Case, Outcome, World, base_environment, full_disk, problems_with, world

__all__ = ["full_disk", "world"]  # module-scoped fixtures of tests.support.cli_errors: this module's own world

INCIDENT = "lobby:000000000001"
KEEPS_RUNNING = "started the local Kafka broker; it keeps running after this run (`distress broker down` stops it)"
RUN_SECONDS = 120.0  # `distress run` on an unreachable Ray cluster: imports and a refused connection, not minutes


@dataclass(frozen=True)
class OwnBroker:
    """Ports and a data directory for a broker that `distress run` starts itself (and this module stops)."""

    data_dir: Path
    port: int
    controller_port: int

    def env(self) -> dict[str, str]:
        return {
            "DISTRESS_DATA_DIR": str(self.data_dir),
            "DISTRESS_KAFKA_PORT": str(self.port),
            "DISTRESS_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }

    def stop(self) -> None:
        LocalBroker(
            broker_settings(self.data_dir, kafka_port=self.port, kafka_controller_port=self.controller_port)
        ).down()


def missing(world: World) -> Path:
    return world.root / "missing.wav"


def db_down(world: World) -> tuple[dict[str, str], tuple[str, str]]:
    """The environment pointing at a PostgreSQL that is down, and what its error must name."""
    port = world.postgres_down.rsplit(":", 1)[1].split("/")[0]
    return {"DISTRESS_DATABASE_URL": world.postgres_down}, ("127.0.0.1", port)


def kafka_up(world: World) -> dict[str, str]:
    return {"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_up}


def run_args(world: World, address: str) -> tuple[str, ...]:
    return ("run", "--address", address, "--source", str(world.wav), "--until-eof", "--no-dashboard", "--json")


CASES: dict[str, Callable[[World, OwnBroker], Case]] = {
    # -- detect: each file that cannot be read is an error line of its own (its JSON line says so too: below)
    "detect, missing file": lambda world, _: Case(
        args=("detect", str(missing(world)), "--no-asr"),
        says=(str(missing(world)), "no such file"),
        kind="source",
        code=2,
    ),
    # -- incidents: the database or the broker down
    "incidents show, database down": lambda world, _: Case(
        args=("incidents", "show", INCIDENT, "--json"), says=db_down(world)[1], kind="database", env=db_down(world)[0]
    ),
    "incidents show, broker down (it reads only the database)": lambda world, _: Case(
        args=("incidents", "show", INCIDENT, "--json"),
        says=(f"unknown incident '{INCIDENT}'",),
        kind="usage",
        code=2,
        env={"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_down},
    ),
    "incidents note, broker down": lambda world, _: Case(
        args=("incidents", "note", INCIDENT, "checked the camera", "--json"),
        says=(f"cannot reach Kafka at {world.kafka_down}",),
        kind="broker",
        env={"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_down},
    ),
    # -- dashboard commands on a database they cannot use
    "dashboard rotate-key, database down": lambda world, _: Case(
        args=("dashboard", "rotate-key"), says=db_down(world)[1], kind="database", env=db_down(world)[0]
    ),
    "dashboard rotate-key, database under a file": lambda world, _: Case(
        args=("dashboard", "rotate-key"),
        says=(str(world.regular_file), "not a directory"),
        kind="input",
        env={"DISTRESS_DATABASE_URL": f"sqlite:///{world.regular_file}/distress.db"},
    ),
    "dashboard sign-in-link, database down": lambda world, _: Case(
        args=("dashboard", "sign-in-link", "--json"), says=db_down(world)[1], kind="database", env=db_down(world)[0]
    ),
    "dashboard sign-in-link, unsupported database": lambda world, _: Case(
        args=("dashboard", "sign-in-link", "--json"),
        says=("unsupported database 'mysql'",),
        kind="database",
        env={"DISTRESS_DATABASE_URL": "mysql://h/db"},
    ),
    # -- dashboard hash-password without a terminal and nothing on stdin
    "dashboard hash-password, no password on stdin": lambda world, _: Case(
        args=("dashboard", "hash-password", "--name", "bob", "--json"), says=("no password",), kind="usage", code=2
    ),
    # -- models: a checkpoint that is not there
    "models evaluate, missing checkpoint": lambda world, _: Case(
        args=("models", "evaluate", "--checkpoint", str(missing(world)), "--json"),
        says=(f"no checkpoint at {missing(world)}",),
        kind="model",
    ),
    "models evaluate-head, missing checkpoint": lambda world, _: Case(
        args=("models", "evaluate-head", "--checkpoint", str(missing(world)), "--json"),
        says=(f"no head checkpoint at {missing(world)}",),
        kind="model",
    ),
    # -- run: a Ray cluster that is not there (Kafka is up), or an address that is none
    "run, Ray cluster unreachable": lambda world, _: Case(
        args=run_args(world, "127.0.0.1:1"),
        says=("cannot reach the Ray cluster at 127.0.0.1:1", "connection refused"),
        kind="runtime",
        env=kafka_up(world),
    ),
    "run, Ray address unparsable": lambda world, _: Case(
        args=run_args(world, "no address"),
        says=("cannot use the Ray cluster address 'no address'",),
        kind="runtime",
        env=kafka_up(world),
    ),
    # -- run with a broker it started: one line says the broker keeps running, then the run's own failure
    "run, own broker started, Ray cluster unreachable": lambda world, own: Case(
        args=run_args(world, "127.0.0.1:1"),
        says=("cannot reach the Ray cluster at 127.0.0.1:1",),
        kind="runtime",
        env=own.env(),
        chatter=(KEEPS_RUNNING,),
    ),
}


def run_case(case: Case, world: World) -> Outcome:
    """cli_errors.run_case, with a command that hangs reported as such rather than failing every other case."""
    try:
        return errors.run_case(case, world)
    except subprocess.TimeoutExpired as expired:
        output = [text.decode() if isinstance(text, bytes) else text or "" for text in (expired.stdout, expired.stderr)]
        return Outcome(-1, output[0], output[1] + "\n(timed out)", expired.timeout)


@pytest.fixture(scope="module")
def own_broker(world: World) -> Iterator[OwnBroker]:
    own = OwnBroker(world.root / "own-broker", free_port(), free_port())
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="module")
def outcomes(world: World, own_broker: OwnBroker) -> dict[str, tuple[Case, Outcome]]:
    """Every case run once, in parallel."""
    cases = {name: build(world, own_broker) for name, build in CASES.items()}
    with ThreadPoolExecutor(errors.PARALLEL) as pool:
        results = dict(zip(cases, pool.map(lambda case: run_case(case, world), cases.values()), strict=True))
    return {name: (cases[name], outcome) for name, outcome in results.items()}


@pytest.mark.parametrize("name", CASES)
def test_the_failure_is_reported_in_one_line(name: str, outcomes: dict[str, tuple[Case, Outcome]]) -> None:
    case, outcome = outcomes[name]
    problems = problems_with(case, outcome)
    assert not problems, f"{problems}\n  stdout: {outcome.stdout[-600:]!r}\n  stderr: {outcome.stderr[-1500:]!r}"


def test_run_gives_up_on_an_unreachable_ray_cluster_within_seconds(outcomes: dict[str, tuple[Case, Outcome]]) -> None:
    for name in ("run, Ray cluster unreachable", "run, own broker started, Ray cluster unreachable"):
        _, outcome = outcomes[name]
        assert outcome.seconds < RUN_SECONDS, (name, outcome.seconds)
        assert "GCS" not in outcome.stderr, outcome.stderr[-1500:]


def test_run_says_that_the_broker_it_started_keeps_running(
    outcomes: dict[str, tuple[Case, Outcome]], own_broker: OwnBroker, world: World
) -> None:
    """The line `distress run` prints when it started the local broker, and the command it names stops it."""
    _, outcome = outcomes["run, own broker started, Ray cluster unreachable"]
    assert outcome.stderr.splitlines().count(KEEPS_RUNNING) == 1, outcome.stderr[-1500:]
    stopped = subprocess.run(
        [sys.executable, "-m", "cli", "broker", "down"],
        env={**base_environment(world), **own_broker.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (stopped.returncode, stopped.stdout.strip()) == (0, "broker stopped"), stopped.stderr


def test_detect_names_each_unreadable_file_on_stderr_and_in_its_json_line(world: World) -> None:
    gone = missing(world)
    outcome = run_case(Case(args=("detect", str(world.wav), str(gone), "--no-asr", "--json"), says=(), kind=""), world)
    assert outcome.returncode == 2, outcome.stderr[-1500:]
    assert "Traceback" not in outcome.stdout + outcome.stderr
    error_lines = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(gone) in error_lines[0] and "no such file" in error_lines[0], error_lines
    assert all(line in error_lines or errors.is_log_record(line) for line in outcome.stderr.splitlines())
    lines = {Path(document["path"]).name: document for document in map(json.loads, outcome.stdout.splitlines())}
    assert set(lines) == {world.wav.name, gone.name}
    assert "no such file" in lines[gone.name]["error"] and "distress" in lines[world.wav.name]


def test_broker_status_with_nothing_listening_answers_down_without_a_traceback(world: World) -> None:
    """`broker status` answers the question (down) as its status, exit code 1; it is not a failure to report."""
    for args in (("broker", "status", "--json"), ("broker", "status")):
        outcome = run_case(Case(args=args, says=(), kind=""), world)
        assert outcome.returncode == 1, outcome.stderr
        assert "Traceback" not in outcome.stdout + outcome.stderr
        assert all(errors.is_log_record(line) for line in outcome.stderr.splitlines()), outcome.stderr
        if "--json" in args:
            status = json.loads(outcome.stdout)
            assert (status["running"], status["reachable"]) == (False, False)
        else:
            assert outcome.stdout.startswith("broker down at 127.0.0.1:")


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_a_reader_closing_stdout_early_ends_the_command_quietly(world: World, json_output: bool) -> None:
    """`distress ... | head -1`: stdout's reader has gone; the command stops without an error (exit 141, as if
    killed by SIGPIPE), and says nothing about it."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the command's stdout fails: EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "dashboard", "new-token", "--name", "cron", *(["--json"] * json_output)],
            cwd=world.root,
            env=base_environment(world),
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert not [line for line in done.stderr.splitlines() if not line.startswith("token (shown once): ")], done.stderr


def test_hash_password_reads_a_piped_password_without_warnings(world: World) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "dashboard", "hash-password", "--name", "bob", "--json"],
        cwd=world.root,
        env=base_environment(world),
        input="tr0ub4dor\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    entry = json.loads(done.stdout)
    assert entry["name"] == "bob" and "tr0ub4dor" not in done.stdout
    assert verify_password("tr0ub4dor", entry["password_hash"])
