"""Outages are visible, not silent: with the event log (Kafka) or the database down, ``/api/health`` says so within
seconds, the pages' live indicator turns red and says why in words, and an operator's action fails within seconds
with a message while the note stays in the form.

Each test stops a private broker or PostgreSQL cluster (the session's broker stays up for everyone else) and starts
it again next time.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from actors.pipeline import default_stages
from config import Settings
from events.kafka.broker import LocalBroker
from frontend.app import create_app
from frontend.health import BEHIND_AFTER_EVENTS
from frontend.server import DashboardServer, build_authenticator
from tests.conftest import broker_settings, wait_for
from tests.frontend.conftest import ALICE_TOKEN, dashboard_config
from tests.support.browser import click, full_page_screenshot, headless_chromium, wait_until
from tests.support.postgres import PrivateCluster
from tests.support.world import PublishedIncident, World

FAST_S = 5.0  # "fails fast" is 3 s in the product; the margin is for this machine, not a performance claim
NOTICED_WITHIN_S = 20.0  # a probe is reused for 5 s and the pages are told every 3 s


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker[Settings]]:
    broker = LocalBroker(broker_settings(tmp_path_factory.mktemp("outage-kafka")))
    yield broker
    broker.down()


@pytest.fixture
def outage_settings(private_broker: LocalBroker[Settings], tmp_path: Path) -> Settings:
    """A dashboard on the private broker (started here: an earlier test may have stopped it)."""
    private_broker.up()
    settings = private_broker.settings.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "data_dir": tmp_path / "state",
            "database_url": None,
            "dashboard": dashboard_config(),
        }
    )
    return settings


def published_incident(settings: Settings) -> PublishedIncident:
    """One incident, projected, and a pipeline that has processed it: health is ok until the broker stops."""
    world = World(settings)
    incident = world.incident(with_alerts=False)
    world.project()
    world.finish_pipeline()
    return incident


def test_a_stage_whose_input_piles_up_is_behind(world: World, anonymous: TestClient) -> None:
    world.finish_pipeline()
    start = datetime.now(UTC) - timedelta(hours=1)
    world.publish(*(world.score("hall-1", window, start) for window in range(BEHIND_AFTER_EVENTS + 1)))
    world.project()  # the read models keep up; the incident stage (not running here) does not
    wait_for(lambda: anonymous.get("/api/health").status_code == 503, timeout_s=30, what="the next probe")
    health = anonymous.get("/api/health").json()
    assert health["reasons"] == [f"stage incidents behind, {BEHIND_AFTER_EVENTS + 1} events waiting"]
    assert {stage["stage"]: stage["state"] for stage in health["pipeline"]}["incidents"] == "behind"


def test_with_the_broker_stopped_health_answers_503_with_the_reason_and_commands_fail_fast(
    outage_settings: Settings, private_broker: LocalBroker[Settings]
) -> None:
    incident_id = published_incident(outage_settings).incident_id
    auth, _ = build_authenticator(outage_settings)
    with TestClient(create_app(outage_settings, auth), headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as client:
        wait_for(lambda: client.get("/api/health").status_code == 200, timeout_s=30, what="health to be ok")
        private_broker.down()
        stopped = time.monotonic()
        answers: list[tuple[float, int, Any]] = []

        def degraded() -> bool:
            asked = time.monotonic()
            response = client.get("/api/health")
            answers.append((time.monotonic() - asked, response.status_code, response.json()))
            return response.status_code == 503

        wait_for(degraded, timeout_s=60, what="health to report the broker")
        assert time.monotonic() - stopped < NOTICED_WITHIN_S
        assert max(seconds for seconds, _, _ in answers) < FAST_S  # health itself never waits on the dead broker
        health = answers[-1][2]
        assert health["status"] == "degraded" and health["reasons"][0] == "event log (Kafka) unreachable"
        assert health["broker"]["reachable"] is False and "transport" in health["broker"]["error"].lower()

        asked = time.monotonic()
        refused = client.post(f"/api/incidents/{incident_id}/acknowledge", json={"note": "on my way"})
        assert time.monotonic() - asked < FAST_S
        assert refused.status_code == 503 and refused.json()["detail"].startswith("the event log is unavailable")


LIVE_STATE = (By.ID, "live-state")


@contextmanager
def live_incident_page(settings: Settings, tmp_path: Path) -> Iterator[tuple[WebDriver, PublishedIncident]]:
    """Chromium signed in to a dashboard, on a published incident's page once its live indicator says live."""
    incident = published_incident(settings)
    with (
        DashboardServer(settings, host="127.0.0.1", port=0) as server,
        headless_chromium(tmp_path / "chromium") as driver,
    ):
        driver.get(f"{server.url}login#token={ALICE_TOKEN}")
        wait_until(driver, lambda d: d.find_element(By.ID, "incident-list"), "the dashboard after signing in")
        driver.get(f"{server.url}incidents/{incident.incident_id}")
        wait_until(
            driver,
            lambda d: d.find_element(*LIVE_STATE).get_attribute("data-state") == "live",
            "the incident page to be live",
        )
        yield driver, incident


