"""The prediction log's block rows into SQLite through the pooled sqlite3 connection.

The writer commits one transaction per ~1,000 requests, on the core that also answers them.
Through SQLAlchemy Core (connection checkout, the begin event, statement cache, result set-up,
commit) one block of 1,000 single-row requests (~335 KB) costs ~0.65 ms of CPU here; the same
`BEGIN IMMEDIATE` / `INSERT` / `COMMIT` on a held sqlite3 connection ~0.42 ms. Values go through
the columns' own bind processors, so a row is stored exactly as SQLAlchemy stores it and reads
back through it; sqlite3 errors are raised as SQLAlchemy's, so the writer's retries and
`is_contention` treat them as on any other database.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from servekit.registry.database import prediction_log_blocks

__all__ = ["SqliteBlockInserter"]


class SqliteBlockInserter:
    """Inserts block rows in one transaction per call, through one sqlite3 connection of the
    engine's pool held between calls (use it from one thread; `close` gives it back)."""

    def __init__(self, engine: Engine) -> None:
        columns = [column for column in prediction_log_blocks.columns if not column.primary_key]
        self.statement = (
            f"INSERT INTO {prediction_log_blocks.name} ({', '.join(column.name for column in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        dialect = engine.dialect
        self._binders: list[tuple[str, Callable[[Any], Any] | None]] = [
            (column.name, column.type.dialect_impl(dialect).bind_processor(dialect)) for column in columns
        ]
        self._engine = engine
        self._connection: Any | None = None

    def insert(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows` (dicts keyed by column name) and commit; on any error nothing is kept,
        the connection is dropped (the next call connects again) and SQLAlchemy's error raised."""
        values = [tuple(row[name] if bind is None else bind(row[name]) for name, bind in self._binders) for row in rows]
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        try:
            cursor = self._connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    cursor.executemany(self.statement, values)
                    cursor.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            self.close(invalidate=True)
            raise DBAPIError.instance(self.statement, None, exc, sqlite3.Error) from exc

    def close(self, *, invalidate: bool = False) -> None:
        """Give the connection back to the pool (or close it for good after an error)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if invalidate:
                connection.invalidate()
            else:
                connection.close()
