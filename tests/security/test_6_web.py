"""The web basics, each against the real server: cross-site requests, path traversal, injection into SQL and
HTML, and the headers and cookie flags that keep the pages in their own origin."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from config import Settings
from frontend.auth import Authenticator
from tests.frontend.conftest import ALICE_TOKEN, BOB_PASSWORD
from tests.support.dashboard import serving, sign_in
from tests.support.world import World

UNKNOWN_INCIDENT = "hall-1:0123456789ab"
BEARER = {"Authorization": f"Bearer {ALICE_TOKEN}"}


# ------------------------------------------------------------------------------------------------- CSRF


def test_commands_with_the_session_cookie_need_that_sessions_csrf_token(dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client), serving(dashboard_settings) as (_, other):
        csrf = sign_in(client, username="bob", password=BOB_PASSWORD)
        others_csrf = sign_in(other, token=ALICE_TOKEN)
        url = f"/api/incidents/{UNKNOWN_INCIDENT}/acknowledge"
        assert client.post(url, json={}).status_code == 403  # what a cross-site page can make a browser send
        assert client.post(url, content="note=x", headers={"Content-Type": "text/plain"}).status_code in (403, 422)
        assert client.post(url, json={}, headers={"X-CSRF-Token": others_csrf}).status_code == 403
        assert client.delete("/api/session").status_code == 403
        assert client.post(url, json={}, headers={"X-CSRF-Token": csrf}).status_code == 404  # it got through
        assert client.get("/api/session").json()["operator"] == "bob"  # the refused sign-out did nothing


# -------------------------------------------------------------------------------------------- traversal


@pytest.mark.parametrize(
    "path",
    [
        "/static/../auth.py",
        "/static/%2e%2e/auth.py",
        "/static/..%2fauth.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/....//auth.py",
        "/static/%252e%252e/auth.py",
        "/static//etc/passwd",
        "/static/..\\auth.py",
        "/api/incidents/..%2F..%2Fetc%2Fpasswd/clip",
        "/api/incidents/hall-1:..%2F..%2Fetc/clip",
    ],
)
def test_paths_never_leave_the_static_directory_or_the_clip_store(path: str, dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (server, _):
        parts = urlsplit(server.url)
        assert parts.hostname is not None and parts.port is not None
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("GET", path, headers=BEARER)  # sent as written: no client-side normalisation
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
        finally:
            connection.close()
    assert response.status in (404, 422), (response.status, body[:200])
    assert "import" not in body and "root:" not in body and "[project]" not in body


# -------------------------------------------------------------------------------------------- injection


def test_sql_looking_input_is_refused_or_taken_literally(dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        for stream_id in ("' OR '1'='1", "hall-1'; DROP TABLE incidents; --"):
            assert client.get("/api/incidents", params={"stream_id": stream_id}, headers=BEARER).status_code == 422
        for name, password in (("' OR '1'='1", "x' OR '1'='1"), ("bob' --", "anything"), ("bob", "' OR 1=1 --")):
            assert client.post("/api/session", json={"username": name, "password": password}).status_code == 401
        assert client.post("/api/session", json={"token": "' OR 1=1 --"}).status_code == 401
        assert client.get("/api/incidents", headers=BEARER).json()["total"] == 0  # the table is still there


def test_a_note_with_markup_is_shown_as_text(dashboard_settings: Settings, world: World) -> None:
    incident = world.incident(with_alerts=False)
    world.project()
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with serving(dashboard_settings) as (_, client):
        noted = client.post(f"/api/incidents/{incident.incident_id}/notes", json={"note": markup}, headers=BEARER)
        assert noted.status_code == 200
        world.project()
        timeline = client.get(f"/fragments/incidents/{incident.incident_id}/timeline", headers=BEARER).text
        page = client.get(f"/incidents/{incident.incident_id}", headers=BEARER).text
    for html in (timeline, page):
        assert "&lt;script&gt;" in html and "<script>alert" not in html and "<img src=x" not in html


# ---------------------------------------------------------------------------------------------- headers


@pytest.mark.parametrize("path", ["/", "/login", "/api/health", "/api/streams", "/static/app.js", "/nowhere"])
def test_every_answer_keeps_the_page_in_its_own_origin(path: str, dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        headers = client.get(path).headers
    policy = dict(directive.strip().split(" ", 1) for directive in headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    if path.startswith("/api/"):
        assert headers["cache-control"] == "no-store"


def cookie_attributes(set_cookie: list[str], name: str) -> dict[str, str]:
    [cookie] = [header for header in set_cookie if header.startswith(f"{name}=")]
    return {key.strip().lower(): value for key, _, value in (part.partition("=") for part in cookie.split(";")[1:])}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_sign_in_cookies_are_http_only_same_site_strict_and_secure_over_https(
    scheme: str, dashboard_settings: Settings
) -> None:
    """Over HTTPS means: behind a trusted proxy that says so (X-Forwarded-Proto)."""
    dashboard = dashboard_settings.dashboard.model_copy(update={"trusted_proxies": ("127.0.0.1",)})
    with serving(dashboard_settings.model_copy(update={"dashboard": dashboard})) as (_, client):
        signed_in = client.post(
            "/api/session",
            json={"username": "bob", "password": BOB_PASSWORD},
            headers={"X-Forwarded-Proto": scheme, "X-Forwarded-For": "198.51.100.7"},
        )
    set_cookie = signed_in.headers.get_list("set-cookie")
    session = cookie_attributes(set_cookie, Authenticator.COOKIE)
    device = cookie_attributes(set_cookie, Authenticator.DEVICE_COOKIE)
    for cookie in (session, device):
        assert "httponly" in cookie and cookie["samesite"].lower() == "strict"
        assert ("secure" in cookie) == (scheme == "https")
    assert session["path"] == "/" and device["path"] == "/api/session"
    assert int(session["max-age"]) == 12 * 3600


def test_x_forwarded_proto_from_an_untrusted_client_changes_nothing(dashboard_settings: Settings) -> None:
    with serving(dashboard_settings) as (_, client):
        signed_in = client.post("/api/session", json={"token": ALICE_TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in cookie_attributes(signed_in.headers.get_list("set-cookie"), Authenticator.COOKIE)
