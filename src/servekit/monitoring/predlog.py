"""The durable prediction log: each request's inputs and outputs, written in the background.

`PredictionLog.record` runs on the server's event loop for every prediction, so it only appends a
reference to a bounded deque: O(1), no I/O, no serialization, never raises. One daemon thread
serializes what is waiting and inserts it in batches (one transaction each) into the
`prediction_log` table of any SQLAlchemy database, by default the registry's SQLite file.

Faults never reach the request path. A failed write is retried with backoff for `retry_s` while
later records keep waiting, up to `max_pending`. Whatever cannot be kept or written is counted in
`lost`, passed to `on_lost(count, reason)` and reported by one WARNING per incident on the
"servekit.predlog" logger: nothing is dropped silently. Counters count records (requests); the
`rows` column says how many input rows each one holds.

`servekit.monitoring.predlog_export` reads the log back (drift windows, `servekit logs`).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import Engine, delete, event, func, insert, make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from servekit.errors import InvalidInput, RegistryError
from servekit.monitoring import arraycodec
from servekit.monitoring.predlog_export import (
    FORMATS,
    export,
    json_default,
    load_inputs,
    parse_duration,
    parse_since,
)
from servekit.prediction import Prediction
from servekit.registry.database import (
    describe_url,
    is_contention,
    make_engine,
    one_line,
    prediction_log,
    write_transaction,
)

if TYPE_CHECKING:
    pass

__all__ = ["FORMATS", "PredictionLog", "export", "load_inputs", "parse_duration", "parse_since"]

logger = logging.getLogger("servekit.predlog")

DEFAULT_BATCH_SIZE = 1000
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_MAX_PENDING = 100_000
DEFAULT_RETRY_S = 30.0
DEFAULT_MAX_PENDING_ROWS = 200_000
PRUNE_EVERY_S = 60.0
_ATTEMPT_BUSY_MS = 500  # how long one write attempt waits for another process's SQLite lock
_BACKOFF_S = (0.05, 1.0)
_JOIN_MARGIN_S = 1.0  # close() waits this much past its timeout for an attempt already running
_PRUNE_CHUNK = 10_000
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

LostCallback = Callable[[int, str], None]


class _Record(NamedTuple):
    ts: float
    model: str
    version: int | None
    route: str
    request_id: str
    latency_ms: float
    feature_names: Sequence[str]
    inputs: Any
    outputs: Prediction


class PredictionLog:
    """Appends every prediction to the `prediction_log` table from one background thread.

    `record` only queues; `start` launches the writer; `close` flushes what is pending within its
    timeout and counts the rest as lost. `retry_s` bounds how long one batch is retried; `seed`
    makes the sampling repeatable. `on_lost` is called from the writer thread (or `close`).
    """

    def __init__(
        self,
        url: str,
        *,
        sample_rate: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS,
        retention_s: float | None = None,
        on_lost: LostCallback | None = None,
        retry_s: float = DEFAULT_RETRY_S,
        seed: int | None = None,
    ) -> None:
        _check_settings(sample_rate, batch_size, flush_interval_s, max_pending, retention_s, retry_s)
        try:
            make_url(url)
        except ArgumentError:
            raise InvalidInput(
                f"{url!r} is not a database URL", hint="use e.g. sqlite:////path/registry.db or postgresql://host/db"
            ) from None
        self.url = url
        self._sample_rate = sample_rate
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._max_rows = max(1, max_pending_rows)
        self._rows_waiting = 0  # input rows in the queue or being written: memory is bounded by both
        self._retention_s = retention_s
        self._on_lost = on_lost
        self._retry_s = retry_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: deque[_Record] = deque()
        self._in_flight = 0
        self._written = 0
        self._failed = 0  # lost by the writer or by close()
        self._dropped = 0  # lost in record(): too many waiting
        self._late = 0  # lost in record(): after close()
        self._dropped_reported = 0
        self._sampled_out = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._close_deadline = math.inf
        self._engine: Engine | None = None
        self._incident = False
        self._incident_lost = 0
        self._warned = False
        self._last_prune = -math.inf
        self._prune_failing = False
        self.pruned = 0
        """Rows deleted by retention so far."""
        self._serializer = _Serializer()

    def __repr__(self) -> str:
        return f"PredictionLog({describe_url(self.url)!r}, pending={self.pending}, lost={self.lost})"

    @property
    def written(self) -> int:
        """Records committed to the database."""
        return self._written

    @property
    def lost(self) -> int:
        """Records that could not be kept or written (each one also went to `on_lost`)."""
        return self._failed + self._dropped + self._late

    @property
    def pending(self) -> int:
        """Records waiting or being written."""
        return len(self._queue) + self._in_flight

    @property
    def sampled_out(self) -> int:
        """Records skipped on purpose by `sample_rate` (not lost)."""
        return self._sampled_out

    def record(
        self,
        *,
        model: str,
        version: int | None,
        route: str,
        request_id: str,
        latency_ms: float,
        feature_names: Sequence[str],
        inputs: Any,
        outputs: Prediction,
        ts: float | None = None,
    ) -> None:
        """Queue one request's inputs (2-D array or DataFrame) and outputs; O(1), never raises.

        Keeps references: the caller must not modify `inputs` afterwards.
        """
        try:
            keep = self._sample_rate >= 1.0 or self._random.random() < self._sample_rate
            item = _Record(
                time.time() if ts is None else ts,
                model,
                version,
                route,
                request_id,
                latency_ms,
                feature_names,
                inputs,
                outputs,
            )
            with self._lock:
                if not keep:
                    self._sampled_out += 1
                    return
                if self._closing:
                    self._late += 1
                    return
                rows = _row_count(inputs)
                if len(self._queue) + self._in_flight >= self._max_pending or (
                    self._rows_waiting + rows > self._max_rows
                ):
                    self._dropped += 1
                    return
                self._rows_waiting += rows
                self._queue.append(item)
                full = len(self._queue) == self._batch_size
            if full:
                self._wake.set()
        except Exception:  # pragma: no cover - nothing above raises; a request must never fail here
            self._dropped += 1

    def record_many(self, items: Sequence[tuple[Any, ...]]) -> None:
        """Queue many records at once, each a tuple in the order of `record`'s fields: (ts, model,
        version, route, request_id, latency_ms, feature_names, inputs, outputs). One lock for all
        of them: the server's monitor hands over what it drained in one call. Never raises."""
        try:
            rate = self._sample_rate
            if rate < 1.0:
                chance = self._random.random
                kept = [item for item in items if chance() < rate]
            else:
                kept = list(items)
            with self._lock:
                self._sampled_out += len(items) - len(kept)
                if self._closing:
                    self._late += len(kept)
                    return
                room = self._max_pending - len(self._queue) - self._in_flight
                accepted = 0
                for item in kept:
                    rows = _row_count(item[7])
                    if accepted >= room or self._rows_waiting + rows > self._max_rows:
                        self._dropped += 1
                        continue
                    self._rows_waiting += rows
                    self._queue.append(_Record._make(item))
                    accepted += 1
                full = len(self._queue) >= self._batch_size
            if full:
                self._wake.set()
        except Exception:  # pragma: no cover - a request must never fail here
            self._dropped += len(items)

    def start(self) -> PredictionLog:
        """Start the writer thread (once)."""
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name="servekit-predlog", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending within `timeout` seconds, count the rest as lost, stop the writer.

        Blocks up to `timeout` (+1 s for an attempt already running): call it off the event loop.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = time.monotonic() + max(timeout, 0.0)
            start = self._thread is None and bool(self._queue)
        if start:
            self.start()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(timeout, 0.0) + _JOIN_MARGIN_S)
        # The writer is stuck in one attempt: what it has not taken yet is lost now.
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._rows_waiting = 0
            self._failed += left
        if left:
            self._lose(left, "the log was closed before they could be written")
        self._report_dropped()
        if self._late:  # recorded while closing; any later ones are only counted
            self._lose(self._late, "recorded after the log was closed")

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._flush_interval_s)
                self._wake.clear()
                try:
                    self._cycle()
                except Exception:  # pragma: no cover - a bug must not stop the writer
                    logger.exception("prediction log: the writer failed; it keeps running")
                if self._closing:
                    with self._lock:
                        if not self._queue:
                            break
        finally:
            if self._engine is not None:
                self._engine.dispose()

    def _cycle(self) -> None:
        trouble = self._report_dropped() > 0
        with self._lock:
            taken = self._queue
            self._queue = deque()
            self._in_flight = len(taken)
        items = list(taken)
        try:
            for start in range(0, len(items), self._batch_size):
                trouble |= not self._write(items[start : start + self._batch_size])
        finally:
            rows = sum(_row_count(item.inputs) for item in items)
            with self._lock:
                self._rows_waiting -= rows
        trouble |= self._report_dropped() > 0
        if self._retention_s is not None:
            self._maybe_prune()
        if items and not trouble:  # an incident ends with a clean write, not with a quiet moment
            self._end_incident()

    def _write(self, chunk: list[_Record]) -> bool:
        """Insert `chunk` in one transaction, retrying; False if anything failed on the way."""
        rows: list[tuple[Any, ...]] = []
        row = self._serializer.row
        for item in chunk:
            try:
                rows.append(row(item))
            except Exception as exc:
                self._settle(0, 1, f"could not serialize a record of {item.model!r}: {exc}")
        clean = len(rows) == len(chunk)
        deadline = time.monotonic() + self._retry_s
        delay = _BACKOFF_S[0]
        while rows:
            if time.monotonic() >= self._close_deadline:
                self._settle(0, len(rows), "the log was closed before they could be written")
                return False
            try:
                self._insert(rows)
            except Exception as exc:
                clean = False
                self._failing(exc)
                left = min(deadline, self._close_deadline) - time.monotonic()
                if left <= 0:
                    self._settle(0, len(rows), f"cannot write to {describe_url(self.url)}: {_reason(exc)}")
                    return False
                time.sleep(min(delay * random.uniform(0.5, 1.5), left))
                delay = min(delay * 2, _BACKOFF_S[1])
                continue
            self._settle(len(rows), 0)
            break
        return clean

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        engine = self._ensure_engine()
        with write_transaction(engine) as connection:
            if engine.dialect.name == "sqlite":
                # The driver's executemany with the column values as SQLAlchemy stores them on
                # SQLite (timestamps as ISO text): several times faster than a Core insert.
                stamped = [(_sqlite_timestamp(r[0]), *r[1:]) for r in rows]
                connection.exec_driver_sql(_SQLITE_INSERT, stamped)
            else:
                connection.execute(
                    insert(prediction_log),
                    [{**dict(zip(COLUMNS, r, strict=True)), "ts": datetime.fromtimestamp(r[0], UTC)} for r in rows],
                )

    def _ensure_engine(self) -> Engine:
        if self._engine is None:
            engine = make_engine(self.url)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _short_busy_timeout)
            try:
                with write_transaction(engine) as connection:
                    prediction_log.create(connection, checkfirst=True)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    def _failing(self, exc: BaseException) -> None:
        if not self._incident:
            self._incident = True
            logger.info("prediction log: cannot write (%s); retrying for up to %gs", _reason(exc), self._retry_s)
        if self._engine is not None and not is_contention(exc):
            self._engine.dispose()  # a broken connection or a replaced file: reconnect next time

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_EVERY_S or now >= self._close_deadline:
            return
        self._last_prune = now
        cutoff = datetime.now(UTC) - timedelta(seconds=self._retention_s or 0.0)
        try:
            self.pruned += _prune(self._ensure_engine(), cutoff)
        except Exception as exc:
            # Once per outage: nothing is lost, the next prune catches up.
            level = logging.INFO if self._prune_failing else logging.WARNING
            logger.log(level, "prediction log: could not delete records older than %s: %s", cutoff, _reason(exc))
            self._prune_failing = True
        else:
            self._prune_failing = False

    # -- accounting -------------------------------------------------------------------------

    def _settle(self, written: int, lost: int, reason: str = "") -> None:
        with self._lock:
            self._in_flight -= written + lost
            self._written += written
            self._failed += lost
        if lost:
            self._lose(lost, reason)

    def _report_dropped(self) -> int:
        with self._lock:
            count = self._dropped - self._dropped_reported
            self._dropped_reported = self._dropped
        if count:
            self._lose(
                count,
                f"more than max_pending={self._max_pending} records or max_pending_rows={self._max_rows} "
                "input rows were waiting",
            )
        return count

    def _lose(self, count: int, reason: str) -> None:
        self._incident = True
        self._incident_lost += count
        if not self._warned:
            self._warned = True
            logger.warning(
                "prediction log: %d record(s) lost: %s; further losses are only counted until it recovers",
                count,
                reason,
            )
        if self._on_lost is not None:
            try:
                self._on_lost(count, reason)
            except Exception:
                logger.exception("prediction log: the on_lost callback failed")

    def _end_incident(self) -> None:
        if self._incident:
            if self._incident_lost:
                logger.info("prediction log: writing again; %d record(s) were lost", self._incident_lost)
            self._incident = False
            self._incident_lost = 0
            self._warned = False


