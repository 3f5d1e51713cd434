"""`distress alerts test` against real receivers; `distress alerts list` over the alerts projection of a real topic."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app
from config import Settings
from events.catalogue import AlertDeferred, AlertDispatched, AlertFailed, AlertRequested
from projections.database import open_database
from projections.projector import Projector
from projections.read_models import PROJECTIONS
from tests.conftest import free_port
from tests.support.alerting import JsonReceiver


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``distress alerts ARGS`` in-process, through the entry point that reports failures."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(app, ["alerts", *args], env=env)
    finally:  # the command configures logging for its own run
        root.handlers[:], root.level = handlers, level
    return result.exit_code, result.stdout, result.stderr


def config_env(tmp_path: Path, alerting: dict[str, object], **settings: object) -> dict[str, str]:
    config_file = tmp_path / "distress.yaml"
    config_file.write_text(yaml.safe_dump({"alerting": alerting, **settings}))
    return {"DISTRESS_CONFIG": str(config_file)}


def test_alerts_test_reports_each_channel(tmp_path: Path) -> None:
    dead = f"json://127.0.0.1:{free_port()}/hook"
    with JsonReceiver() as receiver:
        code, out, _ = invoke("test", "--url", receiver.url(), "--json")
        assert code == 0
        assert json.loads(out) == {
            "ok": True,
            "channels": [
                {"channel": f"json://127.0.0.1:{receiver.port}/***", "ok": True, "reason": "", "retryable": True}
            ],
        }
        assert receiver.titles() == ["distress test notification"]

        env = config_env(tmp_path, {"channels": {"desk": receiver.url(), "pager": dead}})
        code, out, _ = invoke("test", env=env)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "ok      desk"
    assert lines[1].startswith("FAILED  pager  ") and "onnection" in lines[1]


def test_alerts_test_by_apprise_tag(tmp_path: Path) -> None:
    with JsonReceiver("night") as night, JsonReceiver("day") as day:
        apprise_yaml = tmp_path / "apprise.yaml"
        apprise_yaml.write_text(f"urls:\n  - {night.url()}:\n      tag: night\n  - {day.url()}:\n      tag: day\n")
        env = config_env(tmp_path, {"apprise_configs": [str(apprise_yaml)]})
        code, out, _ = invoke("test", "--tag", "night", "--json", env=env)
        assert code == 0 and [channel["ok"] for channel in json.loads(out)["channels"]] == [True]
        assert len(night.delivered) == 1 and day.delivered == []
        code, _, err = invoke("test", "--tag", "weekend", env=env)
    assert code == 2 and "carries the tag 'weekend'" in err


def test_alerts_test_rejects_bad_input_with_exit_code_2() -> None:
    code, _, err = invoke("test", "--url", "json://127.0.0.1/x", "--tag", "ops")
    assert code == 2 and "not both" in err
    code, _, err = invoke("test", "--url", "nosuch://user:hunter2@example.org/path")
    assert code == 2 and "Apprise does not accept the URL nosuch://***@example.org/***" in err
    assert "hunter2" not in err
    code, _, err = invoke("test", "--url", "json://127.0.0.1/${UNSET_HOOK_TOKEN_FOR_TEST}")
    assert code == 2 and "environment variable UNSET_HOOK_TOKEN_FOR_TEST is not set" in err


def test_alerts_list_shows_the_delivery_status_of_each_alert(kafka_settings: Settings, tmp_path: Path) -> None:
    kafka_settings.ensure_topics()
    bus = kafka_settings.bus()
    sent = AlertRequested(
        stream_id="ward-3",
        incident_id="inc-1",
        channel="desk",
        alert_key="inc-1/e1/desk",
        transition_event_id="e1",
        severity="high",
        title="[HIGH] Ward 3: scream",
        body="...",
        kind="notify",
        route="r",
        tier=0,
        clip_sha256=None,
    )
    failing = AlertRequested(
        stream_id="ward-3",
        incident_id="inc-1",
        channel="pager",
        alert_key="inc-1/e1/pager",
        transition_event_id="e1",
        severity="high",
        title="[HIGH] Ward 3: scream",
        body="...",
        kind="notify",
        route="r",
        tier=0,
        clip_sha256=None,
    )
    with bus.producer() as producer:
        for event in (
            sent,
            failing,
            AlertDispatched(**sent.caused(), alert_key=sent.alert_key, incident_id="inc-1", channel="desk", attempts=1),
            AlertFailed(
                **failing.caused(),
                alert_key=failing.alert_key,
                incident_id="inc-1",
                channel="pager",
                attempts=2,
                reason="HTTP 503",
                final=False,
            ),
            AlertDeferred(
                stream_id="ward-3",
                incident_id="inc-2",
                channel="desk",
                alert_key="inc-2/e2/desk",
                transition_event_id="e2",
                severity="low",
                route="minor",
                reason="digest",
                digest_key="digest/minor/x",
                digest_due_at=sent.occurred_at,
                summary="21:04 LOW opened",
            ),
        ):
            producer.publish(event)
    database_url = f"sqlite:///{tmp_path / 'distress.db'}"
    projector = Projector(
        open_database(kafka_settings.model_copy(update={"database_url": database_url})), bus, PROJECTIONS["alerts"]
    )
    projector.catch_up()
    projector.close()
    env = {"DISTRESS_DATABASE_URL": database_url}
    code, out, err = invoke("list", "--json", env=env)
    assert code == 0, err
    rows = {row["alert_key"]: row for row in json.loads(out)}
    assert {key: (row["status"], row["attempts"], row["kind"]) for key, row in rows.items()} == {
        "inc-1/e1/desk": ("dispatched", 1, "notify"),
        "inc-1/e1/pager": ("retrying", 2, "notify"),
        "inc-2/e2/desk": ("deferred", 0, "deferred"),
    }
    assert rows["inc-1/e1/pager"]["detail"] == "HTTP 503"
    code, out, _ = invoke("list", "--incident", "inc-2", env=env)
    assert code == 0 and out.count("\n") == 1 and "deferred" in out
