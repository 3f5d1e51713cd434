"""Server-rendered pages and the fragments the pages re-fetch when the live feed says something changed.

Every fragment is rendered by the same template as the page that first shows it, so an update looks exactly
like a reload. Pages redirect to the sign-in page when there is no session; fragments answer 401 (the page's
script then goes to the sign-in page itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from frontend.api import IncidentId, incident_evidence, incident_filter
from frontend.auth import Operator, local_path
from frontend.context import Dashboard, dashboard, identify, session_of
from frontend.queries import IncidentFilter
from frontend.schemas import Evidence, IncidentDetail, IncidentSummary

TEMPLATES_DIR = FilePath(__file__).resolve().parent / "templates"
router = APIRouter(include_in_schema=False)
DashboardDep = Annotated[Dashboard, Depends(dashboard)]
STATUS_LABELS = {"open": "Open", "acknowledged": "Acknowledged", "resolved": "Resolved", "false_alarm": "False alarm"}
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 180, 28
# The classifier's "nothing in particular" label: drawn in a neutral grey, never in an alarm colour.
BACKGROUND_LABEL = "background"
# An incident opened this long after its onset was detected late (the pipeline was behind or down): two of three
# one-second windows and the stages' latency take a few seconds.
LATE_DETECTION_S = 15.0


def _clock(moment: datetime | None) -> str:
    """Every time on the pages is UTC and says so (alert messages name their zone too); no browser rewrites it."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _detection_delay_s(incident: IncidentSummary) -> float:
    return (incident.opened_at - incident.onset_at).total_seconds()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        clock=_clock,
        ago=_ago,
        status_label=lambda status: STATUS_LABELS.get(status, status),
        iso=lambda moment: moment.isoformat() if moment else "",
        detection_delay_s=_detection_delay_s,
        duration=_duration,
    )
    environment.globals.update(late_detection_s=LATE_DETECTION_S)
    return environment


TEMPLATES = _environment()


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status_code)


# ---------------------------------------------------------------------------------------------- chart


@dataclass(frozen=True, kw_only=True)
class Series:
    name: str
    css_class: str
    points: str  # SVG polyline points


@dataclass(frozen=True, kw_only=True)
class ScoreChart:
    width: int
    height: int
    series: list[Series]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    onset_x: float | None


def score_chart(evidence: Evidence) -> ScoreChart | None:
    """The fused score and the top labels over time, as SVG polylines (no script needed to see them)."""
    points = evidence.scores
    if len(points) < 2:
        return None
    first, last = points[0].t_s, points[-1].t_s
    span = max(last - first, 1e-6)

    def x(t_s: float) -> float:
        return round(CHART_PAD + (t_s - first) / span * (CHART_WIDTH - 2 * CHART_PAD), 1)

    def y(score: float) -> float:
        return round(CHART_HEIGHT - CHART_PAD - min(1.0, max(0.0, score)) * (CHART_HEIGHT - 2 * CHART_PAD), 1)

    colours = iter(range(len(evidence.top_labels)))
    series = [
        Series(
            name=label,
            css_class="series-background" if label == BACKGROUND_LABEL else f"series-{next(colours)}",
            points=" ".join(f"{x(point.t_s)},{y(point.labels.get(label, 0.0))}" for point in points),
        )
        for label in evidence.top_labels
    ]
    series.append(
        Series(
            name="distress score",
            css_class="series-score",  # last: drawn on top
            points=" ".join(f"{x(point.t_s)},{y(point.score)}" for point in points),
        )
    )
    step = _tick_step(span)
    tick = first - first % step + (step if first % step else 0.0)
    x_ticks: list[tuple[float, str]] = []
    while tick <= last + 1e-9:
        x_ticks.append((x(tick), f"{tick:+.0f} s" if step >= 1 else f"{tick:+.1f} s"))
        tick += step
    return ScoreChart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        series=series,
        x_ticks=x_ticks,
        y_ticks=[(y(value), f"{value:.1f}") for value in (0.0, 0.5, 1.0)],
        onset_x=x(0.0) if first <= 0.0 <= last else None,
    )


def _tick_step(span: float) -> float:
    return next((step for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300) if span / step <= 8), 600.0)


# ---------------------------------------------------------------------------------------------- pages


def _page_context(request: Request, dash: Dashboard, operator: Operator) -> dict[str, Any]:
    session = session_of(request)
    return {
        "operator": operator,
        "csrf_token": dash.auth.csrf_token(session) if session else "",
        "active_count": dash.read.active_incident_count(),
    }