def _check_settings(
    sample_rate: float,
    batch_size: int,
    flush_interval_s: float,
    max_pending: int,
    retention_s: float | None,
    retry_s: float,
) -> None:
    problems = [
        (not 0.0 <= sample_rate <= 1.0, f"sample_rate must be between 0 and 1, got {sample_rate}"),
        (batch_size < 1, f"batch_size must be at least 1, got {batch_size}"),
        (flush_interval_s <= 0, f"flush_interval_s must be positive, got {flush_interval_s}"),
        (max_pending < 1, f"max_pending must be at least 1, got {max_pending}"),
        (retention_s is not None and retention_s <= 0, f"retention_s must be positive, got {retention_s}"),
        (retry_s < 0, f"retry_s cannot be negative, got {retry_s}"),
    ]
    for bad, message in problems:
        if bad:
            raise InvalidInput(f"prediction log: {message}")


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    """Keep one attempt short, so retries, backoff and close() stay in charge of the waiting."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_ATTEMPT_BUSY_MS}")
    finally:
        cursor.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SQLAlchemyError):
        return one_line(exc)
    if isinstance(exc, RegistryError):
        return exc.message
    return str(exc) or type(exc).__name__


def _prune(engine: Engine, cutoff: datetime) -> int:
    """Delete rows older than `cutoff` in chunks, each its own short transaction.

    Rows are appended in time order, so the old ones are those before the first recent id: found
    by walking ids from the oldest (no index on `ts` alone, which would cost every insert more than
    it saves this once-a-minute clean-up)."""
    column = prediction_log.c
    with engine.connect() as connection:
        first_recent = connection.execute(
            select(column.id).where(column.ts >= cutoff).order_by(column.id).limit(1)
        ).scalar()
        if first_recent is None:
            first_recent = (connection.execute(select(func.max(column.id))).scalar() or 0) + 1
    total = 0
    while True:
        oldest = select(column.id).where(column.id < first_recent).order_by(column.id).limit(_PRUNE_CHUNK)
        with write_transaction(engine) as connection:
            deleted = connection.execute(delete(prediction_log).where(column.id.in_(oldest))).rowcount
        total += deleted
        if deleted < _PRUNE_CHUNK:
            return total


# -- serialization (writer thread) ----------------------------------------------------------


class _Serializer:
    """Records as table rows (tuples in `COLUMNS` order). The JSON of feature and class names is
    made once per names object; inputs and outputs are binary blobs (`arraycodec`): numeric
    arrays are copied as bytes, never formatted as text."""

    def __init__(self) -> None:
        self._names: dict[int, tuple[Any, str]] = {}

    def _json_once(self, key_object: Any, make: Callable[[], Any]) -> str:
        found = self._names.get(id(key_object))
        if found is not None and found[0] is key_object:
            return found[1]
        if len(self._names) > 1024:
            self._names.clear()
        text = orjson.dumps(make()).decode()
        self._names[id(key_object)] = (key_object, text)
        return text

    def row(self, item: _Record) -> tuple[Any, ...]:
        inputs, rows, names = _inputs_blob(item.inputs, item.feature_names)
        outputs = item.outputs
        classes = None
        if outputs.probabilities is not None and outputs.classes is not None:
            classes = self._json_once(outputs.classes, lambda: [str(c) for c in np.asarray(outputs.classes).tolist()])
        if names is None:  # the model's names fit the rows: the same JSON every time
            features = self._json_once(item.feature_names, lambda: [str(n) for n in item.feature_names])
        else:
            features = orjson.dumps(names).decode()
        return (
            float(item.ts),
            str(item.request_id),
            str(item.model),
            None if item.version is None else int(item.version),
            str(item.route),
            float(item.latency_ms),
            rows,
            features,
            classes,
            inputs,
            arraycodec.encode(outputs.outputs, outputs.probabilities, default=json_default),
        )


COLUMNS = (
    "ts", "request_id", "model", "version", "route", "latency_ms", "rows", "features", "classes", "inputs", "outputs"
)  # fmt: skip


_SQLITE_INSERT = f"INSERT INTO prediction_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _sqlite_timestamp(ts: float) -> str:
    """`ts` in SQLAlchemy's SQLite DATETIME text form (UTC), the formatted second reused."""
    global _STAMP_SECOND, _STAMP_PREFIX
    second = int(ts // 1)
    if second != _STAMP_SECOND:
        _STAMP_SECOND = second
        _STAMP_PREFIX = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{_STAMP_PREFIX}.{int((ts - second) * 1e6):06d}"


_STAMP_SECOND = -1
_STAMP_PREFIX = ""


def _inputs_blob(inputs: Any, feature_names: Sequence[str] | None) -> tuple[bytes, int, list[str] | None]:
    """The input rows as a blob, their count, and the column names when `feature_names` does
    not fit them (`None` when it does)."""
    if isinstance(inputs, np.ndarray):
        values, columns = np.atleast_2d(inputs), None
    else:  # a DataFrame
        values, columns = inputs.to_numpy(), [str(c) for c in inputs.columns]
    if values.ndim != 2:
        values = values.reshape(len(values), -1)
    width = values.shape[1]
    text = arraycodec.encode(values, default=json_default)
    if feature_names is not None and len(feature_names) == width:
        return text, int(values.shape[0]), None  # the caller's names fit: no list to build
    names = columns if columns is not None and len(columns) == width else [f"x{i}" for i in range(width)]
    return text, int(values.shape[0]), names


def _row_count(inputs: Any) -> int:
    """Input rows of a record (a 2-D array or a DataFrame; 1 for anything else)."""
    shape = getattr(inputs, "shape", None)
    return int(shape[0]) if shape else 1
