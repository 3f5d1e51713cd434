"""A real dashboard (uvicorn on a free port) and an HTTP client speaking to it as a browser or a proxy would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from config import Settings
from frontend.auth import Authenticator
from frontend.server import DashboardServer


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[DashboardServer, httpx2.Client]]:
    """The dashboard for ``settings`` on 127.0.0.1, and a cookie-keeping client that does not follow redirects."""
    with (
        DashboardServer(settings, host="127.0.0.1", port=0) as server,
        httpx2.Client(base_url=server.url, follow_redirects=False, timeout=60.0) as client,
    ):
        yield server, client


def sign_in(client: httpx2.Client, **credentials: str) -> str:
    """Signs in (``token=...`` or ``username=..., password=...``); returns the session's CSRF token."""
    response = client.post("/api/session", json=credentials)
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def session_cookie(client: httpx2.Client) -> str:
    cookie: str = client.cookies[Authenticator.COOKIE]
    return cookie
