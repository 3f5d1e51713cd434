"""SQLite writers of one engine, in several threads: each waits its turn for the write lock however long the
other holds it (SQLite's own busy wait would give up, and sleeps past the moment the lock is free)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from projections.database import create_database_engine


def _engine(tmp_path: Path) -> Engine:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'writers.db'}", busy_timeout_s=0.05)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE written (who TEXT)"))
    return engine


def _hold_then(engine: Engine, ending: str) -> list[str]:
    """One thread holds a write transaction well past the busy timeout and ends it with ``ending``, while
    another writes; returns who got written."""
    held, other_done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def holder() -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("INSERT INTO written VALUES ('holder')"))
                held.set()
                other_done.wait(0.5)  # the other writer is queued by now, well past SQLite's busy timeout
                if ending == "raise":
                    raise RuntimeError("the batch failed")
                connection.commit()
        except RuntimeError:
            pass
        except BaseException as error:
            failures.append(error)

    def other() -> None:
        held.wait()
        try:
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO written VALUES ('other')"))
        except BaseException as error:
            failures.append(error)
        finally:
            other_done.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures
    with engine.connect() as connection:
        return sorted(connection.execute(text("SELECT who FROM written")).scalars())


@pytest.mark.parametrize("ending", ["commit", "raise"])
def test_a_second_writer_waits_for_the_first_however_long_it_holds_the_lock(tmp_path: Path, ending: str) -> None:
    engine = _engine(tmp_path)
    assert _hold_then(engine, ending) == (["holder", "other"] if ending == "commit" else ["other"])
    with engine.begin() as connection:  # and the lock was let go after both
        connection.execute(text("INSERT INTO written VALUES ('later')"))
    engine.dispose()


def test_a_transaction_inside_another_in_one_thread_meets_sqlites_lock_as_before(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.begin() as outer:
        outer.execute(text("INSERT INTO written VALUES ('outer')"))
        with pytest.raises(Exception, match="database is locked"), engine.begin() as inner:
            inner.execute(text("INSERT INTO written VALUES ('inner')"))
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO written VALUES ('after')"))
        assert sorted(connection.execute(text("SELECT who FROM written")).scalars()) == ["after", "outer"]
    engine.dispose()
