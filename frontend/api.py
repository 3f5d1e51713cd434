"""The HTTP API (``/api``): read models, evidence, operator commands, live updates, health and metrics.

Commands go through ``actors.commands.IncidentCommands``, the CLI's path: each is validated against the incident's
own event history and appended to the incidents topic with the signed-in operator as its actor. Nothing here
writes to the database; the projectors turn the appended events into rows, and the live feed tells the pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from actors.clips import ClipError
from actors.commands import InvalidCommand, InvalidTransition, UnknownIncident
from config.redaction import redact_text
from domain.types import CLOSED_STATUSES, IncidentStatus, Severity
from events.catalogue import IncidentEvent
from events.kafka.connection import TRANSPORT_ERRORS
from frontend.auth import Attempt, Operator
from frontend.context import (
    Dashboard,
    client_address,
    dashboard,
    require_commanding_operator,
    require_operator,
    session_of,
)
from frontend.evidence import (
    ClipGeometry,
    EvidenceUnavailable,
    RangeNotSatisfiable,
    assemble,
    byte_range,
    evidence_span,
    read_stream_span,
    waveform,
)
from frontend.metrics import CONTENT_TYPE
from frontend.queries import IncidentFilter, clip_of
from frontend.schemas import (
    INCIDENT_ID_PATTERN,
    STREAM_ID_PATTERN,
    CommandBody,
    CommandResult,
    Evidence,
    Health,
    IncidentDetail,
    IncidentPage,
    IncidentSummary,
    LoginBody,
    NoteBody,
    SessionOut,
    StreamTile,
    Waveform,
)
from frontend.sse import event_stream

router = APIRouter(prefix="/api")
DashboardDep = Annotated[Dashboard, Depends(dashboard)]
Reader = Annotated[Operator, Depends(require_operator)]
Commander = Annotated[Operator, Depends(require_commanding_operator)]
IncidentId = Annotated[str, Path(pattern=INCIDENT_ID_PATTERN, description="<stream id>:<12 hex digits>")]
MAX_PAGE = 200


def incident_filter(
    status: Annotated[list[IncidentStatus], Query(description="repeatable; none: every status")] = [],  # noqa: B006
    severity: Annotated[list[Severity], Query(description="repeatable; none: every severity")] = [],  # noqa: B006
    stream_id: Annotated[str | None, Query(pattern=STREAM_ID_PATTERN)] = None,
    since: Annotated[AwareDatetime | None, Query(description="onset at or after (ISO 8601 with zone)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="onset before (ISO 8601 with zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> IncidentFilter:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    return IncidentFilter(
        statuses=tuple(dict.fromkeys(status)),
        severities=tuple(dict.fromkeys(severity)),
        stream_id=stream_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


# ------------------------------------------------------------------------------------- session and health


@router.post(
    "/session",
    response_model=SessionOut,
    tags=["session"],
    responses={401: {"description": "wrong credentials"}, 429: {"description": "too many failures"}},
)
def sign_in(body: LoginBody, request: Request, response: Response, dash: DashboardDep) -> SessionOut:
    """Sign in with a user name and password, or with a token; sets the session cookie.

    Wrong passwords are throttled per account and client (``auth.LoginThrottle``): a throttled attempt is answered
    429 without its password being checked, so guessing on gains nothing. A token is always checked, and a valid
    one never refused: nobody's failures can lock its holder out.
    """
    if body.token is not None:
        operator = dash.auth.check_token(body.token) or dash.auth.redeem_link(body.token)
        if operator is None:
            dash.metrics.logins.labels("rejected").inc()
            raise HTTPException(401, "wrong user name, password or token")
    else:
        assert body.username is not None and body.password is not None
        device = dash.auth.device_of(request.cookies.get(dash.auth.DEVICE_COOKIE), body.username)
        attempt = Attempt(account=body.username, client=client_address(request), device=device)
        wait_s = dash.throttle.retry_after(attempt)
        if wait_s is not None:
            dash.metrics.logins.labels("throttled").inc()
            raise HTTPException(
                429,
                f"too many failed sign-ins; try again in {wait_s:.0f} s",
                headers={"Retry-After": str(round(wait_s))},
            )
        operator = dash.auth.check_password(body.username, body.password)
        if operator is None:
            dash.throttle.failed(attempt)
            dash.metrics.logins.labels("rejected").inc()
            raise HTTPException(401, "wrong user name, password or token")
        dash.throttle.succeeded(attempt)
        _set_cookie(
            request,
            response,
            dash.auth.DEVICE_COOKIE,
            dash.auth.device_cookie(operator),
            max_age=dash.auth.DEVICE_S,
            path="/api/session",
        )
    dash.metrics.logins.labels("accepted").inc()
    cookie, session = dash.auth.issue_session(operator)
    _set_cookie(request, response, dash.auth.COOKIE, cookie, max_age=int(dash.auth.session_s), path="/")
    return SessionOut(
        operator=operator.name,
        via=operator.via,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        csrf_token=dash.auth.csrf_token(session),
    )


def _set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int, path: str) -> None:
    """Script cannot read it, other sites' requests do not carry it, and over HTTPS it is never sent in clear."""
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", secure=request.url.scheme == "https", path=path
    )


