"""The dashboard application: API, pages, static assets, live feed and in-process projectors in one ASGI app.

Static assets are files in this package (no CDN: sites may be offline), and the Content-Security-Policy allows
nothing but this origin, so neither an injected script nor a third-party one can run in an operator's browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from actors.clips import ClipStore
from actors.commands import IncidentCommands
from config import Settings
from frontend import api, views
from frontend.auth import Authenticator, LoginThrottle
from frontend.context import Dashboard
from frontend.evidence import EvidenceCache
from frontend.health import WATCH_INTERVAL_S, HealthMonitor, watch_health
from frontend.metrics import DashboardMetrics
from frontend.queries import ReadModels
from frontend.sse import Broadcaster, ChangeFeed, follow
from projections.database import create_database_engine, open_database
from projections.pool import ProjectorPool

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
SIGN_IN_MAX_BYTES = 16 * 1024


def reader_engine(settings: Settings) -> Engine:
    """An engine for the dashboard's reads. SQLite readers get plain (deferred) transactions, read-only, so a
    page view never takes the writer lock the projectors' engine takes with BEGIN IMMEDIATE."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite":
        return create_database_engine(settings.sqlalchemy_url)
    engine = create_engine(url, connect_args={"timeout": 30.0})

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


class _Headers:
    """Pure ASGI middleware (streams pass through untouched): security headers, no caching of API answers
    unless a route says otherwise, and request metrics labelled by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, metrics: DashboardMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if scope["path"].startswith("/api/") or scope["path"].startswith("/fragments/"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            if route != "/api/events":
                self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class _BodyLimit:
    """Pure ASGI middleware: a request body over its limit (``SIGN_IN_MAX_BYTES`` for sign-in, ``max_bytes`` for
    the rest) is refused with 413 before it is read whole: at once when Content-Length says so, else as soon as the
    bytes streamed in pass the limit, so no route ever buffers, parses or echoes an oversized body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = min(SIGN_IN_MAX_BYTES, self.max_bytes) if scope["path"] == "/api/session" else self.max_bytes
        too_large = f"the request body is over {limit} bytes"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, too_large)  # raised inside the route, answered by its exception handling
            return message

        await self.app(scope, counted, send)


async def _invalid_input(request: Request, error: Exception) -> JSONResponse:
    """422 saying where and why, without FastAPI's echo of the input: a password or token must never come back."""
    assert isinstance(error, RequestValidationError)
    problems = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]} for item in error.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


def create_app(settings: Settings, auth: Authenticator) -> FastAPI:
    """The dashboard for ``settings``; ``auth`` holds the operator accounts (see ``frontend.server``)."""
    writer = open_database(settings)  # migrates the schema; the projectors write through it
    engine = reader_engine(settings)
    bus = settings.bus()
    read = ReadModels(engine, settings.streams)
    broadcaster = Broadcaster()
    projectors = ProjectorPool(writer, bus) if settings.dashboard.run_projectors else None
    metrics = DashboardMetrics(
        incident_counts=read.incident_counts,
        live_clients=lambda: broadcaster.clients,
        projected_events=lambda: (
            {} if projectors is None else {name: status.events for name, status in projectors.statuses.items()}
        ),
    )
    state = Dashboard(
        settings=settings,
        engine=engine,
        bus=bus,
        read=read,
        auth=auth,
        commands=IncidentCommands(bus),
        clips=ClipStore(settings.clips_dir),
        broadcaster=broadcaster,
        feed=ChangeFeed(engine),
        projectors=projectors,
        evidence_cache=EvidenceCache(),
        throttle=LoginThrottle(settings.dashboard.sign_in_max_failures, settings.dashboard.sign_in_window_s),
        metrics=metrics,
        health=HealthMonitor(settings, read.ping, projectors, lambda: broadcaster.clients),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        topics = asyncio.create_task(asyncio.to_thread(_ensure_topics, settings))
        if projectors is not None:
            projectors.start()
        feed = asyncio.create_task(follow(state.feed, broadcaster, settings.dashboard.poll_interval_s))
        health = asyncio.create_task(watch_health(state.health, broadcaster, WATCH_INTERVAL_S))
        try:
            yield
        finally:
            feed.cancel()
            health.cancel()
            broadcaster.close()
            for task in (feed, health):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await topics
            if projectors is not None:
                await asyncio.to_thread(projectors.stop)
            engine.dispose()
            writer.dispose()

    app = FastAPI(
        title="distress dashboard",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        description="Operator API over the distress read models. Authenticate with "
        "`Authorization: Bearer <token>` or the session cookie from `POST /api/session`; "
        "commands made with the cookie also need `X-CSRF-Token`.",
    )
    app.state.dashboard = state
    app.include_router(api.router)
    app.add_api_route("/metrics", api.metrics, methods=["GET"], tags=["operations"], response_class=PlainTextResponse)
    app.include_router(views.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(RequestValidationError, _invalid_input)
    app.add_middleware(_BodyLimit, max_bytes=settings.dashboard.max_body_kbytes * 1024)
    app.add_middleware(_Headers, metrics=metrics)  # refusals carry the security headers too
    if settings.dashboard.trusted_proxies:  # outermost: every layer sees the client the proxy names
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.dashboard.trusted_proxies))
    return app


def _ensure_topics(settings: Settings) -> None:
    """Create missing topics so the projectors can start; a broker that is down is only logged (they retry)."""
    try:
        settings.ensure_topics()
    except Exception as error:  # the broker may come up later; projectors and commands report it then
        log.warning("could not create topics", extra={"error": f"{type(error).__name__}: {error}"})
