"""The alerting actor on a real broker, real SMTP and HTTP servers: exactly once across a killed process, retries
recorded as AlertFailed then AlertDispatched, a full replay that sends nothing, and no secret in logs or events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.alerting.actor import build_stage, run_alerting
from actors.alerting.ledger import read_history
from actors.stage import StageRunner
from config import Settings
from config.alerting import AlertingConfig
from events.base import utc_now
from events.catalogue import AlertDispatched, AlertEvent, AlertFailed, AlertRequested, IncidentOpened, LabelScore
from events.kafka.admin import KafkaProbe
from events.kafka.bus import Bus
from events.kafka.log import TopicLog
from tests.conftest import REPO_ROOT, wait_for
from tests.support.alerting import JsonReceiver, smtp_server

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def incident(incident_id: str) -> IncidentOpened:
    return IncidentOpened(
        stream_id="ward-3",
        incident_id=incident_id,
        severity="high",
        score=0.95,
        reason="scream 0.93 + 'help me'",
        onset_sample=0,
        onset_at=utc_now(),
        labels=(LabelScore(label="scream", score=0.93),),
        phrases=(),
        transcript="Help me!",
        clip_sha256=None,
        clip_duration_s=None,
    )


def publish(bus: Bus, *events: IncidentOpened) -> None:
    with bus.producer() as producer:
        for event in events:
            producer.publish(event)


def alert_events(bus: Bus) -> list[AlertEvent]:
    return [
        event for event in read_history(bus, [bus.catalogue.alerts.name], since=None) if isinstance(event, AlertEvent)
    ]


def history_of(bus: Bus, channel: str) -> list[tuple[str, int, bool]]:
    """(event type, attempts, final) of one channel's alert events, in order."""
    return [
        (type(event).__name__, getattr(event, "attempts", 0), getattr(event, "final", False))
        for event in alert_events(bus)
        if event.channel == channel
    ]


def group_caught_up(bus: Bus, group_id: str) -> bool:
    """Whether the group has committed every partition of the incidents and alerts topics up to its end."""
    lag = KafkaProbe(bus.connection).group_lag(group_id, [bus.catalogue.incidents.name, bus.catalogue.alerts.name])
    return not any(lag.values())


def every_message_on_every_topic(bus: Bus) -> bytes:
    """Keys, values (as the codec writes them), headers and fields of all events of the deployment, for the secret
    scan; a message that cannot be decoded fails it, since its bytes would go unscanned."""
    chunks: list[bytes] = []
    with TopicLog(bus, [spec.name for spec in bus.catalogue.all()]) as topic_log:
        for batch in topic_log.read_until(topic_log.end_offsets()):
            assert batch.undecodable == 0, "the scan met a message it cannot read"
            for consumed in batch.events:
                event = consumed.event
                chunks += [
                    event.stream_id.encode(),
                    bus.codec.encode(event),
                    repr(bus.codec.headers(event)).encode(),
                    repr(event).encode(),
                ]
    return b"\n".join(chunks)


