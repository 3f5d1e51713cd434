"""#31 row 2: a session ended by signing out, or by ``distress dashboard rotate-key``, stays ended, restarts
included, on SQLite and on PostgreSQL.

Revocations used to live in the dashboard's memory and the session key on disk, so after any restart a signed-out
(or stolen) cookie worked again for the rest of its 12 hours.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from config import Settings
from frontend.auth import Authenticator
from frontend.server import session_key_path
from tests.frontend.conftest import ALICE_TOKEN, BOB_PASSWORD
from tests.support.dashboard import serving, session_cookie, sign_in


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, dashboard_settings: Settings) -> Settings:
    if request.param == "sqlite":
        return dashboard_settings
    url: str = request.getfixturevalue("postgres_databases")()
    return dashboard_settings.model_copy(update={"database_url": url})


def with_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"{Authenticator.COOKIE}={cookie}"}


def test_a_signed_out_cookie_stays_refused_after_a_restart(settings: Settings) -> None:
    with serving(settings) as (_, client):
        csrf = sign_in(client, username="bob", password=BOB_PASSWORD)
        copy = session_cookie(client)  # kept by a thief, or by a browser that missed the sign-out
        assert client.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert client.get("/api/session", headers=with_cookie(copy)).status_code == 401
    with serving(settings) as (_, client):  # restarted: same key file, same database
        assert client.get("/api/session", headers=with_cookie(copy)).status_code == 401
        assert client.get("/", headers=with_cookie(copy)).headers["location"] == "/login?next=%2F"
        sign_in(client, username="bob", password=BOB_PASSWORD)  # signing in again works
        assert client.get("/api/session").json()["operator"] == "bob"


def test_rotate_key_ends_every_session_at_once_and_for_good(settings: Settings) -> None:
    environment = {
        "DISTRESS_DATA_DIR": str(settings.data_dir),
        "DISTRESS_LOG_JSON": "false",
        **({"DISTRESS_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }
    with serving(settings) as (_, alice), serving(settings) as (_, bob):
        sign_in(alice, token=ALICE_TOKEN)
        sign_in(bob, username="bob", password=BOB_PASSWORD)
        cookies = [session_cookie(alice), session_cookie(bob)]
        old_key = session_key_path(settings).read_bytes()
        rotated = CliRunner().invoke(app, ["dashboard", "rotate-key"], env=environment)
        assert rotated.exit_code == 0, rotated.output
        assert "2 session(s) ended" in rotated.output
        assert session_key_path(settings).read_bytes() != old_key
        for cookie in cookies:  # the running dashboards refuse them at once
            assert alice.get("/api/session", headers=with_cookie(cookie)).status_code == 401
    with serving(settings) as (_, client):
        for cookie in cookies:
            assert client.get("/api/session", headers=with_cookie(cookie)).status_code == 401
        sign_in(client, token=ALICE_TOKEN)
        assert client.get("/api/session").json()["operator"] == "alice"
