"""#31 row 4: the sign-in link printed when no accounts are configured works once, for a short while, and leaves
no token in the address bar or the history.

The link's token used to be an ordinary token (reused four times in the report), and a browser already signed in
was sent on from ``/login`` to the dashboard with ``#token=...`` still in its address bar and history.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from typer.testing import CliRunner

from cli.main import app
from config import Settings
from frontend.server import DashboardServer
from tests.support.browser import headless_chromium, wait_until
from tests.support.dashboard import serving


def without_accounts(settings: Settings, link_minutes: float = 15.0) -> Settings:
    dashboard = settings.dashboard.model_copy(update={"users": (), "tokens": (), "sign_in_link_minutes": link_minutes})
    return settings.model_copy(update={"dashboard": dashboard})


def link_token(server: DashboardServer) -> str:
    assert server.one_time_token is not None
    return server.one_time_token


def sign_in_status(server: DashboardServer, token: str) -> int:
    """From a fresh client each time, as a second browser (or someone who copied the link) would."""
    with httpx2.Client(base_url=server.url, timeout=60.0) as client:
        return client.post("/api/session", json={"token": token}).status_code


def test_the_link_signs_in_once_and_stays_used_after_a_restart(dashboard_settings: Settings) -> None:
    settings = without_accounts(dashboard_settings)
    with serving(settings) as (server, client):
        token = link_token(server)
        signed_in = client.post("/api/session", json={"token": token})
        assert signed_in.json()["operator"] == "operator" and signed_in.json()["via"] == "link"
        assert [sign_in_status(server, token) for _ in range(4)] == [401] * 4
        assert client.get("/api/streams", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert client.get("/api/session").json()["operator"] == "operator"  # the session it gave stands
    with serving(settings) as (server, _):
        assert sign_in_status(server, token) == 401
        assert link_token(server) != token and sign_in_status(server, link_token(server)) == 200


def test_a_running_dashboard_takes_a_new_link_made_by_the_cli_once(dashboard_settings: Settings) -> None:
    """The start's link expires; an operator on the host makes another without restarting the pipeline."""
    settings = without_accounts(dashboard_settings)
    with serving(settings) as (server, client):
        made = CliRunner().invoke(
            app,
            ["dashboard", "sign-in-link", "--url", server.url, "--json"],
            env={"DISTRESS_DATA_DIR": str(settings.data_dir)},
        )
        assert made.exit_code == 0, made.output
        link = json.loads(made.stdout)["link"]
        assert link.startswith(f"{server.url}login#token=")
        token = link.split("#token=")[1]
        assert token != link_token(server)
        assert client.post("/api/session", json={"token": token}).json()["via"] == "link"
        assert sign_in_status(server, token) == 401


def test_an_unused_link_expires(dashboard_settings: Settings) -> None:
    with serving(without_accounts(dashboard_settings, link_minutes=0.02)) as (server, _):  # 1.2 s
        time.sleep(1.5)
        assert sign_in_status(server, link_token(server)) == 401


def on_the_dashboard(driver: WebDriver) -> bool:
    ready = driver.execute_script("return document.readyState") == "complete"
    return ready and bool(driver.find_elements(By.ID, "sign-out"))


def test_the_link_leaves_no_token_in_the_address_bar_or_history(dashboard_settings: Settings, tmp_path: Path) -> None:
    with (
        serving(without_accounts(dashboard_settings)) as (server, _),
        headless_chromium(tmp_path / "profile") as driver,
    ):
        driver.get(server.sign_in_url)
        wait_until(driver, on_the_dashboard, "the link to sign in")
        assert driver.current_url == server.url
        driver.back()
        assert "token" not in driver.current_url  # the sign-in page's history entry lost its fragment
        driver.get(server.url)
        driver.get(server.sign_in_url)  # opened again while signed in: /login sends the browser on to /
        wait_until(driver, on_the_dashboard, "the dashboard")
        assert "token" not in driver.current_url, driver.current_url
        driver.back()
        assert "token" not in driver.current_url, driver.current_url