@contextmanager
def alerting_process(config_file: Path, env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The alerting actor as a separate process (``python -m actors.alerting``), logging to ``log_file``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("DISTRESS_")}
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "actors.alerting"],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean, **env, "DISTRESS_CONFIG": str(config_file)},
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_killed_between_request_and_delivery_the_restart_delivers_exactly_once(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    kafka_settings.ensure_topics()
    bus = kafka_settings.bus()
    secrets = {
        "HOOK_TOKEN": f"tok-{uuid.uuid4().hex}",
        "HOOK_PASSWORD": f"hp-{uuid.uuid4().hex[:12]}",
        "SMTP_PASSWORD": f"sp-{uuid.uuid4().hex[:12]}",
    }
    log_file = tmp_path / "alerting.log"
    with (
        JsonReceiver(path_token=secrets["HOOK_TOKEN"]) as receiver,
        smtp_server("alerts", secrets["SMTP_PASSWORD"]) as (smtp_port, mails),
    ):
        config_file = tmp_path / "distress.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(tmp_path / "state"),
                    "kafka_bootstrap": kafka_settings.bootstrap_servers,
                    "kafka_client": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
                    "topic_prefix": kafka_settings.topic_prefix,
                    "log_level": "INFO",
                    "streams": [{"id": "ward-3", "source": "/dev/null", "name": "Ward 3"}],
                    "alerting": {
                        "dashboard_url": "https://distress.example.org",
                        "channels": {
                            "ops-json": f"json://bot:${{HOOK_PASSWORD}}@127.0.0.1:{receiver.port}/${{HOOK_TOKEN}}",
                            "oncall-mail": f"mailto://alerts:${{SMTP_PASSWORD}}@127.0.0.1:{smtp_port}"
                            "?to=oncall@example.org&from=alerts@example.org",
                        },
                        "routes": [{"name": "everything", "notify": ["ops-json", "oncall-mail"]}],
                    },
                }
            )
        )
        receiver.hold_next()
        with alerting_process(config_file, secrets, log_file) as first:
            publish(bus, incident("inc-1"))
            wait_for(receiver.holding.is_set, what="the json:// delivery to arrive (and be held)")
            # the request was on the broker before Apprise was called ...
            assert [kind for kind, _, _ in history_of(bus, "ops-json")] == ["AlertRequested"]
            # ... and the e-mail, sent in parallel, had its AlertDispatched stored without waiting for the batch
            wait_for(lambda: len(history_of(bus, "oncall-mail")) == 2, what="the e-mail's AlertDispatched")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        receiver.release()

        with alerting_process(config_file, secrets, log_file) as second:
            wait_for(lambda: len(receiver.delivered) == 1, what="the restarted actor to deliver")
            wait_for(
                lambda: group_caught_up(bus, f"{kafka_settings.topic_prefix}distress.alerting"),
                what="the restarted actor to catch up",
            )
            second.terminate()
            assert second.wait(timeout=60) == 0

    assert len(receiver.received) == 2  # the held attempt, never answered, and the one after the restart
    assert receiver.received[0]["message"] == receiver.delivered[0]["message"]
    assert receiver.delivered[0]["title"] == "[HIGH] Ward 3: scream 0.93 + 'help me'"
    assert "https://distress.example.org/incidents/inc-1" in receiver.delivered[0]["message"]
    [mail] = mails
    assert mail.subject == "[HIGH] Ward 3: scream 0.93 + 'help me'"
    assert "Distress detected on Ward 3 (ward-3)." in mail.text and 'Heard: "Help me!"' in mail.text
    assert history_of(bus, "ops-json") == [("AlertRequested", 0, False), ("AlertDispatched", 1, False)]
    assert history_of(bus, "oncall-mail") == [("AlertRequested", 0, False), ("AlertDispatched", 1, False)]

    logs = log_file.read_text()
    assert "alert dispatched" in logs and "alerting ledger rebuilt" in logs
    events = every_message_on_every_topic(bus)
    assert b"AlertDispatched" in events
    for name, secret in secrets.items():
        assert secret not in logs, f"{name} leaked into a log line"
        assert secret.encode() not in events, f"{name} leaked into an event"


def test_a_channel_down_for_a_while_is_retried_and_a_full_replay_sends_nothing(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    with JsonReceiver() as receiver:
        receiver.answer([503, 503])
        alerting: dict[str, Any] = {
            "channels": {"ops": receiver.url()},
            "routes": [{"name": "r", "notify": ["ops"]}],
            "retry": {"first_backoff_s": 0.3, "factor": 2, "max_attempts": 5},
        }
        settings = kafka_settings.model_copy(
            update={"data_dir": tmp_path, "alerting": AlertingConfig.model_validate(alerting)}
        )
        settings.ensure_topics()
        bus = settings.bus()
        stop = threading.Event()
        actor = threading.Thread(target=run_alerting, args=(settings, stop))
        actor.start()
        try:
            publish(bus, incident("inc-1"))
            wait_for(lambda: history_of(bus, "ops")[-1:] == [("AlertDispatched", 3, False)], what="delivery")
        finally:
            stop.set()
            actor.join(timeout=60)
        assert history_of(bus, "ops") == [
            ("AlertRequested", 0, False),
            ("AlertFailed", 1, False),
            ("AlertFailed", 2, False),
            ("AlertDispatched", 3, False),
        ]
        failure = next(event for event in alert_events(bus) if isinstance(event, AlertFailed))
        assert "503" in failure.reason
        assert len(receiver.received) == 3 and len(receiver.delivered) == 1

        # Replay everything from the start in a new consumer group: the ledger knows every key.
        stage = build_stage(settings)
        stage.recover(read_history(bus, stage.input_topics(), since=None))
        runner = StageRunner(stage, bus, group_id=f"replay-{uuid.uuid4()}")
        try:
            wait_for(lambda: runner.run_once() == 0 and runner.processed >= 5, what="the replay to finish")
        finally:
            runner.close()
            stage.close()
    assert runner.processed == 5  # the incident and the four alert events
    assert len(receiver.received) == 3
    assert sum(isinstance(event, AlertRequested) for event in alert_events(bus)) == 1
    assert sum(isinstance(event, AlertDispatched) for event in alert_events(bus)) == 1