def _to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


@router.get("/", response_class=HTMLResponse)
def dashboard_page(
    request: Request, dash: DashboardDep, wanted: Annotated[IncidentFilter, Depends(incident_filter)]
) -> Response:
    operator = identify(request)
    if operator is None:
        return _to_sign_in(request)
    return render(
        "dashboard.html",
        **_page_context(request, dash, operator),
        **_streams_context(dash),
        **_incidents_context(request, dash, wanted),
        stream_ids=dash.read.stream_ids(),
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(incident_id: IncidentId, request: Request, dash: DashboardDep) -> Response:
    operator = identify(request)
    if operator is None:
        return _to_sign_in(request)
    detail = dash.read.incident_detail(incident_id)
    if detail is None:
        return render(
            "not_found.html", status_code=404, **_page_context(request, dash, operator), what=f"incident {incident_id}"
        )
    evidence = incident_evidence(dash, incident_id)
    assert evidence is not None
    return render(
        "incident.html", **_page_context(request, dash, operator), detail=detail, **_evidence_context(evidence)
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next_path: Annotated[str, Query(alias="next", max_length=2000)] = "/") -> Response:
    """``next`` must be a path on this site (``auth.local_path``): anything else would be an open redirect."""
    target = local_path(next_path)
    if identify(request) is not None:
        return RedirectResponse(target, status_code=303)
    return render("login.html", next=target)


# ------------------------------------------------------------------------------------------- fragments


def _fragment_operator(request: Request) -> Operator:
    operator = identify(request)
    if operator is None:
        raise HTTPException(401, "signed out")
    return operator


Fragment = Annotated[Operator, Depends(_fragment_operator)]


def _streams_context(dash: Dashboard) -> dict[str, Any]:
    return {"streams": dash.read.streams(now=datetime.now(UTC), stale_after_s=dash.settings.dashboard.stale_after_s)}


def _incidents_context(request: Request, dash: Dashboard, wanted: IncidentFilter) -> dict[str, Any]:
    page = dash.read.incidents(wanted)
    query = [(key, value) for key, value in request.query_params.multi_items() if key != "offset"]

    def page_link(offset: int) -> str:
        return "?" + "&".join(f"{quote(key)}={quote(value)}" for key, value in [*query, ("offset", str(offset))])

    previous = page_link(max(0, wanted.offset - wanted.limit)) if wanted.offset > 0 else None
    following = page_link(wanted.offset + wanted.limit) if wanted.offset + wanted.limit < page.total else None
    return {"page": page, "wanted": wanted, "previous_page": previous, "next_page": following}


def _evidence_context(evidence: Evidence) -> dict[str, Any]:
    return {"evidence": evidence, "chart": score_chart(evidence)}


def _detail(dash: Dashboard, incident_id: str) -> IncidentDetail:
    detail = dash.read.incident_detail(incident_id)
    if detail is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return detail


@router.get("/fragments/streams", response_class=HTMLResponse)
def streams_fragment(operator: Fragment, dash: DashboardDep) -> Response:
    return render("_streams.html", **_streams_context(dash))


@router.get("/fragments/active-count", response_class=HTMLResponse)
def active_count_fragment(operator: Fragment, dash: DashboardDep) -> Response:
    return render("_active_count.html", active_count=dash.read.active_incident_count())


@router.get("/fragments/incidents", response_class=HTMLResponse)
def incidents_fragment(
    request: Request,
    operator: Fragment,
    dash: DashboardDep,
    wanted: Annotated[IncidentFilter, Depends(incident_filter)],
) -> Response:
    return render("_incidents.html", **_incidents_context(request, dash, wanted))


FRAGMENT_TEMPLATES = {
    "header": "_incident_header.html",
    "actions": "_actions.html",
    "timeline": "_timeline.html",
    "alerts": "_alerts.html",
}


@router.get("/fragments/incidents/{incident_id}/{part}", response_class=HTMLResponse)
def incident_fragment(
    incident_id: IncidentId,
    part: Literal["header", "actions", "timeline", "alerts", "evidence"],
    operator: Fragment,
    dash: DashboardDep,
) -> Response:
    if part == "evidence":
        evidence = incident_evidence(dash, incident_id)
        if evidence is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return render("_evidence.html", **_evidence_context(evidence))
    return render(FRAGMENT_TEMPLATES[part], detail=_detail(dash, incident_id))
