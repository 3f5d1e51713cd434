"""What every request handler shares: the dashboard's services, and who is asking.

A request is authenticated by ``Authorization: Bearer <token>`` (scripts) or by the signed session cookie
(browsers). Requests that change something and arrive with the cookie must also carry the session's CSRF token
in ``X-CSRF-Token``: the cookie alone is sent by the browser whoever made the page, the token only by ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import Engine

from actors.clips import ClipStore
from actors.commands import IncidentCommands
from config import Settings
from events.kafka.bus import Bus
from frontend.auth import Authenticator, LoginThrottle, Operator, Session
from frontend.evidence import EvidenceCache
from frontend.health import HealthMonitor
from frontend.metrics import DashboardMetrics
from frontend.queries import ReadModels
from frontend.sse import Broadcaster, ChangeFeed
from projections.pool import ProjectorPool

CSRF_HEADER = "X-CSRF-Token"
_SESSION_KEY = "distress.session"  # where a request keeps its looked-up session


@dataclass(kw_only=True)
class Dashboard:
    settings: Settings
    engine: Engine  # read-only use: the projectors write through their own engine
    bus: Bus
    read: ReadModels
    auth: Authenticator
    commands: IncidentCommands
    clips: ClipStore
    broadcaster: Broadcaster
    feed: ChangeFeed
    projectors: ProjectorPool | None
    evidence_cache: EvidenceCache
    throttle: LoginThrottle
    metrics: DashboardMetrics
    health: HealthMonitor


def dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


def session_of(request: Request) -> Session | None:
    """The request's session, looked up in the database once per request however many checks ask."""
    if _SESSION_KEY not in request.scope:
        cookie = request.cookies.get(Authenticator.COOKIE)
        request.scope[_SESSION_KEY] = dashboard(request).auth.read_session(cookie) if cookie else None
    session: Session | None = request.scope[_SESSION_KEY]
    return session


def identify(request: Request) -> Operator | None:
    """The operator behind the request's bearer token or session cookie, or None."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return dashboard(request).auth.check_token(credentials.strip())
    session = session_of(request)
    return Operator(name=session.operator, via="session") if session else None


def require_operator(request: Request) -> Operator:
    """FastAPI dependency for reading endpoints: 401 unless signed in or holding a token."""
    operator = identify(request)
    if operator is None:
        raise HTTPException(
            401,
            "sign in, or send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="distress"'},
        )
    return operator


def require_commanding_operator(request: Request) -> Operator:
    """FastAPI dependency for endpoints that change something: also checks the CSRF token of cookie sessions."""
    operator = require_operator(request)
    if operator.via == "session":
        session = session_of(request)
        token = request.headers.get(CSRF_HEADER, "")
        if session is None or not dashboard(request).auth.check_csrf(session, token):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header for this session")
    return operator


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
