"""Every `distress` subcommand's expected failures: a missing file, a directory given as a file, a bad config file
or environment value, Kafka or the database unreachable, a bad alert URL, permission denied, a full disk and a
busy port. Each ends with a non-zero exit code, exactly one ``error:`` line on stderr naming what was wrong (any
other stderr line is a structured log record or the command's own progress line, never a library's raw output),
no traceback, and under ``--json`` a JSON error object as the last line of stdout.

The failure paths run as real processes, in parallel (they mostly wait: on imports, on a refused connection).
Every subcommand, including one added later, is also walked with an invalid configuration, in-process: that path
is the same for all of them, and starting torch or Ray thirty times over would make this module slow.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from typer._click import Command
from typer.core import TyperGroup
from typer.testing import CliRunner

from cli.errors import EXIT_PARTLY_READ
from cli.main import SUBCOMMANDS, app
from tests.support.cli_errors import (
    INVALID_CONFIG,
    PARALLEL,
    Case,
    Outcome,
    World,
    available_means,
    full_disk,
    problems_with,
    run_case,
    world,
)

__all__ = ["full_disk", "world"]  # module-scoped fixtures of tests.support.cli_errors, used here


def leaf_commands() -> dict[str, Command]:
    """Every runnable command by its words (``incidents ack``; ``dashboard`` itself runs too)."""
    found: dict[str, Command] = {}

    def walk(command: Command, words: str) -> None:
        if isinstance(command, TyperGroup):
            if command.invoke_without_command:
                found[words] = command
            for name, sub in command.commands.items():
                walk(sub, f"{words} {name}")
        else:
            found[words] = command

    for name, subcommand in SUBCOMMANDS.items():
        walk(subcommand.load(name), name)
    return found


def with_required_arguments(words: str, command: Command) -> list[str]:
    """The command line of ``command`` with a placeholder for each required argument, and --json if it has one."""
    args = words.split()
    for parameter in command.params:
        if parameter.required:
            args += [parameter.opts[0], "x"] if parameter.opts[0].startswith("-") else ["x"]
    if any("--json" in parameter.opts for parameter in command.params):
        args.append("--json")
    return args


def specific_cases(world: World) -> dict[str, Case]:
    down = {"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_down}
    reach = ("cannot reach Kafka at " + world.kafka_down,)
    no_db = {"DISTRESS_DATABASE_URL": world.postgres_down}
    db_port = world.postgres_down.rsplit(":", 1)[1].split("/")[0]
    up = {"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_up, "DISTRESS_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}."}
    full = {"DISTRESS_DATA_DIR": str(world.full_disk / "data")} if world.full_disk else {}
    missing = world.root / "missing.wav"
    return {
        # -- Kafka unreachable: operator commands say so within seconds
        "status, broker down": Case(args=("status", "--json"), says=reach, kind="broker", env=down),
        "capture, broker down": Case(args=("capture", str(world.wav), "--json"), says=reach, kind="broker", env=down),
        "incidents ack, broker down": Case(
            args=("incidents", "ack", "lobby:000000000001", "--json"), says=reach, kind="broker", env=down
        ),
        "replay --verify, broker down": Case(
            args=("replay", "--verify", "--json"), says=reach, kind="broker", env=down
        ),
        "project, broker down": Case(
            args=("project", "--until-caught-up", "--json"), says=reach, kind="broker", env=down
        ),
        "alerts run, broker down": Case(args=("alerts", "run"), says=reach, kind="broker", env=down),
        "run, broker down": Case(
            args=("run", "--source", str(world.wav), "--until-eof", "--no-dashboard", "--json"),
            says=reach,
            kind="broker",
            env=down,
        ),
        "bench streams, broker down": Case(
            args=("bench", "streams", "--quick", "--json"),
            says=(f"Kafka is not reachable at {world.kafka_down}",),
            kind="runtime",
            env=down,
        ),
        # -- the database unreachable or unusable
        "incidents list, database down": Case(
            args=("incidents", "list", "--json"), says=("127.0.0.1", db_port), kind="database", env=no_db
        ),
        "streams, database down": Case(
            args=("streams", "--json"), says=("127.0.0.1", db_port), kind="database", env=no_db
        ),
        "alerts list, unsupported database": Case(
            args=("alerts", "list", "--json"),
            says=("unsupported database 'mysql'",),
            kind="database",
            env={"DISTRESS_DATABASE_URL": "mysql://h/db"},
        ),
        "replay, database down": Case(
            args=("replay", "--json"), says=("127.0.0.1", db_port), kind="database", env={**up, **no_db}
        ),
        "project, database under a file": Case(
            args=("project", "--until-caught-up", "--json"),
            says=(str(world.regular_file), "not a directory"),
            kind="input",
            env={**up, "DISTRESS_DATABASE_URL": f"sqlite:///{world.regular_file}/distress.db"},
        ),
        "dashboard, database down": Case(
            args=("dashboard", "--port", "0"), says=("127.0.0.1", db_port), kind="database", env=no_db
        ),
        # -- missing files, directories and other input that is not what was asked for
        "features, missing file": Case(
            args=("features", str(missing), "--json"),
            says=(f"cannot read {missing}: no such file",),
            kind="not_found",
            code=2,
        ),
        "features, directory": Case(
            args=("features", str(world.root), "--json"),
            kind="input",
            code=2,
            says=(f"cannot read {world.root}: is a directory, not an audio file",),
        ),
        # capture reports each stream (with --json, as its JSON report): a failed one is an error line of its own
        "capture, missing file": Case(
            args=("capture", str(missing)), says=(str(missing), "no such file"), kind="source", code=2, env=up
        ),
        "models info, missing checkpoint": Case(
            args=("models", "info", "--checkpoint", str(missing), "--json"),
            says=(f"no checkpoint at {missing}",),
            kind="model",
        ),
        # -- configuration
        "incidents list, missing config file": Case(
            args=("incidents", "list"),
            says=("DISTRESS_CONFIG", "no such file"),
            kind="config",
            code=2,
            env={"DISTRESS_CONFIG": str(world.root / "missing.toml")},
        ),
        "features, bad environment value": Case(
            args=("features", str(world.wav), "--json"),
            says=("log_level",),
            kind="config",
            code=2,
            env={"DISTRESS_LOG_LEVEL": "LOUD"},
        ),
        # -- alert channels
        "alerts test, bad URL": Case(
            args=("alerts", "test", "--url", "nosuch://user:hunter2@example.org/x", "--json"),
            says=("Apprise does not accept the URL nosuch://",),
            kind="alerting",
            code=2,
        ),
        # -- permission denied
        "features, unreadable file": Case(
            args=("features", str(world.unreadable), "--json"),
            says=(f"cannot read {world.unreadable}: permission denied",),
            kind="permission",
            code=2,
            needs="setpriv",
            unprivileged=True,
        ),
        "incidents list, read-only data directory": Case(
            args=("incidents", "list", "--json"),
            says=(str(world.read_only), "permission denied"),
            kind="permission",
            env={"DISTRESS_DATA_DIR": str(world.read_only)},
            needs="setpriv",
            unprivileged=True,
        ),
        "broker up, read-only data directory": Case(
            args=("broker", "up", "--json"),
            says=(str(world.read_only / "sub"), "permission denied"),
            kind="permission",
            env={"DISTRESS_DATA_DIR": str(world.read_only / "sub")},
            needs="setpriv",
            unprivileged=True,
        ),
        # -- disk full
        "broker up, disk full": Case(
            args=("broker", "up", "--json"),
            says=("no space left on device",),
            kind="disk_full",
            env=full,
            needs="tmpfs",
        ),
        "streams, disk full": Case(
            args=("streams", "--json"), says=("database or disk is full",), kind="disk_full", env=full, needs="tmpfs"
        ),
        "demo, disk full": Case(
            args=("demo", "--json"),
            says=("could not generate the demo recording",),
            kind="runtime",
            env=full,
            needs="tmpfs",
            chatter=("generating the demo recording",),
        ),
        # -- busy ports
        "broker up, busy port": Case(
            args=("broker", "up", "--json"),
            says=(f"port {world.busy_port}", "already in use"),
            kind="broker",
            env={"DISTRESS_KAFKA_PORT": str(world.busy_port)},
        ),
        "run, busy broker port": Case(
            args=("run", "--source", str(world.wav), "--until-eof", "--no-dashboard", "--json"),
            says=(f"port {world.busy_port}", "already in use"),
            kind="broker",
            env={"DISTRESS_KAFKA_PORT": str(world.busy_port)},
        ),
        "dashboard, busy port": Case(
            args=("dashboard", "--port", str(world.busy_port)),
            says=(f"cannot listen on 127.0.0.1:{world.busy_port}", "address already in use"),
            kind="address_in_use",
        ),
    }


@pytest.fixture(scope="module")
def outcomes(world: World) -> dict[str, tuple[Case, Outcome]]:
    """Every case run once, in parallel."""
    means = available_means(world)
    cases = {name: case for name, case in specific_cases(world).items() if case.needs in means | {None}}
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = dict(zip(cases, pool.map(lambda case: run_case(case, world), cases.values()), strict=True))
    return {name: (cases[name], outcome) for name, outcome in results.items()}


def test_each_failure_is_reported_in_one_line(outcomes: dict[str, tuple[Case, Outcome]]) -> None:
    failed = {
        name: f"{problems}\n  stdout: {outcome.stdout[-600:]!r}\n  stderr: {outcome.stderr[-1500:]!r}"
        for name, (case, outcome) in outcomes.items()
        if (problems := problems_with(case, outcome))
    }
    assert not failed, "\n".join(f"{name}: {report}" for name, report in failed.items())


def test_every_subcommand_reports_an_invalid_configuration_in_one_line(tmp_path: Path) -> None:
    bad_config = tmp_path / "broken.toml"
    bad_config.write_text(INVALID_CONFIG)
    failed = {}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        for words, command in leaf_commands().items():
            args = with_required_arguments(words, command)
            result = CliRunner().invoke(app, args, env={"DISTRESS_CONFIG": str(bad_config)})
            case = Case(args=tuple(args), says=("incidents.debounce_hits",), kind="config", code=2)
            outcome = Outcome(result.exit_code, result.stdout, result.stderr, 0.0)
            if problems := problems_with(case, outcome) + ([repr(result.exception)] if result.exit_code != 2 else []):
                failed[words] = f"{problems} {result.stderr[-500:]!r}"
    finally:  # each command configures logging for its own run
        root.handlers[:], root.level = handlers, level
    assert not failed, failed


def test_an_operator_command_gives_up_on_a_broker_that_is_down_within_seconds(world: World) -> None:
    """Measured against the same command failing on its configuration, which never waits for Kafka: the same
    start-up cost on this machine under the same load. librdkafka's own retries used to take 30 s more."""
    args = ("incidents", "resolve", "lobby:000000000001")
    configured = run_case(
        Case(args=args, says=(), kind="config", env={"DISTRESS_CONFIG": str(world.bad_config)}), world
    )
    down = run_case(Case(args=args, says=(), kind="broker", env={"DISTRESS_KAFKA_BOOTSTRAP": world.kafka_down}), world)
    assert (configured.returncode, down.returncode) == (2, 1), down.stderr
    assert down.seconds - configured.seconds < 15.0, (down.seconds, configured.seconds)