@router.get("/session", response_model=SessionOut, tags=["session"])
def who_am_i(request: Request, operator: Reader, dash: DashboardDep) -> SessionOut:
    session = session_of(request) if operator.via == "session" else None
    return SessionOut(
        operator=operator.name,
        via=operator.via,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC) if session else None,
        csrf_token=dash.auth.csrf_token(session) if session else None,
    )


@router.delete("/session", status_code=204, tags=["session"])
def sign_out(request: Request, operator: Commander, dash: DashboardDep) -> Response:
    """Revokes the session (the cookie stops working even where a copy of it survives)."""
    session = session_of(request)
    if session is not None:
        dash.auth.revoke(session)
    response = Response(status_code=204)
    response.delete_cookie(dash.auth.COOKIE, path="/")
    return response


@router.get(
    "/health",
    response_model=Health,
    tags=["operations"],
    responses={503: {"model": Health, "description": "degraded: `reasons` says what is wrong"}},
)
def health(response: Response, dash: DashboardDep) -> Health:
    """Event log, database and pipeline (lag per stage): 200 when all is well, 503 with the reasons when not.

    No authentication, and nothing in it is secret. Probes are reused for a few seconds and bounded by short
    timeouts, so this answers within seconds even while the broker is down.
    """
    report = dash.health.report()
    if report.status != "ok":
        response.status_code = 503
    return report


def metrics(operator: Reader, dash: DashboardDep) -> Response:
    """Prometheus exposition (mounted at ``/metrics``, outside ``/api``, where scrapers look)."""
    return Response(dash.metrics.exposition(), media_type=CONTENT_TYPE)


# ------------------------------------------------------------------------------------------ read models


@router.get("/streams", response_model=list[StreamTile], tags=["streams"])
def streams(operator: Reader, dash: DashboardDep) -> list[StreamTile]:
    """Every stream with its status, sound level, top labels, last transcript line and active incidents."""
    return dash.read.streams(now=datetime.now(UTC), stale_after_s=dash.settings.dashboard.stale_after_s)


@router.get("/incidents", response_model=IncidentPage, tags=["incidents"])
def incidents(
    operator: Reader, dash: DashboardDep, wanted: Annotated[IncidentFilter, Depends(incident_filter)]
) -> IncidentPage:
    """Incidents, newest onset first, filtered and paged."""
    return dash.read.incidents(wanted)


@router.get(
    "/incidents/{incident_id}",
    response_model=IncidentDetail,
    tags=["incidents"],
    responses={404: {"description": "no such incident"}},
)
def incident(incident_id: IncidentId, operator: Reader, dash: DashboardDep) -> IncidentDetail:
    """One incident with its timeline (who did what, when), alert deliveries and the actions allowed now."""
    detail = dash.read.incident_detail(incident_id)
    if detail is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return detail


