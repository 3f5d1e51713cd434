"""The ``[dashboard]`` section of the settings: where the operator dashboard listens, its operator accounts and
tokens (stored only as hashes), sign-in throttling and trusted proxies."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_OPERATOR_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}$"


class DashboardUser(BaseModel):
    """An operator who signs in with a password. Only a salted scrypt hash is stored
    (``distress dashboard hash-password``); ``name`` is recorded as the actor of every command they issue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_OPERATOR_NAME)
    password_hash: str = Field(pattern=r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$")


class DashboardToken(BaseModel):
    """A bearer token (scripts, the API, signing in), stored as its SHA-256 (``distress dashboard new-token``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_OPERATOR_NAME)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DashboardConfig(BaseModel):
    """The operator dashboard and HTTP API (frontend/). With no users and no tokens configured, the dashboard
    makes a one-time token at start and prints a sign-in link, so it is never served without authentication."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: any free port
    users: tuple[DashboardUser, ...] = ()
    tokens: tuple[DashboardToken, ...] = ()
    session_hours: float = Field(default=12.0, gt=0, le=720)
    max_body_kbytes: int = Field(default=64, ge=1, le=65_536)  # any request body; sign-in takes at most 16 KB
    # Proxies (IP addresses or networks, "*" for any) whose X-Forwarded-For / -Proto are believed; none by default,
    # so a client cannot pick its own address and escape the sign-in throttle.
    trusted_proxies: tuple[str, ...] = ()
    # Wrong passwords allowed per account and client (and per client over all accounts, x5) within the window.
    sign_in_max_failures: int = Field(default=10, ge=1, le=1000)
    sign_in_window_s: int = Field(default=300, ge=1, le=86_400)
    # Without accounts, the start prints a sign-in link that works once, within this many minutes.
    sign_in_link_minutes: float = Field(default=15.0, gt=0, le=1440)
    run_projectors: bool = True  # follow the topics into the read models in-process (idempotent next to others)
    poll_interval_s: float = Field(default=0.5, gt=0, le=10)  # how often live updates look for changes
    stale_after_s: float = Field(default=15.0, gt=0)  # a running stream silent this long is shown as silent

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError as error:
                    raise ValueError(f"trusted proxy {entry!r} is not an IP address, a network or '*'") from error
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DashboardConfig:
        for kind, names in (
            ("users", [user.name for user in self.users]),
            ("tokens", [token.name for token in self.tokens]),
        ):
            if len(names) != len(set(names)):
                raise ValueError(f"dashboard {kind} must have unique names, got {names}")
            if "system" in names:
                raise ValueError("the operator name 'system' is reserved for automatic decisions")
        return self
