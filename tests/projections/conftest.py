"""Fresh projection databases: SQLite files, and PostgreSQL schemas from ``DISTRESS_TEST_POSTGRES_URL``.

CI always provides PostgreSQL (.ci/run starts it), so there a missing URL is a failure, not a skip.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from projections.database import create_database_engine, migrate

POSTGRES_ENV = "DISTRESS_TEST_POSTGRES_URL"
NewDatabase = Callable[[], str]


@pytest.fixture
def sqlite_databases(tmp_path: Path) -> NewDatabase:
    numbers = itertools.count()
    return lambda: f"sqlite:///{tmp_path / f'projections-{next(numbers)}.db'}"


@pytest.fixture
def postgres_databases() -> Iterator[NewDatabase]:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: CI must run the PostgreSQL projection tests (.ci/run sets it)")
        pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL projection tests")
    admin = create_engine(base)
    schemas: list[str] = []

    def new_database() -> str:
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        return (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )

    yield new_database
    with admin.begin() as connection:
        for schema in schemas:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engines() -> Iterator[Callable[[str], Engine]]:
    """Migrated engines for URLs, disposed after the test (PostgreSQL connections are not left open)."""
    opened: list[Engine] = []

    def open_engine(url: str) -> Engine:
        engine = create_database_engine(url)
        migrate(engine)
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.dispose()