def load_evidence(dash: Dashboard, summary: IncidentSummary, onset_sample: int) -> Evidence:
    """Scores and transcripts around an incident, from the topics (cached once the incident is closed)."""
    key = (summary.incident_id, summary.updated_at)
    closed = summary.status in CLOSED_STATUSES
    cached = dash.evidence_cache.get(key) if closed else None
    if cached is not None:
        return cached
    catalogue = dash.bus.catalogue
    start, end = evidence_span(summary, datetime.now(UTC), dash.settings.incidents.clip_pre_s)
    problem: str | None = None
    try:
        events = read_stream_span(
            dash.bus, [catalogue.scores.name, catalogue.transcripts.name], summary.stream_id, start, end
        )
    except EvidenceUnavailable as error:
        events, problem = None, redact_text(f"score history and word times unavailable: {error}")
    clip_url = f"/api/incidents/{summary.incident_id}/clip" if summary.has_clip else None
    evidence = assemble(
        summary,
        ClipGeometry.of(onset_sample, dash.settings.incidents.clip_pre_s),
        events,
        clip_url=clip_url,
        problem=problem,
    )
    if closed and problem is None:
        dash.evidence_cache.put(key, evidence)
    return evidence


def incident_evidence(dash: Dashboard, incident_id: str) -> Evidence | None:
    summary = dash.read.incident(incident_id)
    found = clip_of(dash.engine, incident_id)
    if summary is None or found is None:
        return None
    return load_evidence(dash, summary, onset_sample=found[2])


@router.get(
    "/incidents/{incident_id}/evidence",
    response_model=Evidence,
    tags=["incidents"],
    responses={404: {"description": "no such incident"}},
)
def evidence(incident_id: IncidentId, operator: Reader, dash: DashboardDep) -> Evidence:
    """Label scores over time, transcripts with word times and distress phrases marked, and where the clip is."""
    found = incident_evidence(dash, incident_id)
    if found is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return found


def _clip_bytes(dash: Dashboard, incident_id: str) -> tuple[bytes, str]:
    """The verified WAV bytes of an incident's clip and their SHA-256."""
    found = clip_of(dash.engine, incident_id)
    if found is None:
        raise HTTPException(404, f"no incident {incident_id}")
    sha256 = found[0]
    if sha256 is None:
        raise HTTPException(404, f"incident {incident_id} has no evidence clip (privacy mode, or not written yet)")
    if not dash.clips.path_for(sha256).is_file():
        raise HTTPException(404, f"the evidence clip of {incident_id} is not in this dashboard's clip store")
    try:
        return dash.clips.read(sha256), sha256
    except ClipError as error:  # the file no longer matches its hash
        raise HTTPException(500, f"evidence clip of {incident_id} failed its integrity check") from error