def test_debug_shows_the_traceback_of_an_expected_failure(world: World) -> None:
    case = Case(
        args=("dashboard", "--port", "0"),
        says=(),
        kind="database",
        env={"DISTRESS_DATABASE_URL": world.postgres_down, "DISTRESS_DEBUG": "1"},
    )
    outcome = run_case(case, world)
    assert outcome.returncode == 1
    assert "Traceback" in outcome.stderr and "OperationalError" in outcome.stderr


def test_a_damaged_mp3_is_summarised_without_the_decoder_s_noise(world: World) -> None:
    """libmpg123 wrote a note to stderr for every damaged frame it skipped; FFmpeg decodes MP3 now, and what the
    damage cost is one warning line, with exit code 3 (partly read)."""
    import av

    mp3 = world.root / "damaged.mp3"
    with av.open(str(mp3), "w") as container:
        stream = container.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        tone = (0.3 * np.sin(np.arange(3 * 16000) / 5)).astype(np.float32)
        for start in range(0, tone.size, 1152):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1152], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(mp3.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 400] = bytes(400)  # frames lost in the middle
    mp3.write_bytes(bytes(data))
    outcome = run_case(Case(args=("features", str(mp3), "--json"), says=(), kind=""), world)
    assert outcome.returncode == EXIT_PARTLY_READ, outcome.stderr
    (warning,) = outcome.stderr.splitlines()
    assert warning.startswith(f"warning: {mp3}: ") and "never heard" in warning
    assert len(outcome.stdout.splitlines()) >= 2
