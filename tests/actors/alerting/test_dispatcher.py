"""One Apprise attempt per call against real servers: SMTP with login, HTTP json:// with evidence clip, failures."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from actors.alerting.dispatcher import Dispatcher
from actors.alerting.routing import ChannelRegistry, apprise_asset
from actors.clips import ClipStore
from config.alerting import AlertingConfig
from tests.conftest import free_port
from tests.support.alerting import JsonReceiver, smtp_server

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def dispatcher_for(channels: dict[str, str], clips: ClipStore | None = None) -> Dispatcher:
    config = AlertingConfig(channels=channels)
    return Dispatcher(ChannelRegistry.from_config(config), asset=apprise_asset(config), clips=clips)


def test_email_reaches_a_real_smtp_server_with_subject_and_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "pw-5e8c1")
    with smtp_server("alerts", "pw-5e8c1") as (port, mails):
        dispatcher = dispatcher_for(
            {
                "oncall-mail": f"mailto://alerts:${{SMTP_PASSWORD}}@127.0.0.1:{port}"
                "?to=oncall@example.org&from=alerts@example.org"
            }
        )
        result = dispatcher.send(
            "oncall-mail",
            title="[HIGH] Lobby: scream 0.93",
            severity="high",
            body="Distress detected on Lobby.\nReason: scream 0.93",
        )
    assert result.ok and result.channel == "oncall-mail"
    [mail] = mails
    assert mail.recipients == ["oncall@example.org"]
    assert mail.subject == "[HIGH] Lobby: scream 0.93"
    assert mail.text.strip() == "Distress detected on Lobby.\nReason: scream 0.93"


def test_json_post_carries_the_message_and_the_verified_clip(tmp_path: Path) -> None:
    clips = ClipStore(tmp_path / "clips")
    clip = clips.put_pcm16(b"\x01\x00\xff\x7f" * 800, 16_000)
    with JsonReceiver(path_token="hook-81c") as receiver:
        dispatcher = dispatcher_for({"ops": receiver.url("bot:pass-1d2@")}, clips=clips)
        result = dispatcher.send("ops", title="t1", body="b1", severity="critical", clip_sha256=clip.sha256)
    assert result.ok
    [post] = receiver.delivered
    assert (post["title"], post["message"], post["type"], post["path"]) == ("t1", "b1", "failure", "/hook-81c")
    assert post["authorization"] == "Basic " + base64.b64encode(b"bot:pass-1d2").decode()
    [attachment] = post["attachments"]
    assert base64.b64decode(attachment["base64"]) == clips.read(clip.sha256)


def test_an_altered_clip_is_left_out_but_the_alert_still_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clips = ClipStore(tmp_path / "clips")
    clip = clips.put_pcm16(b"\x00\x01" * 400, 16_000)
    clips.path_for(clip.sha256).write_bytes(b"RIFF tampered")
    with JsonReceiver() as receiver, caplog.at_level(logging.WARNING):
        result = dispatcher_for({"ops": receiver.url()}, clips=clips).send(
            "ops", title="t", body="b", severity="high", clip_sha256=clip.sha256
        )
    assert result.ok
    assert receiver.delivered[0]["attachments"] == []
    [warning] = [record for record in caplog.records if record.name == "actors.alerting.dispatcher"]
    assert "does not match its SHA-256" in warning.__dict__["reason"]


def test_failures_are_reported_redacted_and_retryable() -> None:
    with JsonReceiver(path_token="tok-a61") as receiver:
        receiver.answer([503])
        dispatcher = dispatcher_for(
            {"ops": receiver.url("u:pw-a61@"), "gone": f"json://127.0.0.1:{free_port()}/tok-b2"}
        )
        overloaded = dispatcher.send("ops", title="t", body="b", severity="low")
        refused = dispatcher.send("gone", title="t", body="b", severity="low")
    assert not overloaded.ok and overloaded.retryable and "503" in overloaded.reason
    assert not refused.ok and refused.retryable and "onnection" in refused.reason
    for result in (overloaded, refused):
        assert "pw-a61" not in result.reason and "tok-" not in result.reason
    unknown = dispatcher.send("removed-channel", title="t", body="b", severity="low")
    assert not unknown.ok and not unknown.retryable
    assert unknown.reason == "channel 'removed-channel' is not configured any more"
