"""Dashboard fixtures: settings on the test broker with a private database, clip store and operator accounts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import Settings
from config.dashboard import DashboardConfig, DashboardToken, DashboardUser
from frontend.app import create_app
from frontend.auth import Authenticator, hash_password, token_digest
from frontend.server import build_authenticator
from tests.support.world import World

ALICE_TOKEN = "alice-token-0123456789abcdefghijklmnopqrstuvwxyz"
BOB_PASSWORD = "correct horse battery staple"


def dashboard_config(**overrides: object) -> DashboardConfig:
    fields: dict[str, object] = {
        "port": 0,
        "tokens": (DashboardToken(name="alice", token_sha256=token_digest(ALICE_TOKEN)),),
        "users": (DashboardUser(name="bob", password_hash=hash_password(BOB_PASSWORD, n=2**10)),),
        "run_projectors": False,
        "poll_interval_s": 0.1,
    }
    return DashboardConfig.model_validate({**fields, **overrides})


@pytest.fixture
def dashboard_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    return kafka_settings.model_copy(
        update={"data_dir": tmp_path / "state", "database_url": None, "dashboard": dashboard_config()}
    )


@pytest.fixture
def world(dashboard_settings: Settings) -> World:
    return World(dashboard_settings)


@pytest.fixture
def authenticator(dashboard_settings: Settings) -> Authenticator:
    auth, one_time = build_authenticator(dashboard_settings)
    assert one_time is None
    return auth


@pytest.fixture
def client(dashboard_settings: Settings, authenticator: Authenticator) -> Iterator[TestClient]:
    """An API client with the alice token; a test's ``world`` writes to the same database."""
    with TestClient(
        create_app(dashboard_settings, authenticator), headers={"Authorization": f"Bearer {ALICE_TOKEN}"}
    ) as test_client:
        yield test_client


@pytest.fixture
def anonymous(dashboard_settings: Settings, authenticator: Authenticator) -> Iterator[TestClient]:
    with TestClient(create_app(dashboard_settings, authenticator), follow_redirects=False) as test_client:
        yield test_client
