"""Routing rules and channels: schedules in the site's zone, route filters, ${ENV} secrets, Apprise tags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from actors.alerting.routing import (
    AlertingSetupError,
    ChannelRegistry,
    Router,
    expand_env,
    schedule_allows,
)
from config import SettingsError, load_settings
from config.alerting import AlertingConfig, AlertSchedule
from events.catalogue import LabelScore

BERLIN_FRIDAY_2330 = datetime(2026, 3, 6, 22, 30, tzinfo=UTC)  # 23:30 CET, a Friday


def config(**fields: object) -> AlertingConfig:
    return AlertingConfig.model_validate(fields)


@pytest.mark.parametrize(
    ("schedule", "local", "active"),
    [
        ({"quiet_hours": ["22:00-07:00"]}, datetime(2026, 3, 4, 23, 0), False),
        ({"quiet_hours": ["22:00-07:00"]}, datetime(2026, 3, 4, 6, 59), False),
        ({"quiet_hours": ["22:00-07:00"]}, datetime(2026, 3, 4, 7, 0), True),
        ({"weekdays": ["sat", "sun"]}, datetime(2026, 3, 7, 12, 0), True),  # a Saturday
        ({"weekdays": ["sat", "sun"]}, datetime(2026, 3, 6, 12, 0), False),  # a Friday
        ({"hours": "08:00-18:00"}, datetime(2026, 3, 4, 18, 0), False),
        ({"hours": "08:00-18:00"}, datetime(2026, 3, 4, 8, 0), True),
        # a night shift belongs to the day it starts on: Friday 22:00 to Saturday 06:00
        ({"weekdays": ["fri"], "hours": "22:00-06:00"}, datetime(2026, 3, 7, 3, 0), True),
        ({"weekdays": ["fri"], "hours": "22:00-06:00"}, datetime(2026, 3, 6, 3, 0), False),
        ({"weekdays": ["fri"], "hours": "22:00-06:00"}, datetime(2026, 3, 6, 23, 0), True),
    ],
)
def test_schedule_windows(schedule: dict[str, object], local: datetime, active: bool) -> None:
    assert schedule_allows(AlertSchedule.model_validate(schedule), local) is active


def test_schedules_are_judged_in_the_configured_time_zone() -> None:
    night = {"name": "night", "notify": ["json://127.0.0.1:9/x"], "schedule": {"hours": "23:00-06:00"}}
    in_berlin = Router(config(timezone="Europe/Berlin", routes=[night]), ChannelRegistry([]))
    in_new_york = Router(config(timezone="America/New_York", routes=[night]), ChannelRegistry([]))

    def names(router: Router) -> list[str]:
        routes = router.routes_for(stream_id="s", severity="high", transition="opened", at=BERLIN_FRIDAY_2330)
        return [route.name for route in routes]

    assert names(in_berlin) == ["night"]
    assert names(in_new_york) == []  # 17:30 there
    assert in_berlin.local(BERLIN_FRIDAY_2330).hour == 23


def test_routes_filter_by_stream_glob_severity_and_transition() -> None:
    routes = [
        {"name": "wards", "streams": ["ward-*"], "notify": ["json://127.0.0.1:9/a"]},
        {
            "name": "urgent",
            "severities": ["high", "critical"],
            "on": ["opened", "resolved"],
            "notify": ["json://127.0.0.1:9/b"],
        },
    ]
    router = Router(config(timezone="UTC", routes=routes), ChannelRegistry([]))

    def names(stream_id: str, severity: str, transition: str) -> list[str]:
        found = router.routes_for(stream_id=stream_id, severity=severity, transition=transition, at=BERLIN_FRIDAY_2330)
        return [route.name for route in found]

    assert names("ward-3", "low", "opened") == ["wards"]
    assert names("ward-3", "high", "opened") == ["wards", "urgent"]
    assert names("lobby", "critical", "resolved") == ["urgent"]
    assert names("lobby", "critical", "escalated") == []  # "urgent" does not listen to escalations
    assert names("lobby", "medium", "opened") == []


def test_routes_filter_by_the_sound_labels_of_the_evidence() -> None:
    routes = [
        {"name": "fire-warden", "labels": ["alarm"], "notify": ["json://127.0.0.1:9/a"]},
        {"name": "police", "labels": ["gunshot"], "label_min_score": 0.8, "notify": ["json://127.0.0.1:9/b"]},
        {"name": "everyone", "notify": ["json://127.0.0.1:9/c"]},
    ]
    router = Router(config(timezone="UTC", routes=routes), ChannelRegistry([]))

    def names(*labels: tuple[str, float]) -> list[str]:
        heard = [LabelScore(label=label, score=score) for label, score in labels]
        found = router.routes_for(
            stream_id="s", severity="high", transition="opened", at=BERLIN_FRIDAY_2330, labels=heard
        )
        return [route.name for route in found]

    assert names(("alarm", 0.9), ("speech", 0.1)) == ["fire-warden", "everyone"]
    assert names(("gunshot", 0.7)) == ["everyone"]  # under the police route's own minimum
    assert names(("gunshot", 0.85), ("alarm", 0.4)) == ["police", "everyone"]
    assert names() == ["everyone"]
    with pytest.raises(SettingsError, match=r"unknown sound label.*'fire'"):
        load_settings(alerting={"routes": [{"name": "r", "labels": ["fire"], "notify": ["json://127.0.0.1:9/a"]}]})


def test_invalid_alerting_settings_name_the_problem() -> None:
    with pytest.raises(SettingsError, match="unknown channel 'pager'"):
        load_settings(alerting={"routes": [{"name": "r", "notify": ["pager"]}]})
    with pytest.raises(SettingsError, match="must look like 'HH:MM-HH:MM'"):
        load_settings(alerting={"routes": [{"name": "r", "notify": ["tag:x"], "schedule": {"hours": "9 to 5"}}]})
    with pytest.raises(SettingsError, match="unknown time zone 'Mars/Olympus'"):
        load_settings(alerting={"timezone": "Mars/Olympus"})
    with pytest.raises(SettingsError, match="must strictly increase"):
        load_settings(
            alerting={
                "routes": [
                    {
                        "name": "r",
                        "notify": ["tag:x"],
                        "escalation": [
                            {"after_minutes": 10, "notify": ["tag:y"]},
                            {"after_minutes": 5, "notify": ["tag:z"]},
                        ],
                    }
                ]
            }
        )
    with pytest.raises(SettingsError, match="severities"):
        load_settings(alerting={"routes": [{"name": "r", "notify": ["tag:x"], "severities": ["urgent"]}]})


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "tok-3f9a")
    assert expand_env("json://127.0.0.1/${HOOK_TOKEN}", "x") == "json://127.0.0.1/tok-3f9a"
    monkeypatch.delenv("HOOK_TOKEN")
    with pytest.raises(AlertingSetupError, match="channel 'ops': environment variable HOOK_TOKEN is not set"):
        ChannelRegistry.from_config(config(channels={"ops": "json://127.0.0.1/${HOOK_TOKEN}"}))


def test_channel_ids_never_hold_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_B", "BBBsecretBBB")
    registry = ChannelRegistry.from_config(
        config(
            channels={"oncall-mail": "mailto://alerts:pw-77x@mail.example.org?to=oncall@example.org"},
            routes=[
                {
                    "name": "r",
                    "notify": [
                        "oncall-mail",
                        "slack://T1JJ3T3L2/${SLACK_B}/CCCsecretCCC",
                        "json://127.0.0.1:8080/one-secret",
                        "json://127.0.0.1:8080/other-secret",
                    ],
                }
            ],
        )
    )
    ids = [channel.id for channel in registry.all()]
    assert ids == ["oncall-mail", "slack://***/***", "json://127.0.0.1:8080/***", "json://127.0.0.1:8080/***#2"]
    for secret in ("pw-77x", "BBBsecretBBB", "CCCsecretCCC", "T1JJ3T3L2", "one-secret"):
        assert all(secret not in channel_id for channel_id in ids)
    # the same URL named twice is one channel, so one transition notifies it once
    assert registry.resolve("json://127.0.0.1:8080/one-secret")[0].id == "json://127.0.0.1:8080/***"


def test_an_url_apprise_rejects_fails_at_start_without_echoing_it() -> None:
    rejected = r"route 'r': Apprise does not accept the URL nosuch://\*\*\*"
    with pytest.raises(AlertingSetupError, match=rejected) as error:
        ChannelRegistry.from_config(config(routes=[{"name": "r", "notify": ["nosuch://user:hunter2@host"]}]))
    assert "hunter2" not in str(error.value)


def test_tags_resolve_to_services_of_an_apprise_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_TOKEN", "ops-4411")
    apprise_yaml = tmp_path / "apprise.yaml"
    apprise_yaml.write_text(
        "version: 1\n"
        "urls:\n"
        "  - json://127.0.0.1:8081/${OPS_TOKEN}:\n"
        "      tag: oncall, ops\n"
        "  - mailto://alerts:pw@mail.example.org?to=boss@example.org:\n"
        "      tag: managers\n"
    )
    registry = ChannelRegistry.from_config(
        config(
            apprise_configs=[apprise_yaml],
            routes=[
                {
                    "name": "r",
                    "notify": ["tag:oncall"],
                    "escalation": [{"after_minutes": 5, "notify": ["tag:managers"]}],
                }
            ],
        )
    )
    assert [channel.id for channel in registry.resolve("tag:oncall")] == ["json://127.0.0.1:8081/***"]
    assert [channel.id for channel in registry.resolve("tag:managers")] == ["mailto://***@mail.example.org/***"]
    assert [channel.id for channel in registry.resolve_all(["tag:ops", "tag:oncall"])] == ["json://127.0.0.1:8081/***"]
    with pytest.raises(AlertingSetupError, match="carries the tag 'nobody'"):
        ChannelRegistry.from_config(
            config(apprise_configs=[apprise_yaml], routes=[{"name": "r", "notify": ["tag:nobody"]}])
        )
    with pytest.raises(AlertingSetupError, match="cannot read it"):
        ChannelRegistry.from_config(config(apprise_configs=[tmp_path / "missing.yaml"]))


def test_the_alerting_section_reads_the_same_from_yaml_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "distress.yaml").write_text(
        "alerting:\n"
        "  timezone: Europe/Berlin\n"
        "  channels: {oncall: 'mailto://alerts:${SMTP_PASSWORD}@smtp.example.org?to=oncall@example.org'}\n"
        "  routes:\n"
        "    - name: nights\n"
        "      severities: [high, critical]\n"
        "      schedule: {weekdays: [fri, sat], hours: '22:00-06:00', quiet_hours: ['03:00-03:30']}\n"
        "      notify: [oncall]\n"
        "      escalation: [{after_minutes: 5, notify: ['tag:managers']}]\n"
    )
    (tmp_path / "distress.toml").write_text(
        "[alerting]\n"
        'timezone = "Europe/Berlin"\n'
        'channels = { oncall = "mailto://alerts:${SMTP_PASSWORD}@smtp.example.org?to=oncall@example.org" }\n'
        "[[alerting.routes]]\n"
        'name = "nights"\n'
        'severities = ["high", "critical"]\n'
        'schedule = { weekdays = ["fri", "sat"], hours = "22:00-06:00", quiet_hours = ["03:00-03:30"] }\n'
        'notify = ["oncall"]\n'
        'escalation = [{ after_minutes = 5, notify = ["tag:managers"] }]\n'
    )
    loaded = []
    for name in ("distress.yaml", "distress.toml"):
        monkeypatch.setenv("DISTRESS_CONFIG", str(tmp_path / name))
        loaded.append(load_settings().alerting)
    assert loaded[0] == loaded[1]
    [route] = loaded[0].routes
    assert route.schedule.hours is not None and route.schedule.hours.start.hour == 22
    assert route.escalation[0].notify == ("tag:managers",)