def test_the_live_indicator_turns_red_with_the_reason_and_an_action_fails_fast_keeping_the_note(
    outage_settings: Settings, private_broker: LocalBroker[Settings], tmp_path: Path
) -> None:
    with live_incident_page(outage_settings, tmp_path) as (driver, incident):
        # Times say their zone, as alert messages do, and the browser does not turn them into a bare local time.
        onset = driver.find_element(By.CSS_SELECTOR, "#incident-header time").text
        assert onset == f"{incident.opened.onset_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"

        private_broker.down()
        wait_until(
            driver,
            lambda d: d.find_element(*LIVE_STATE).text.startswith("degraded: event log (Kafka) unreachable"),
            "the live indicator to say why",
            timeout_s=NOTICED_WITHIN_S,
        )
        shown = driver.find_element(*LIVE_STATE)
        assert shown.get_attribute("data-state") == "degraded"
        assert shown.value_of_css_property("color") == "rgba(255, 133, 135, 1)"
        full_page_screenshot(driver, "outage.png")

        note = "going to the hall now"
        driver.find_element(By.ID, "note").send_keys(note)
        click(driver, 'button[data-command="acknowledge"]', "the Acknowledge button")
        clicked = time.monotonic()
        status = wait_until(
            driver,
            lambda d: d.find_element(By.ID, "action-status").text.startswith("Not done"),
            "the acknowledgement to fail",
            timeout_s=60,
        )
        assert status and time.monotonic() - clicked < FAST_S
        message = driver.find_element(By.ID, "action-status").text
        assert "the event log is unavailable" in message and "Your note is still in the box above." in message
        assert driver.find_element(By.ID, "note").get_property("value") == note
        assert driver.find_element(By.CSS_SELECTOR, 'button[data-command="acknowledge"]').is_enabled()  # retry
        full_page_screenshot(driver, "outage-action.png")


# ------------------------------------------------------------------------------------------- database down


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this module's own, so stopping it takes no one else's database down."""
    cluster = PrivateCluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data, ignore_errors=True)


@pytest.fixture
def database_outage_settings(private_postgres: PrivateCluster, kafka_settings: Settings, tmp_path: Path) -> Settings:
    """A dashboard on the session broker and a fresh database in the private cluster (started here: an earlier
    test may have stopped it)."""
    private_postgres.start()
    database = f"health_{uuid.uuid4().hex[:8]}"
    admin = create_engine(private_postgres.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    return kafka_settings.model_copy(
        update={
            "data_dir": tmp_path / "state",
            "database_url": make_url(private_postgres.url).set(database=database).render_as_string(False),
            "dashboard": dashboard_config(),
        }
    )


def test_with_the_database_stopped_health_answers_503_naming_the_database(
    database_outage_settings: Settings, private_postgres: PrivateCluster
) -> None:
    published_incident(database_outage_settings)
    auth, _ = build_authenticator(database_outage_settings)
    app = create_app(database_outage_settings, auth)
    with TestClient(app, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}) as client:
        wait_for(lambda: client.get("/api/health").status_code == 200, timeout_s=30, what="health to be ok")
        assert client.get("/api/health").json()["database"] is True
        private_postgres.stop()
        stopped = time.monotonic()
        answers: list[tuple[float, int, Any]] = []

        def degraded() -> bool:
            asked = time.monotonic()
            response = client.get("/api/health")
            answers.append((time.monotonic() - asked, response.status_code, response.json()))
            return response.status_code == 503

        wait_for(degraded, timeout_s=60, what="health to report the database")
        assert time.monotonic() - stopped < NOTICED_WITHIN_S
        assert max(seconds for seconds, _, _ in answers) < FAST_S  # health never waits on the dead database
        health = answers[-1][2]
        assert health["status"] == "degraded" and health["database"] is False
        assert (
            "Connection refused" in health["database_error"] and str(private_postgres.port) in health["database_error"]
        )
        # Only the stage that keeps its position in the database cannot be measured; the event log answers, so
        # every other stage's lag is still reported.
        assert health["reasons"] == ["database unavailable", "stage projections state unknown"]
        assert health["broker"]["reachable"] is True
        assert "projection checkpoints" in health["pipeline_error"]
        measured = {stage["stage"] for stage in health["pipeline"]}
        assert measured == {spec.name for spec in default_stages(database_outage_settings)} - {"projections"}


def test_the_live_indicator_turns_red_naming_the_database(
    database_outage_settings: Settings, private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    with live_incident_page(database_outage_settings, tmp_path) as (driver, _):
        private_postgres.stop()
        wait_until(
            driver,
            lambda d: d.find_element(*LIVE_STATE).text.startswith("degraded: database unavailable"),
            "the live indicator to name the database",
            timeout_s=NOTICED_WITHIN_S,
        )
        shown = driver.find_element(*LIVE_STATE)
        assert shown.get_attribute("data-state") == "degraded"
        assert "database unavailable" in (shown.get_attribute("title") or "")
