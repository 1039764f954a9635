"""The registry's SQL schema (SQLAlchemy Core) and engine creation.

Every table lives on the one `metadata` object, so later features (prediction log, API keys)
add their tables here too and `create_schema` creates them all. Any SQLAlchemy URL works; the
embedded default is a SQLite file, which gets WAL journaling (readers never block the writer),
a busy timeout and foreign keys. Transactions on SQLite start with a plain deferred `BEGIN`;
`write_transaction` starts them with `BEGIN IMMEDIATE`, so that two processes writing at once
queue on the busy timeout instead of failing half-way with "database is locked".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from servekit.errors import RegistryError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "alias_history",
    "aliases",
    "api_keys",
    "create_schema",
    "describe_url",
    "make_engine",
    "metadata",
    "models",
    "prediction_log_blocks",
    "retry_on_contention",
    "utcnow",
    "versions",
    "write_transaction",
]

BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 6
_IMMEDIATE = "servekit_immediate"
_NAME = 64
T = TypeVar("T")

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The highest version number ever given, so a removed version's number is never reused.
    Column("last_version", Integer, nullable=False, default=0),
)

versions = Table(
    "versions",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("format", String(_NAME), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("files", Text, nullable=False),
    ForeignKeyConstraint(["name"], ["models.name"]),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("alias", String(_NAME), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["name", "version"], ["versions.name", "versions.version"]),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(_NAME), nullable=False, index=True),
    Column("alias", String(_NAME), nullable=False),
    Column("version", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The prediction log (see monitoring/predlog_blocks.py): one row per block of logged requests of
# one model version, the requests' fields column by column in `data`. A row per request would cost
# SQLite more per request than logging may cost the server. The names travel with each block, so a
# log that spans versions with different inputs exports correctly.
prediction_log_blocks = Table(
    "prediction_log_blocks",
    metadata,
    # SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere a log outgrows 32 bits.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("model", String(_NAME), nullable=False),
    Column("version", Integer, nullable=True),
    Column("first_ts", DateTime(timezone=True), nullable=False),  # the block's oldest request, UTC
    Column("last_ts", DateTime(timezone=True), nullable=False),  # its newest
    Column("records", Integer, nullable=False),  # requests in the block
    Column("rows", Integer, nullable=False),  # their input rows
    Column("features", Text, nullable=False),  # JSON list of the input column names
    Column("classes", Text, nullable=True),  # JSON list of a classifier's class names, else NULL
    Column("layout", Integer, nullable=False),  # the format of `data` (predlog_blocks.LAYOUT)
    Column("data", LargeBinary, nullable=False),  # the requests, column by column (arraycodec)
    Index("ix_prediction_log_blocks_model_last_ts", "model", "last_ts"),
)


# API keys (see security/keys.py). Only a SHA-256 of each whole key is stored, never the key; `id`
# is the public part of the key that finds its row. A name is unique among keys not yet revoked,
# so a revoked key's name can be given to its replacement.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(_NAME), nullable=False),
    Column("scopes", String(_NAME), nullable=False),  # space-separated, sorted
    Column("key_hash", String(64), nullable=False),  # hex SHA-256 of the whole key
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
Index(
    "ux_api_keys_active_name",
    api_keys.c.name,
    unique=True,
    sqlite_where=api_keys.c.revoked_at.is_(None),
    postgresql_where=api_keys.c.revoked_at.is_(None),
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their folder created and the pragmas above."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RegistryError(
            f"{url!r} is not a database URL",
            hint="use e.g. sqlite:////path/registry.db or postgresql://user@host/db",
        ) from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ImportError, SQLAlchemyError) as exc:
            raise RegistryError(f"cannot use database {describe_url(url)}: {one_line(exc)}") from None
    database = parsed.database or ""
    in_memory = database in {"", ":memory:"} or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    if in_memory:
        kwargs.update(poolclass=StaticPool)
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    _configure_sqlite(engine, wal=not in_memory)
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when transactions begin (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                # 16 KiB pages (SQLite's default is 4 KiB): the prediction log's blocks are blobs of
                # hundreds of KiB, which then take a quarter of the overflow pages and write about
                # half as much CPU. It only applies to a new, empty file (before WAL is turned on).
                cursor.execute("PRAGMA page_size = 16384")
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the write lock from its start (SQLite).

    Commits when the block ends, rolls back if it raises. Other databases get an ordinary
    transaction; their row locks and unique keys do the same job.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_IMMEDIATE: True})
        with connection.begin():
            yield connection


def is_contention(exc: BaseException) -> bool:
    """True for errors a retry can cure: a lost race on a unique key, or a busy database."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        return any(s in text for s in ("locked", "busy", "deadlock", "could not serialize"))
    return False


def retry_on_contention(action: Callable[[], T], *, what: str, attempts: int = WRITE_ATTEMPTS) -> T:
    """Run `action`, retrying with jittered exponential backoff when it lost a race.

    Any other database error, or contention that outlasts the attempts, becomes a one-line
    `RegistryError`; servekit errors raised by `action` pass through untouched.
    """
    for attempt in range(attempts):
        try:
            return action()
        except SQLAlchemyError as exc:
            if not is_contention(exc) or attempt == attempts - 1:
                raise RegistryError(f"could not {what}: {one_line(exc)}") from None
        time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet; safe to run from several processes at once."""
    retry_on_contention(lambda: _create_all(engine), what="create the registry tables")


def _create_all(engine: Engine) -> None:
    with write_transaction(engine) as connection:
        metadata.create_all(connection, checkfirst=True)


def one_line(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's statement dump and links."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
