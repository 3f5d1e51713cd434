"""Where an incident transition is notified: channels (Apprise services with secret-free ids) and routing rules.

A route matches by stream, severity, transition kind and schedule (time zone aware, weekdays, hours, quiet hours).
Its targets resolve to channels at start, so a missing ``${ENV_VAR}``, an URL Apprise rejects or a tag no service
carries stops the actor with a clear message instead of failing at 3 am. A channel's id is what alert keys and
events record: the configured name, or the redacted URL, never anything secret.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from apprise import Apprise, AppriseAsset, AppriseConfig, NotifyBase, PersistentStoreMode

from config.alerting import WEEKDAYS, AlertingConfig, AlertRoute, AlertSchedule, TimeWindow
from config.redaction import redact_url
from events.catalogue import LabelScore

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TAG_PREFIX = "tag:"


class AlertingSetupError(Exception):
    """The alerting configuration cannot be put to use; the message names the channel, route or variable."""


def expand_env(text: str, what: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``${NAME}`` with the environment variable, so secrets stay out of configuration files."""
    values = os.environ if environ is None else environ

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AlertingSetupError(f"{what}: environment variable {name} is not set")
        return values[name]

    return _ENV_REFERENCE.sub(value_of, text)


def apprise_asset(config: AlertingConfig) -> AppriseAsset:
    """How every message presents itself; Apprise's persistent store stays in memory (nothing written to $HOME)."""
    return AppriseAsset(
        app_id="distress",
        app_desc="distress: audio distress detection",
        app_url=config.dashboard_url,
        storage_mode=PersistentStoreMode.MEMORY,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class Channel:
    """One delivery endpoint: an Apprise service and the secret-free id recorded in alert keys and events."""

    id: str
    service: NotifyBase = field(repr=False)
    tags: frozenset[str] = frozenset()

    @property
    def supports_attachments(self) -> bool:
        return bool(self.service.attachment_support)


def load_url_channel(url: str, *, channel_id: str | None, what: str, asset: AppriseAsset) -> Channel:
    """A channel from one Apprise URL (``${ENV}`` expanded); the id defaults to the redacted URL."""
    expanded = expand_env(url, what)
    return Channel(id=channel_id or redact_url(expanded), service=_service(expanded, what, asset))


def _service(expanded_url: str, what: str, asset: AppriseAsset) -> NotifyBase:
    services = Apprise(asset=asset)
    if not services.add(expanded_url):
        raise AlertingSetupError(f"{what}: Apprise does not accept the URL {redact_url(expanded_url)}")
    return services[0]


def load_apprise_config_channels(
    paths: Sequence[Path], *, asset: AppriseAsset, taken: set[str] | None = None
) -> list[Channel]:
    """Every service of the Apprise config files, with its tags; ``${ENV}`` in the files is expanded first.

    A service is identified by its redacted URL, numbered ``#2``, ``#3``… where that is not unique (``taken``
    holds the ids already in use).
    """
    taken = set() if taken is None else taken
    channels: list[Channel] = []
    for path in paths:
        location = path.expanduser()
        what = f"Apprise config {location}"
        try:
            text = location.read_text(encoding="utf-8")
        except OSError as error:
            raise AlertingSetupError(f"{what}: cannot read it ({error.strerror})") from error
        config = AppriseConfig(asset=asset)
        file_format = "yaml" if location.suffix in (".yaml", ".yml") else "text"
        if not config.add_config(expand_env(text, what), asset=asset, format=file_format):
            raise AlertingSetupError(f"{what}: Apprise cannot parse it as {file_format}")
        services = Apprise(asset=asset)
        services.add(config)
        found = list(services)
        if not found:
            raise AlertingSetupError(f"{what}: it defines no usable service")
        for service in found:
            normalised = service.url(privacy=False)  # type: ignore[no-untyped-call]
            channel_id = _unique(redact_url(normalised.partition("?")[0]), taken)  # the query is Apprise's defaults
            channels.append(Channel(id=channel_id, service=service, tags=frozenset(str(tag) for tag in service.tags)))
    return channels


class ChannelRegistry:
    """Every channel the routes can reach, by id, plus which channels each Apprise tag stands for."""

    def __init__(self, channels: Iterable[Channel], *, aliases: Mapping[str, str] | None = None) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            if channel.id in self._channels:
                raise AlertingSetupError(f"two channels share the id {channel.id!r}")
            self._channels[channel.id] = channel
        self._aliases = dict(aliases or {})  # inline URL as configured -> channel id

    @classmethod
    def from_config(cls, config: AlertingConfig) -> ChannelRegistry:
        """Named channels, inline route URLs (one channel per distinct URL) and the Apprise config services.

        Ids that would collide after redaction (two mailboxes on one SMTP host) get ``#2``, ``#3``… in
        configuration order; naming channels in ``alerting.channels`` keeps ids stable when the config changes.
        """
        asset = apprise_asset(config)
        url_ids: dict[str, str] = {}  # expanded URL -> channel id, so the same URL is one channel everywhere
        channels: list[Channel] = []
        taken: set[str] = set()
        for name, url in config.channels.items():
            what = f"channel {name!r}"
            expanded = expand_env(url, what)
            channels.append(Channel(id=name, service=_service(expanded, what, asset)))
            url_ids.setdefault(expanded, name)
            taken.add(name)
        aliases: dict[str, str] = {}
        for route in config.routes:
            for target in route.targets():
                if "://" not in target or target in aliases:
                    continue
                what = f"route {route.name!r}"
                expanded = expand_env(target, what)
                if expanded not in url_ids:
                    url_ids[expanded] = _unique(redact_url(expanded), taken)
                    channels.append(Channel(id=url_ids[expanded], service=_service(expanded, what, asset)))
                aliases[target] = url_ids[expanded]
        channels += load_apprise_config_channels(config.apprise_configs, asset=asset, taken=taken)
        registry = cls(channels, aliases=aliases)
        for route in config.routes:
            for target in route.targets():
                registry.resolve(target)  # an unknown tag fails now, not when the first incident arrives
        return registry

    def get(self, channel_id: str) -> Channel | None:
        return self._channels.get(channel_id)

    def all(self) -> tuple[Channel, ...]:
        return tuple(self._channels.values())

    def tagged(self, tag: str) -> tuple[Channel, ...]:
        return tuple(channel for channel in self._channels.values() if tag in channel.tags)

    def resolve(self, target: str) -> tuple[Channel, ...]:
        """The channels one route target stands for: a channel name, an inline URL or ``tag:NAME``."""
        if target.startswith(TAG_PREFIX):
            tag = target.removeprefix(TAG_PREFIX)
            channels = self.tagged(tag)
            if not channels:
                raise AlertingSetupError(f"no service in alerting.apprise_configs carries the tag {tag!r}")
            return channels
        channel = self._channels.get(self._aliases.get(target, target))
        if channel is None:
            shown = redact_url(target) if "://" in target else target
            raise AlertingSetupError(f"{shown!r} is not a configured channel")
        return (channel,)

    def resolve_all(self, targets: Iterable[str]) -> tuple[Channel, ...]:
        """Channels of several targets, each once, in order (a tag and a name may reach the same channel)."""
        seen: dict[str, Channel] = {}
        for target in targets:
            for channel in self.resolve(target):
                seen.setdefault(channel.id, channel)
        return tuple(seen.values())


def _unique(channel_id: str, taken: set[str]) -> str:
    candidate, number = channel_id, 1
    while candidate in taken:
        number += 1
        candidate = f"{channel_id}#{number}"
    taken.add(candidate)
    return candidate


# ------------------------------------------------------------------------------------------------ schedules


def in_window(window: TimeWindow, moment: time) -> bool:
    if window.start < window.end:
        return window.start <= moment < window.end
    return moment >= window.start or moment < window.end


def schedule_allows(schedule: AlertSchedule, local: datetime) -> bool:
    """Whether a route is active at this local time: outside quiet hours, within hours, on a listed weekday."""
    moment = local.time()
    if any(in_window(quiet, moment) for quiet in schedule.quiet_hours):
        return False
    weekday = local.weekday()
    if schedule.hours is not None:
        if not in_window(schedule.hours, moment):
            return False
        if schedule.hours.start > schedule.hours.end and moment < schedule.hours.end:
            weekday = (weekday - 1) % 7  # the after-midnight part belongs to the day the window started
    return WEEKDAYS[weekday] in schedule.weekdays


class Router:
    """Picks the routes of a transition and the channels of a route; all times are judged in the site's zone."""

    def __init__(self, config: AlertingConfig, channels: ChannelRegistry) -> None:
        self.config = config
        self.channels = channels
        self.zone: tzinfo | None = ZoneInfo(config.timezone) if config.timezone else None
        self._routes = {route.name: route for route in config.routes}

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the configured zone, or in this machine's zone (with its DST rules) when none is set."""
        return moment.astimezone(self.zone) if self.zone is not None else moment.astimezone()

    def route(self, name: str) -> AlertRoute | None:
        return self._routes.get(name)

    def routes_for(
        self,
        *,
        stream_id: str,
        severity: str,
        transition: str,
        at: datetime,
        labels: Sequence[LabelScore] = (),
    ) -> list[AlertRoute]:
        local = self.local(at)
        return [
            route
            for route in self.config.routes
            if transition in route.on
            and (not route.severities or severity in route.severities)
            and (
                not route.labels
                or any(item.label in route.labels and item.score >= route.label_min_score for item in labels)
            )
            and (not route.streams or any(fnmatch.fnmatchcase(stream_id, pattern) for pattern in route.streams))
            and schedule_allows(route.schedule, local)
        ]
