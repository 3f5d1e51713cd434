"""The broker goes down while operators act on incidents: a command fails, and nothing is lost or doubled.

Operator decisions are events appended to the incidents topic, checked against the incident's history first. With
the broker down a command cannot read that history nor append, so it must fail (an operator who sees a failure
repeats it) and leave nothing behind that could still be appended later. Once the broker is back, repeating the
command applies it exactly once, and repeating it again is refused instead of appended twice.

A private broker is used (so stopping and freezing it touches no other test). The commands are the real CLI,
``distress incidents ack|resolve|false-alarm``, run as processes as an operator runs them, and ``IncidentCommands``
in one long-lived process, the path the dashboard's action API takes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.commands import IncidentCommands, InvalidTransition
from config import Settings
from events.base import utc_now
from events.catalogue import IncidentEvent, IncidentOpened
from events.kafka.broker import LocalBroker
from events.kafka.connection import BusError
from tests.conftest import REPO_ROOT, broker_settings, wait_for
from tests.faults.conftest import events_on

COMMAND_LIMIT_S = 120.0  # a failing command must give up by itself well within this
REPEATS = 5  # how often an operator repeats a command that failed
ACTIONS = {"ack": "IncidentAcknowledged", "resolve": "IncidentResolved", "false-alarm": "IncidentMarkedFalseAlarm"}


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker[Settings]]:
    broker = LocalBroker(broker_settings(tmp_path_factory.mktemp("private-kafka")))
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


def opened(stream_id: str) -> IncidentOpened:
    return IncidentOpened(
        stream_id=stream_id,
        incident_id=f"{stream_id}:{uuid.uuid4().hex[:12]}",
        severity="high",
        score=0.9,
        reason="scream 0.90",
        onset_sample=0,
        onset_at=utc_now(),
        labels=(),
        phrases=(),
        transcript="",
        clip_sha256=None,
        clip_duration_s=None,
    )


def distress(settings: Settings, commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run CLI commands side by side, each in its own process configured by environment like an operator's shell
    (side by side only to keep the test short: they act on different incidents)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("DISTRESS_")}
    environment = {
        **clean,
        "DISTRESS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "DISTRESS_TOPIC_PREFIX": settings.topic_prefix,
        "DISTRESS_DATA_DIR": str(settings.data_dir),
        "DISTRESS_LOG_LEVEL": "WARNING",
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cli", *arguments],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, arguments in commands.items()
    }
    finished: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, process in running.items():
        try:
            stdout, stderr = process.communicate(timeout=COMMAND_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"{name} did not give up within {COMMAND_LIMIT_S:g} s") from None
        finished[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return finished


def decisions(settings: Settings) -> Counter[tuple[str, str]]:
    """(incident id, event type) of every operator decision on the incidents topic."""
    bus = settings.bus()
    return Counter(
        (event.incident_id, event.event_type)
        for event in events_on(bus, [bus.catalogue.incidents.name])
        if isinstance(event, IncidentEvent) and not isinstance(event, IncidentOpened)
    )


def test_commands_during_a_broker_outage_fail_and_apply_once_when_repeated_after_it(
    private_broker: LocalBroker[Settings], tmp_path: Path
) -> None:
    settings = private_broker.settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}.", "data_dir": tmp_path}
    )
    settings.ensure_topics()
    incidents = {action: opened(f"ward-{number}") for number, action in enumerate(ACTIONS)}
    with settings.bus().producer() as producer:
        for incident in incidents.values():
            producer.publish(incident)

    commands = {
        action: ["incidents", action, incident.incident_id, "--actor", "ana"] for action, incident in incidents.items()
    }

    private_broker.down()
    try:
        for action, failed in distress(settings, commands).items():
            assert failed.returncode != 0, f"{action} succeeded with the broker down: {failed.stdout}"
            assert failed.stderr.strip(), f"{action} failed without saying why"
    finally:
        private_broker.up()
    assert decisions(settings) == Counter(), "a command that failed left an event behind"

    # The operator repeats each command until it is applied (0) or refused as done already (2): on a busy machine
    # a command can give up on a slow broker too, and one that gave up may have been appended all the same.
    pending = commands
    for _ in range(REPEATS):
        pending = {
            action: commands[action]
            for action, repeated in distress(settings, pending).items()
            if repeated.returncode not in (0, 2)
        }
        if not pending:
            break
    assert not pending, f"still failing after {REPEATS} tries with the broker back: {sorted(pending)}"
    repeat = {
        "ack": IncidentCommands.acknowledge,
        "resolve": IncidentCommands.resolve,
        "false-alarm": IncidentCommands.mark_false_alarm,
    }
    for action, incident in incidents.items():  # once more, unsure: refused, as it is done already
        with pytest.raises(InvalidTransition):
            repeat[action](IncidentCommands(settings.bus()), incident.incident_id, actor="ana")
    assert decisions(settings) == Counter(
        {(incident.incident_id, ACTIONS[action]): 1 for action, incident in incidents.items()}
    )


def test_a_broker_that_hangs_while_commands_run_applies_each_decision_once(
    private_broker: LocalBroker[Settings], tmp_path: Path
) -> None:
    """The dashboard's path, in one long-lived process: the broker freezes (SIGSTOP: connections stay open, nothing
    answers) while acknowledgements are being appended, wherever each command happens to be, then thaws.

    A command that reported success must be on the log once. One that failed may or may not have reached the
    broker (its request can sit in a frozen broker's socket and be appended after the thaw); repeating it must
    then append it, or be refused because it is there, so every incident ends with exactly one acknowledgement.
    """
    settings = private_broker.settings.model_copy(
        update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}.", "data_dir": tmp_path}
    )
    settings.ensure_topics()
    incidents = [opened(f"bed-{number}") for number in range(6)]
    with settings.bus().producer() as producer:
        for incident in incidents:
            producer.publish(incident)
    commands = IncidentCommands(settings.bus())
    outcomes: dict[str, str] = {}

    def acknowledge_all() -> None:
        for incident in incidents:
            try:
                commands.acknowledge(incident.incident_id, actor="ana")
                outcomes[incident.incident_id] = "applied"
            except Exception as error:  # whatever the failure is called: the operator is told it failed
                outcomes[incident.incident_id] = f"failed: {type(error).__name__}"

    broker_pid = int(private_broker.pid_file.read_text().strip())
    operator = threading.Thread(target=acknowledge_all)
    operator.start()
    try:
        wait_for(lambda: len(outcomes) >= 1, what="a first acknowledgement")
        os.kill(broker_pid, signal.SIGSTOP)
        wait_for(
            lambda: any(outcome.startswith("failed") for outcome in outcomes.values()) or not operator.is_alive(),
            timeout_s=COMMAND_LIMIT_S,
            what="a command to give up on the frozen broker",
        )
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    operator.join(timeout=COMMAND_LIMIT_S)
    assert not operator.is_alive(), "a command hung past the broker's return"
    failed = [incident_id for incident_id, outcome in outcomes.items() if outcome != "applied"]
    assert failed, f"no command was caught by the frozen broker: {outcomes}"
    time.sleep(2.0)  # a request left in the frozen broker's socket is appended now, if at all

    after_thaw = decisions(settings)
    for incident in incidents:
        seen = after_thaw[(incident.incident_id, "IncidentAcknowledged")]
        assert seen == 1 if outcomes[incident.incident_id] == "applied" else seen <= 1, (incident, seen, outcomes)
    for incident_id in failed:  # the operator repeats what failed, until it is applied or refused as done
        for attempt in range(1, REPEATS + 1):
            try:
                commands.acknowledge(incident_id, actor="ana")
                break
            except InvalidTransition:
                break
            except BusError:  # gave up on a slow broker again
                assert attempt < REPEATS, f"{incident_id} still failing after {REPEATS} tries"
    assert decisions(settings) == Counter({(incident.incident_id, "IncidentAcknowledged"): 1 for incident in incidents})
