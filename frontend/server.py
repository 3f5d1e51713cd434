"""Serving the dashboard: in the foreground (`distress dashboard`) or on a background thread (`distress run`).

When no operator accounts are configured, a one-time token is made at start and only its digest is kept (in the
database, where its first use marks it used); the sign-in link carries it in the URL *fragment*
(``/login#token=...``), which browsers never send to a server, so it cannot end up in an access log or a proxy.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from config import Settings
from frontend.app import create_app, reader_engine
from frontend.auth import Authenticator, add_sign_in_link, load_or_create_secret, rotate_secret
from projections.database import open_database
from projections.sessions import SessionStore

GRACEFUL_SHUTDOWN_S = 2


def session_key_path(settings: Settings) -> Path:
    return settings.data_dir / "dashboard" / "session.key"


def session_store(settings: Settings) -> SessionStore:
    """Where sessions are recorded: the projection database (migrated here when it is new)."""
    return SessionStore(writer=open_database(settings), reader=reader_engine(settings))


def rotate_session_key(settings: Settings) -> int:
    """Ends every session in the database, then replaces the session key; returns how many sessions ended.
    A running dashboard refuses the ended sessions at once, and signs with the new key from its next start."""
    store = session_store(settings)
    try:
        ended = store.end_all(datetime.now(UTC))
    finally:
        store.dispose()
    rotate_secret(session_key_path(settings))
    return ended


def issue_sign_in_link(settings: Settings) -> str:
    """A fresh one-time sign-in token for the dashboards on this database, valid dashboard.sign_in_link_minutes."""
    store = session_store(settings)
    try:
        return add_sign_in_link(store, settings.dashboard.sign_in_link_minutes)
    finally:
        store.dispose()


def build_authenticator(settings: Settings) -> tuple[Authenticator, str | None]:
    """The configured accounts, or a one-time sign-in token (returned) when there are none."""
    config = settings.dashboard
    auth = Authenticator.from_config(config, load_or_create_secret(session_key_path(settings)), session_store(settings))
    return auth, None if config.users or config.tokens else auth.add_link(config.sign_in_link_minutes)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError:
        listener.close()
        raise
    return listener


class DashboardServer:
    """The dashboard app on a socket bound up front (so port 0 yields a known free port before serving)."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
        self.auth, self.one_time_token = build_authenticator(settings)
        self.app = create_app(settings, self.auth)
        self.socket = _listen(host or settings.dashboard.host, settings.dashboard.port if port is None else port)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_config=None,
                access_log=False,
                lifespan="on",
                proxy_headers=False,  # X-Forwarded-* is believed only from dashboard.trusted_proxies (frontend.app)
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    @property
    def sign_in_url(self) -> str:
        return f"{self.url}login" + (f"#token={self.one_time_token}" if self.one_time_token else "")

    def serve(self) -> None:
        """Serve in this thread until Ctrl-C / SIGTERM."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self, timeout_s: float = 60.0) -> None:
        """Serve on a background thread; returns once the app has started (its lifespan ran)."""
        self._thread = threading.Thread(target=self.serve, name="dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the dashboard stopped while starting (see the log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dashboard did not start within {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.auth.store.dispose()

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
