"""Alembic environment: migrates the connection handed over by ``projections.database.migrate``.

To write a new revision after changing ``projections/schema.py``:
``alembic -c projections/migrations/alembic.ini revision --autogenerate -m "what changed"``
(uses the configured database URL, ``DISTRESS_DATABASE_URL`` or the SQLite file in the data directory).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from projections.schema import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


handed_over = context.config.attributes.get("connection")
if handed_over is not None:
    run(handed_over)
else:
    from config.settings import load_settings
    from projections.database import create_database_engine

    with create_database_engine(load_settings().sqlalchemy_url).begin() as opened:
        run(opened)
