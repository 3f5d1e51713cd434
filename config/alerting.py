"""The ``[alerting]`` section of the settings: channels, routes with their schedules and escalation tiers, rate
limits, retries and digests, each validated as the configuration is read (the rules that use them live in
actors/alerting)."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.labels import check_labels
from domain.types import Severity

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
IncidentTransition = Literal["opened", "updated", "escalated", "acknowledged", "resolved", "false_alarm"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class TimeWindow(BaseModel):
    """A daily span of local time written ``"HH:MM-HH:MM"``; it wraps past midnight when end < start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        start, dash, end = value.partition("-")
        if not dash:
            raise ValueError(f"time window {value!r} must look like 'HH:MM-HH:MM'")
        return {"start": start.strip(), "end": end.strip()}

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError(f"time window {self.start:%H:%M}-{self.end:%H:%M} is empty")
        return self


class AlertSchedule(BaseModel):
    """When a route is active (alerting time zone): on ``weekdays``, within ``hours``, outside ``quiet_hours``.

    A window that wraps midnight belongs to the weekday it starts on, so ``fri`` + ``22:00-06:00`` covers Saturday 3 am.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: tuple[Weekday, ...] = Field(default=WEEKDAYS, min_length=1)
    hours: TimeWindow | None = None  # None: the whole day
    quiet_hours: tuple[TimeWindow, ...] = ()


class EscalationTier(BaseModel):
    """Who is told next while an incident stays unacknowledged ``after_minutes`` after its route first fired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_minutes: float = Field(gt=0)
    notify: tuple[str, ...] = Field(min_length=1)


class AlertRoute(BaseModel):
    """Which incident transitions go to which channels, filtered by stream, severity, transition and schedule.

    ``notify`` entries are channel names from ``alerting.channels``, inline Apprise URLs (``${ENV_VAR}`` expanded)
    or ``tag:NAME`` for every service carrying that tag in the ``alerting.apprise_configs`` files.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    streams: tuple[str, ...] = ()  # stream ids or shell globs ("ward-*"); empty: every stream
    severities: tuple[Severity, ...] = ()  # empty: every severity
    # Only incidents whose evidence holds one of these sound labels at label_min_score or more ("alarm" to the
    # fire warden); empty: every incident.
    labels: tuple[str, ...] = ()
    label_min_score: float = Field(default=0.5, gt=0.0, le=1.0)
    on: tuple[IncidentTransition, ...] = Field(default=("opened", "escalated"), min_length=1)
    schedule: AlertSchedule = Field(default_factory=AlertSchedule)
    notify: tuple[str, ...] = Field(min_length=1)
    digest: bool = False  # one summary per digest interval instead of a message per transition
    escalation: tuple[EscalationTier, ...] = ()

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_labels(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRoute:
        delays = [tier.after_minutes for tier in self.escalation]
        if delays != sorted(set(delays)):
            raise ValueError(f"route {self.name!r}: escalation after_minutes must strictly increase, got {delays}")
        if self.digest and self.escalation:
            raise ValueError(f"route {self.name!r}: a digest route cannot escalate")
        return self

    def targets(self) -> tuple[str, ...]:
        return self.notify + tuple(target for tier in self.escalation for target in tier.notify)


class AlertRateLimit(BaseModel):
    """Caps on immediate notifications per sliding window; transitions over a cap go into the route's digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_minutes: float = Field(default=60.0, gt=0)
    per_stream: int | None = Field(default=20, ge=1)  # None: no cap
    overall: int | None = Field(default=60, ge=1)
    exempt_severities: tuple[Severity, ...] = ("critical",)


class AlertRetryPolicy(BaseModel):
    """Backoff between delivery attempts of one alert: first, first x factor, ... capped at ``max_backoff_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=6, ge=1)
    first_backoff_s: float = Field(default=5.0, gt=0)
    factor: float = Field(default=2.0, ge=1.0)
    max_backoff_s: float = Field(default=300.0, gt=0)

    def backoff_s(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th consecutive failure before trying again."""
        return float(min(self.max_backoff_s, self.first_backoff_s * self.factor ** max(0, failed_attempts - 1)))

    @property
    def span_s(self) -> float:
        """The longest time from the first attempt to the last one."""
        return sum(self.backoff_s(attempt) for attempt in range(1, self.max_attempts))


class AlertingConfig(BaseModel):
    """Notification routing, escalation, digests, rate limits and retries (the rules live in actors/alerting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dashboard_url: str = "http://127.0.0.1:8000"  # messages link to <dashboard_url>/incidents/<incident id>
    timezone: str | None = None  # IANA zone for schedules and message times; None: this machine's zone
    apprise_configs: tuple[Path, ...] = ()  # Apprise config files (e.g. ~/.apprise.yaml) whose tags routes use
    channels: dict[str, str] = Field(default_factory=dict)  # name -> Apprise URL, ${ENV_VAR} expanded at start
    routes: tuple[AlertRoute, ...] = ()
    digest_minutes: float = Field(default=60.0, gt=0)
    max_delay_minutes: float = Field(default=60.0, gt=0)  # older transitions are never notified (replays, backlog)
    rate_limit: AlertRateLimit = Field(default_factory=AlertRateLimit)
    retry: AlertRetryPolicy = Field(default_factory=AlertRetryPolicy)
    attach_clips: bool = True  # attach the evidence clip where the channel supports attachments
    max_parallel_deliveries: int = Field(default=8, ge=1, le=64)
    # How long one pass waits for deliveries before consuming again; slower ones finish in a later pass.
    delivery_wait_s: float = Field(default=1.0, ge=0, le=60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> AlertingConfig:
        for name in self.channels:
            if not re.match(_NAME, name):
                raise ValueError(f"channel name {name!r} must match {_NAME}")
        names = [route.name for route in self.routes]
        if len(names) != len(set(names)):
            raise ValueError(f"route names must be unique, got {names}")
        for route in self.routes:
            for target in route.targets():
                if "://" in target or (target.startswith("tag:") and len(target) > 4):
                    continue
                if target not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none defined"
                    raise ValueError(f"route {route.name!r} names unknown channel {target!r} (channels: {known})")
        return self

    @property
    def history_horizon_minutes(self) -> float:
        """How far back state is rebuilt at start: every timer still able to fire started within this span."""
        longest_escalation = max((tier.after_minutes for route in self.routes for tier in route.escalation), default=0)
        waits = (longest_escalation, self.digest_minutes, self.retry.span_s / 60, self.rate_limit.window_minutes)
        return self.max_delay_minutes + max(waits) + 10.0