@router.get(
    "/incidents/{incident_id}/clip",
    tags=["incidents"],
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "the whole clip"},
        206: {"content": {"audio/wav": {}}, "description": "the requested byte range"},
        304: {"description": "unchanged since the ETag the client has"},
        404: {"description": "no incident, or no clip"},
        416: {"description": "range not satisfiable"},
    },
)
def clip(incident_id: IncidentId, request: Request, operator: Reader, dash: DashboardDep) -> Response:
    """The evidence clip as WAV, with byte-range support (players seek with range requests)."""
    data, sha256 = _clip_bytes(dash, incident_id)
    etag = f'"{sha256}"'  # content-addressed: the hash is the version
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        "ETag": etag,
        "Content-Disposition": f'inline; filename="{incident_id.replace(":", "_")}.wav"',
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        wanted = byte_range(request.headers.get("range"), len(data))
    except RangeNotSatisfiable as error:
        raise HTTPException(416, str(error), headers={"Content-Range": f"bytes */{len(data)}"}) from error
    if wanted is None:
        return Response(data, media_type="audio/wav", headers=headers)
    start, end = wanted
    return Response(
        data[start : end + 1],
        status_code=206,
        media_type="audio/wav",
        headers={**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"},
    )


@router.get(
    "/incidents/{incident_id}/waveform",
    response_model=Waveform,
    tags=["incidents"],
    responses={404: {"description": "no incident, or no clip"}},
)
def clip_waveform(
    incident_id: IncidentId, operator: Reader, dash: DashboardDep, points: Annotated[int, Query(ge=16, le=4000)] = 800
) -> Waveform:
    """Peaks of the evidence clip for drawing its waveform."""
    return waveform(_clip_bytes(dash, incident_id)[0], points)


# --------------------------------------------------------------------------------------------- commands


def _run_command(
    dash: Dashboard, incident_id: str, action: str, call: Callable[[], IncidentEvent], actor: str
) -> CommandResult:
    try:
        event = call()
    except UnknownIncident as error:
        outcome, status, detail = "unknown", 404, str(error)
    except InvalidTransition as error:
        outcome, status, detail = "refused", 409, str(error)
    except InvalidCommand as error:
        outcome, status, detail = "invalid", 422, str(error)
    except TRANSPORT_ERRORS as error:
        outcome, status, detail = "unavailable", 503, redact_text(f"the event log is unavailable: {error}")
    else:
        dash.metrics.commands.labels(action, "appended").inc()
        return CommandResult(
            incident_id=incident_id,
            event_id=event.event_id,
            event_type=event.event_type,
            actor=actor,
            occurred_at=event.occurred_at,
        )
    dash.metrics.commands.labels(action, outcome).inc()
    raise HTTPException(status, detail)


_COMMAND_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "no such incident"},
    409: {"description": "not allowed in the incident's state"},
    422: {"description": "invalid input"},
    503: {"description": "the event log (Kafka) is unavailable"},
}


@router.post(
    "/incidents/{incident_id}/acknowledge",
    response_model=CommandResult,
    tags=["commands"],
    responses=_COMMAND_RESPONSES,
)
def acknowledge(incident_id: IncidentId, body: CommandBody, operator: Commander, dash: DashboardDep) -> CommandResult:
    """Someone is on it: appends IncidentAcknowledged (this stops escalation)."""
    return _run_command(
        dash,
        incident_id,
        "acknowledge",
        lambda: dash.commands.acknowledge(incident_id, actor=operator.name, note=body.note),
        operator.name,
    )


@router.post(
    "/incidents/{incident_id}/resolve", response_model=CommandResult, tags=["commands"], responses=_COMMAND_RESPONSES
)
def resolve(incident_id: IncidentId, body: CommandBody, operator: Commander, dash: DashboardDep) -> CommandResult:
    """Appends IncidentResolved."""
    return _run_command(
        dash,
        incident_id,
        "resolve",
        lambda: dash.commands.resolve(incident_id, actor=operator.name, note=body.note),
        operator.name,
    )


@router.post(
    "/incidents/{incident_id}/false-alarm",
    response_model=CommandResult,
    tags=["commands"],
    responses=_COMMAND_RESPONSES,
)
def false_alarm(incident_id: IncidentId, body: CommandBody, operator: Commander, dash: DashboardDep) -> CommandResult:
    """Appends IncidentMarkedFalseAlarm (the scorer learns from it)."""
    return _run_command(
        dash,
        incident_id,
        "false_alarm",
        lambda: dash.commands.mark_false_alarm(incident_id, actor=operator.name, note=body.note),
        operator.name,
    )


@router.post(
    "/incidents/{incident_id}/notes", response_model=CommandResult, tags=["commands"], responses=_COMMAND_RESPONSES
)
def add_note(incident_id: IncidentId, body: NoteBody, operator: Commander, dash: DashboardDep) -> CommandResult:
    """Appends IncidentNoteAdded."""
    return _run_command(
        dash,
        incident_id,
        "note",
        lambda: dash.commands.add_note(incident_id, actor=operator.name, note=body.note),
        operator.name,
    )


# ------------------------------------------------------------------------------------------------- live


@router.get(
    "/events",
    tags=["live"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "events: hello, incidents, streams, alerts, resync"}
    },
)
async def live_events(operator: Reader, dash: DashboardDep) -> StreamingResponse:
    """Server-sent events telling a page what changed; it then re-fetches what it shows."""
    return StreamingResponse(
        event_stream(dash.broadcaster, {"operator": operator.name}),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
