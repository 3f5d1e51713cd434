"""The server-rendered pages and fragments: sign-in redirects, what an operator sees, and nothing secret."""

from __future__ import annotations

import re
from datetime import UTC

from fastapi.testclient import TestClient

from frontend.schemas import Evidence, ScorePoint
from frontend.views import TEMPLATES_DIR, score_chart
from tests.frontend.conftest import ALICE_TOKEN
from tests.support.world import SECRETS, World


def sign_in(client: TestClient) -> str:
    response = client.post("/api/session", json={"token": ALICE_TOKEN})
    assert response.status_code == 200
    csrf: str = response.json()["csrf_token"]
    return csrf


def test_pages_send_strangers_to_the_sign_in_page_and_back(anonymous: TestClient) -> None:
    for path, back in (
        ("/", "%2F"),
        ("/incidents/hall-1:0123456789ab", "%2Fincidents%2Fhall-1%3A0123456789ab"),
        ("/?status=open", "%2F%3Fstatus%3Dopen"),
    ):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"] == f"/login?next={back}"
    login = anonymous.get("/login?next=/incidents/x")
    assert login.status_code == 200 and 'data-next="/incidents/x"' in login.text
    assert 'src="/static/app.js"' in login.text
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert 'data-next="/"' in anonymous.get("/login", params={"next": hostile}).text
    sign_in(anonymous)
    assert anonymous.get("/login", params={"next": "//evil.example/"}).headers["location"] == "/"
    assert anonymous.get("/login", params={"next": "/?status=open"}).headers["location"] == "/?status=open"


def test_the_dashboard_shows_stream_tiles_and_incidents(anonymous: TestClient, world: World) -> None:
    incident = world.incident("hall-1", severity="critical")
    world.project()
    csrf = sign_in(anonymous)
    page = anonymous.get("/")
    assert page.status_code == 200
    assert f'<meta name="csrf-token" content="{csrf}">' in page.text
    assert 'data-stream-id="hall-1"' in page.text and "please help me" in page.text
    assert f'data-incident-id="{incident.incident_id}"' in page.text
    assert 'class="badge severity-critical"' in page.text and "1 active incident<" in page.text
    assert "-14 dBFS" in page.text
    filtered = anonymous.get("/", params={"severity": "low"})
    assert "No incidents match these filters." in filtered.text and 'value="low" checked' in filtered.text
    assert anonymous.get("/", params={"severity": "bogus"}).status_code == 422


def test_the_incident_page_shows_evidence_timeline_actions_and_alerts(anonymous: TestClient, world: World) -> None:
    incident = world.incident()
    world.project()
    sign_in(anonymous)
    page = anonymous.get(f"/incidents/{incident.incident_id}")
    assert page.status_code == 200
    html = page.text
    assert "Why it fired" in html and "2 of the last 3 windows positive" in html
    clip = f"/api/incidents/{incident.incident_id}/clip"
    assert f'<audio id="clip" class="clip" controls preload="auto" src="{clip}"' in html
    assert re.search(r'<span class="word phrase" data-start="5\.50" data-end="5\.80">help</span>', html)
    assert '<polyline class="series series-score"' in html and "onset" in html
    assert 'data-command="acknowledge" aria-keyshortcuts="a">' in html  # enabled
    assert "ops-hook" in html and "retrying" in html
    assert not any(secret in html for secret in SECRETS)
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    missing = anonymous.get("/incidents/hall-1:0123456789ab")
    assert missing.status_code == 404 and "There is no incident hall-1:0123456789ab" in missing.text


def test_fragments_render_the_parts_a_page_refreshes(client: TestClient, world: World) -> None:
    incident = world.incident()
    world.project()
    base = f"/fragments/incidents/{incident.incident_id}"
    assert 'data-incident-id="' in client.get("/fragments/incidents").text
    assert 'data-stream-id="hall-1"' in client.get("/fragments/streams").text
    assert "1 active incident" in client.get("/fragments/active-count").text
    assert "Opened" in client.get(f"{base}/timeline").text
    assert 'data-has-clip="true"' in client.get(f"{base}/header").text
    assert "Acknowledge" in client.get(f"{base}/actions").text
    assert "ops-hook" in client.get(f"{base}/alerts").text
    assert "Label scores over time" in client.get(f"{base}/evidence").text
    assert client.get(f"{base}/secrets").status_code == 422
    assert client.get("/fragments/incidents/hall-1:0123456789ab/header").status_code == 404

    client.post(f"/api/incidents/{incident.incident_id}/acknowledge", json={})
    world.project()
    actions = client.get(f"{base}/actions").text
    assert 'data-command="acknowledge" aria-keyshortcuts="a" disabled>' in actions
    assert 'data-command="resolve" aria-keyshortcuts="r">' in actions
    assert "by <strong>alice</strong>" in client.get(f"{base}/timeline").text


def test_the_incident_page_shows_the_detection_delay_and_says_when_it_was_late(
    client: TestClient, world: World
) -> None:
    prompt = world.incident("hall-1", opened_after_s=1.0)
    late = world.incident("hall-2", opened_after_s=95.0)  # e.g. the pipeline was behind when it was heard
    world.project()
    on_time = client.get(f"/incidents/{prompt.incident_id}").text
    assert "(1.0 s after the onset)" in on_time and "detected late" not in on_time
    assert "Detection delay" not in on_time
    header = client.get(f"/fragments/incidents/{late.incident_id}/header").text
    assert "(1 min 35 s after the onset: detected late)" in header
    assert "Detection delay: this incident was opened 1 min 35 s after the sound began" in header


def test_times_say_utc_and_the_transcript_counts_from_the_onset_like_the_chart(
    client: TestClient, world: World
) -> None:
    incident = world.incident()
    world.project()
    html = client.get(f"/incidents/{incident.incident_id}").text
    onset = incident.opened.onset_at.astimezone(UTC)
    assert f'<time datetime="{incident.opened.onset_at.isoformat()}">{onset:%Y-%m-%d %H:%M:%S} UTC</time>' in html
    # The transcript's first line starts at the onset (the world's speech does): it reads +0.0 s, as the chart's
    # axis does, not its offset in the clip; both say what they count from.
    assert '<span class="line-time">+0.0 s</span>' in html
    assert html.count('<span class="h3-note">seconds from the onset</span>') == 2
    script = (TEMPLATES_DIR.parent / "static" / "app.js").read_text()
    assert "toLocaleString" not in script  # the browser must not rewrite the times into an unlabelled zone


def test_the_background_label_is_drawn_in_a_neutral_colour_not_the_alarm_red() -> None:
    points = [
        ScorePoint(t_s=t_s, score=0.2, is_distress=False, labels={"background": 0.9, "scream": 0.3})
        for t_s in (-1.0, 0.0, 1.0)
    ]
    evidence = Evidence(
        clip_url=None,
        clip_start_s=0.0,
        clip_duration_s=None,
        onset_in_clip_s=1.0,
        scores=points,
        top_labels=["background", "scream"],
        transcripts=[],
        problem=None,
    )
    chart = score_chart(evidence)
    assert chart is not None
    assert [(series.name, series.css_class) for series in chart.series] == [
        ("background", "series-background"),
        ("scream", "series-0"),
        ("distress score", "series-score"),
    ]
    css = (TEMPLATES_DIR.parent / "static" / "app.css").read_text()
    background = re.search(r"\.series-background \{ stroke: (#[0-9a-f]{6});", css)
    assert background is not None and background.group(1) not in ("#ff4d4f", "#ff8a1f")  # not critical, not high
