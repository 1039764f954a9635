"""The prediction log's SQLite insert path stores what SQLAlchemy's insert stores, and fails like it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert
from sqlalchemy.exc import IntegrityError, OperationalError

from servekit.monitoring.predlog_sqlite import SqliteBlockInserter
from servekit.registry.database import is_contention, make_engine, prediction_log_blocks, write_transaction


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'log.db'}")

    @event.listens_for(made, "connect")
    def _short_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 100")

    with write_transaction(made) as connection:
        prediction_log_blocks.create(connection, checkfirst=True)
    yield made
    made.dispose()


def block(model: str, data: bytes) -> dict[str, Any]:
    return {
        "model": model,
        "version": 3,
        "first_ts": datetime(2026, 11, 27, 5, 0, 0, 123456, tzinfo=UTC),
        "last_ts": datetime(2026, 11, 27, 5, 0, 59, 999999, tzinfo=UTC),
        "records": 2,
        "rows": 5,
        "features": '["a", "b"]',
        "classes": None,
        "layout": 1,
        "data": data,
    }


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    """Every row as SQLite holds it: each value with its storage class."""
    path = engine.url.database
    assert path is not None
    with sqlite3.connect(path) as connection:
        columns = [column.name for column in prediction_log_blocks.columns if not column.primary_key]
        values = ", ".join(f"{name}, typeof({name})" for name in columns)
        return connection.execute(f"SELECT {values} FROM prediction_log_blocks ORDER BY id").fetchall()


def test_a_row_is_stored_exactly_as_sqlalchemy_stores_it(engine: Engine) -> None:
    with write_transaction(engine) as connection:
        connection.execute(insert(prediction_log_blocks), [block("m", b"\x00\x01 blob")])
    inserter = SqliteBlockInserter(engine)
    inserter.insert([block("m", b"\x00\x01 blob"), block("m", b"\x00\x01 blob")])
    inserter.close()
    by_sqlalchemy, *by_inserter = stored(engine)
    assert by_inserter == [by_sqlalchemy, by_sqlalchemy]
    assert by_sqlalchemy[4] == "2026-11-27 05:00:00.123456" and by_sqlalchemy[-1] == "blob"


def test_a_locked_database_raises_sqlalchemys_contention_error_and_keeps_nothing(engine: Engine) -> None:
    inserter = SqliteBlockInserter(engine)
    inserter.insert([block("first", b"1")])
    path = engine.url.database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(OperationalError) as raised:
            inserter.insert([block("second", b"2")])
        assert is_contention(raised.value) and "locked" in str(raised.value.orig)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    inserter.insert([block("third", b"3")])  # connects again once the lock is gone
    inserter.close()
    assert [row[0] for row in stored(engine)] == ["first", "third"]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_an_error_inside_the_transaction_rolls_it_back(engine: Engine) -> None:
    inserter = SqliteBlockInserter(engine)
    bad = block("bad", b"x")
    bad["model"] = None  # NOT NULL: the second row fails, the first of the same call is not kept
    with pytest.raises(IntegrityError) as raised:
        inserter.insert([block("good", b"y"), bad])
    assert "NOT NULL" in str(raised.value)
    inserter.insert([block("after", b"z")])
    inserter.close()
    assert [row[0] for row in stored(engine)] == ["after"]
