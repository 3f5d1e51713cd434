"""The dashboard's server-side session records and one-time sign-in links, in the projection database.

A session cookie is only a signed reference to a row here: the row says whether the session still stands, so a
sign-out, or ``distress dashboard rotate-key`` ending every session, holds across restarts and for every copy of
the cookie. A sign-in link's row is marked used by the first sign-in with it. Only SHA-256 digests of session ids
and link tokens are stored, so the tables give nothing to replay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Table, delete, insert, select, update

from projections.schema import Base

SESSIONS: Table = Base.metadata.tables["dashboard_sessions"]
LINKS: Table = Base.metadata.tables["dashboard_sign_in_links"]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class StoredSession:
    operator: str
    expires_at: datetime


class SessionStore:
    """Reads go through ``reader`` (for SQLite a read-only engine that never waits for the projectors' write lock),
    changes through ``writer`` (the migrated projection engine)."""

    def __init__(self, *, writer: Engine, reader: Engine) -> None:
        self.writer = writer
        self.reader = reader

    def start(self, session_id: str, operator: str, *, issued_at: datetime, expires_at: datetime) -> None:
        """Records a new session; sessions that have expired are dropped on the way (the table stays small)."""
        with self.writer.begin() as connection:
            connection.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= issued_at))
            connection.execute(
                insert(SESSIONS).values(
                    session_sha256=digest(session_id), operator=operator, issued_at=issued_at, expires_at=expires_at
                )
            )

    def active(self, session_id: str, now: datetime) -> StoredSession | None:
        """The session if it exists, has not expired and was not ended."""
        with self.reader.connect() as connection:
            row = connection.execute(
                select(SESSIONS.c.operator, SESSIONS.c.expires_at).where(
                    SESSIONS.c.session_sha256 == digest(session_id),
                    SESSIONS.c.revoked_at.is_(None),
                    SESSIONS.c.expires_at > now,
                )
            ).first()
        return None if row is None else StoredSession(operator=row.operator, expires_at=row.expires_at)

    def end(self, session_id: str, now: datetime) -> None:
        with self.writer.begin() as connection:
            connection.execute(
                update(SESSIONS)
                .where(SESSIONS.c.session_sha256 == digest(session_id), SESSIONS.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )

    def end_all(self, now: datetime) -> int:
        """Ends every session still standing; returns how many there were."""
        with self.writer.begin() as connection:
            ended = connection.execute(
                update(SESSIONS)
                .where(SESSIONS.c.revoked_at.is_(None), SESSIONS.c.expires_at > now)
                .values(revoked_at=now)
            )
        return ended.rowcount

    def add_link(self, token: str, operator: str, *, expires_at: datetime) -> None:
        with self.writer.begin() as connection:
            connection.execute(delete(LINKS).where(LINKS.c.expires_at <= datetime.now(UTC)))
            connection.execute(
                insert(LINKS).values(token_sha256=digest(token), operator=operator, expires_at=expires_at)
            )

    def redeem_link(self, token: str, now: datetime) -> str | None:
        """The link's operator if it is unused and unexpired, marking it used in the same statement (so two
        concurrent sign-ins with one link cannot both succeed); None otherwise."""
        with self.writer.begin() as connection:
            used = connection.execute(
                update(LINKS)
                .where(LINKS.c.token_sha256 == digest(token), LINKS.c.used_at.is_(None), LINKS.c.expires_at > now)
                .values(used_at=now)
                .returning(LINKS.c.operator)
            ).first()
        return None if used is None else str(used.operator)

    def dispose(self) -> None:
        self.writer.dispose()
        self.reader.dispose()
