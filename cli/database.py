"""The projection database for a command: opened and migrated, or one line saying which database and why not."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from cli.errors import CliError, describe
from config import Settings
from config.redaction import redact_url
from projections.database import DatabaseError, open_database


def database(settings: Settings) -> Engine:
    """``open_database``, with every failure (bad URL, server down, unwritable or full disk) as a ``CliError``."""
    try:
        return open_database(settings)
    except (DatabaseError, SQLAlchemyError, OSError) as error:
        failure = describe(error)
        kind, reason = failure.kind, failure.message.removeprefix("database: ")
        where, sqlite_file = _where(settings.sqlalchemy_url)
        if kind == "database" and sqlite_file is not None and not os.access(sqlite_file.parent, os.W_OK):
            kind, reason = "permission", f"permission denied: {sqlite_file.parent} is not writable"
        raise CliError(f"cannot open the database '{where}': {reason}", kind=kind, exit_code=1) from error


def _where(url: str) -> tuple[str, Path | None]:
    """How to name the database in a message (a SQLite file by its path, a server without its credentials)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return redact_url(url), None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return parsed.database, Path(parsed.database)
    return redact_url(url), None
