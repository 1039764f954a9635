"""The durable prediction log: each request's inputs and outputs, written in the background.

`PredictionLog.record` runs on the server's event loop for every prediction, so it only appends a
reference to a bounded deque: O(1), no I/O, no serialization, never raises. One daemon thread
takes what is waiting, encodes it as blocks of requests (`predlog_blocks`: one database row per
model version and batch, not one per request) and inserts them, one transaction per batch, into
the `prediction_log_blocks` table of any SQLAlchemy database, by default the registry's SQLite file.

Faults never reach the request path. A failed write is retried with backoff for `retry_s` while
later records keep waiting, up to `max_pending`. Whatever cannot be kept or written is counted in
`lost`, passed to `on_lost(count, reason)` and reported by one WARNING per incident on the
"servekit.predlog" logger: nothing is dropped silently. Counters count records (requests), and
`max_pending_rows` bounds their input rows too.

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
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, event, func, insert, make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from servekit.errors import InvalidInput, RegistryError
from servekit.memory import release_free_memory
from servekit.monitoring.predlog_blocks import BlockEncoder, Segment, single
from servekit.monitoring.predlog_export import (
    FORMATS,
    export,
    load_inputs,
    parse_duration,
    parse_since,
    read_log,
)
from servekit.monitoring.predlog_sqlite import SqliteBlockInserter
from servekit.prediction import Prediction
from servekit.registry.database import (
    describe_url,
    is_contention,
    make_engine,
    one_line,
    prediction_log_blocks,
    write_transaction,
)

__all__ = ["FORMATS", "PredictionLog", "export", "load_inputs", "parse_duration", "parse_since", "read_log"]

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
RECONNECT_AFTER_ROWS = 50_000
"""Input rows written through one connection after which the writer, once the log is idle, closes
it: SQLite keeps memory from big inserts per connection (~25 MB after a burst of 1000-row
requests, measured with `sqlite3_memory_used`), and only closing the connection gives it back."""

LostCallback = Callable[[int, str], None]


class PredictionLog:
    """Appends every prediction to the `prediction_log_blocks` table from one background thread.

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
        self._queue: deque[tuple[list[Segment], int, int]] = deque()  # (segments, requests, input rows)
        self._queued = 0  # records in the queue
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
        self._sqlite: SqliteBlockInserter | None = None  # the insert path on SQLite
        self._incident = False
        self._incident_lost = 0
        self._warned = False
        self._last_prune = -math.inf
        self._rows_since_connect = 0  # input rows written through the engine's current connections
        self._prune_failing = False
        self.pruned = 0
        """Records (requests) deleted by retention so far."""
        self._encoder = BlockEncoder()

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
        return self._queued + self._in_flight

    @property
    def rows_waiting(self) -> int:
        """Input rows of the records waiting or being written."""
        return self._rows_waiting

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
            moment = time.time() if ts is None else ts
            segment = single(moment, model, version, route, request_id, latency_ms, feature_names, inputs, outputs)
        except Exception:  # not a request this log can hold (e.g. no outputs): counted, never raised
            with self._lock:
                self._dropped += 1
            return
        self.record_segments([segment])

    def record_many(self, items: Sequence[tuple[Any, ...]]) -> None:
        """Queue many records at once, each a tuple in the order of `record`'s fields: (ts, model,
        version, route, request_id, latency_ms, feature_names, inputs, outputs). Never raises."""
        segments: list[Segment] = []
        odd = 0
        for item in items:
            try:
                segments.append(single(*item))
            except Exception:
                odd += 1
        if odd:
            with self._lock:
                self._dropped += odd
        self.record_segments(segments)

    def record_segments(self, segments: Sequence[Segment]) -> None:
        """Queue segments (`predlog_blocks.Segment`: one request, or a micro-batch answered by one
        predict call), with one lock for all: the server's monitor hands over what it drained in
        one call. Sampling and the memory bounds apply per request. Keeps the list when everything
        fits: the caller must not modify it afterwards. Never raises."""
        try:
            if self._sample_rate < 1.0:
                kept = self._sample(segments)
            else:
                kept = segments if isinstance(segments, list) else list(segments)
            requests = [len(segment.ts) for segment in kept]
            counts = [sum(segment.rows) for segment in kept]
            total, rows = sum(requests), sum(counts)
            with self._lock:
                if self._closing:
                    self._late += total
                    return
                room = self._max_pending - self._queued - self._in_flight
                if total <= room and self._rows_waiting + rows <= self._max_rows:
                    accepted = kept  # the usual case: all of them, as they are
                else:
                    accepted, total, rows = [], 0, 0
                    for segment, size, count in zip(kept, requests, counts, strict=True):
                        if total + size > room or self._rows_waiting + rows + count > self._max_rows:
                            self._dropped += size
                            continue
                        accepted.append(segment)
                        total += size
                        rows += count
                if accepted:
                    self._rows_waiting += rows
                    self._queue.append((accepted, total, rows))
                    self._queued += total
                full = self._queued >= self._batch_size
            if full:
                self._wake.set()
        except Exception:  # pragma: no cover - a request must never fail here
            with self._lock:
                self._dropped += sum(len(getattr(segment, "ts", ())) for segment in segments)

    def _sample(self, segments: Sequence[Segment]) -> list[Segment]:
        """Each request kept with probability `sample_rate`; the others counted in `sampled_out`."""
        chance, rate = self._random.random, self._sample_rate
        kept: list[Segment] = []
        skipped = 0
        for segment in segments:
            keep = [chance() < rate for _ in segment.ts]
            if all(keep):
                kept.append(segment)
                continue
            skipped += keep.count(False)
            if any(keep):
                kept.append(_subset(segment, keep))
        with self._lock:
            self._sampled_out += skipped
        return kept

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
            start = self._thread is None and self._queued > 0
        if start:
            self.start()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(timeout, 0.0) + _JOIN_MARGIN_S)
        # The writer is stuck in one attempt: what it has not taken yet is lost now.
        with self._lock:
            left = self._queued
            self._queue.clear()
            self._queued = 0
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
                woken = self._wake.wait(self._flush_interval_s)
                self._wake.clear()
                try:
                    self._cycle(everything=not woken or self._closing)
                    if not woken and not self._closing:
                        self._maybe_let_go()
                except Exception:  # pragma: no cover - a bug must not stop the writer
                    logger.exception("prediction log: the writer failed; it keeps running")
                if self._closing:
                    with self._lock:
                        if not self._queued:
                            break
        finally:
            self._dispose()

    def _cycle(self, *, everything: bool) -> None:
        """Write what was queued when the cycle began, `batch_size` records per transaction: only
        full batches when woken by a full queue (the rest joins the next batch), everything when
        the flush interval has passed or the log is closing."""
        trouble = self._report_dropped() > 0
        with self._lock:
            budget = self._queued
        wrote = False
        while budget > 0 and (everything or budget >= self._batch_size):
            with self._lock:
                taken, requests, rows = self._take(min(budget, self._batch_size))
            budget -= requests
            try:
                trouble |= not self._write(taken)
            finally:
                with self._lock:
                    self._rows_waiting -= rows
            self._rows_since_connect += rows
            wrote = True
        trouble |= self._report_dropped() > 0
        if self._retention_s is not None:
            self._maybe_prune()
        if wrote and not trouble:  # an incident ends with a clean write, not with a quiet moment
            self._end_incident()

    def _maybe_let_go(self) -> None:
        """A quiet interval after many rows were written: close the database connection and give
        the allocator's free memory back (the next write connects again, ~1 ms)."""
        if self._rows_since_connect < RECONNECT_AFTER_ROWS or self._engine is None:
            return
        with self._lock:
            if self._queued:
                return
        self._dispose()
        self._rows_since_connect = 0
        release_free_memory()

    def _take(self, count: int) -> tuple[list[Segment], int, int]:
        """The oldest queued segments holding at least `count` requests (or all that wait), with
        their requests and input rows (call with the lock held)."""
        taken: list[Segment] = []
        requests = rows = 0
        while self._queue and requests < count:
            chunk, chunk_requests, chunk_rows = self._queue.popleft()
            if requests + chunk_requests > count and len(chunk) > 1:  # split: the rest stays first in line
                keep, size = 0, 0
                while keep < len(chunk) and requests + size < count:
                    size += len(chunk[keep].ts)
                    keep += 1
                rest = chunk[keep:]
                rest_rows = sum(sum(segment.rows) for segment in rest)
                self._queue.appendleft((rest, chunk_requests - size, rest_rows))
                chunk, chunk_requests, chunk_rows = chunk[:keep], size, chunk_rows - rest_rows
            taken += chunk
            requests += chunk_requests
            rows += chunk_rows
        self._queued -= requests
        self._in_flight += requests
        return taken, requests, rows

    def _write(self, segments: list[Segment]) -> bool:
        """Insert `segments` in one transaction, retrying; False if anything failed on the way."""
        blocks, failed = self._encoder.encode(segments)
        for segment, exc in failed:
            self._settle(0, len(segment.ts), f"could not serialize a record of {segment.model!r}: {exc}")
        clean = not failed
        rows = [block for block, _ in blocks]
        records = sum(count for _, count in blocks)
        deadline = time.monotonic() + self._retry_s
        delay = _BACKOFF_S[0]
        while rows:
            if time.monotonic() >= self._close_deadline:
                self._settle(0, records, "the log was closed before they could be written")
                return False
            try:
                self._insert(rows)
            except Exception as exc:
                clean = False
                self._failing(exc)
                left = min(deadline, self._close_deadline) - time.monotonic()
                if left <= 0:
                    self._settle(0, records, f"cannot write to {describe_url(self.url)}: {_reason(exc)}")
                    return False
                time.sleep(min(delay * random.uniform(0.5, 1.5), left))
                delay = min(delay * 2, _BACKOFF_S[1])
                continue
            self._settle(records, 0)
            break
        return clean

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        engine = self._ensure_engine()
        if self._sqlite is not None:
            self._sqlite.insert(rows)
            return
        with write_transaction(engine) as connection:
            connection.execute(insert(prediction_log_blocks), rows)

    def _ensure_engine(self) -> Engine:
        if self._engine is None:
            engine = make_engine(self.url)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _short_busy_timeout)
            try:
                with write_transaction(engine) as connection:
                    prediction_log_blocks.create(connection, checkfirst=True)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
            self._sqlite = SqliteBlockInserter(engine) if engine.dialect.name == "sqlite" else None
        return self._engine

    def _dispose(self) -> None:
        """Close the database connections (the engine connects again when next used)."""
        if self._sqlite is not None:
            self._sqlite.close()
        if self._engine is not None:
            self._engine.dispose()

    def _failing(self, exc: BaseException) -> None:
        if not self._incident:
            self._incident = True
            logger.info("prediction log: cannot write (%s); retrying for up to %gs", _reason(exc), self._retry_s)
        if self._engine is not None and not is_contention(exc):
            self._dispose()  # a broken connection or a replaced file: reconnect next time

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
    """Delete blocks whose newest request is older than `cutoff`, in chunks, each its own short
    transaction; returns how many requests they held.

    Blocks are appended in time order, so the old ones are those before the first recent id: found
    by walking ids from the oldest (no index on `last_ts` alone, which would cost every insert more
    than it saves this once-a-minute clean-up)."""
    column = prediction_log_blocks.c
    with engine.connect() as connection:
        first_recent = connection.execute(
            select(column.id).where(column.last_ts >= cutoff).order_by(column.id).limit(1)
        ).scalar()
        if first_recent is None:
            first_recent = (connection.execute(select(func.max(column.id))).scalar() or 0) + 1
    total = 0
    while True:
        oldest = select(column.id).where(column.id < first_recent).order_by(column.id).limit(_PRUNE_CHUNK)
        with write_transaction(engine) as connection:
            records = connection.execute(select(func.sum(column.records)).where(column.id.in_(oldest))).scalar()
            deleted = connection.execute(delete(prediction_log_blocks).where(column.id.in_(oldest))).rowcount
        total += int(records or 0)
        if deleted < _PRUNE_CHUNK:
            return total


def _subset(segment: Segment, keep: list[bool]) -> Segment:
    """The requests of `segment` whose `keep` is true."""
    picked = [i for i, flag in enumerate(keep) if flag]
    row_mask = np.repeat(np.asarray(keep), np.asarray(segment.rows, dtype=np.int64))
    output_mask = np.repeat(np.asarray(keep), np.asarray(segment.output_rows, dtype=np.int64))
    inputs = segment.inputs
    inputs = inputs.iloc[row_mask] if hasattr(inputs, "iloc") else np.atleast_2d(inputs)[row_mask]
    outputs = segment.outputs
    probabilities = None if outputs.probabilities is None else outputs.probabilities[output_mask]
    return segment._replace(
        ts=[segment.ts[i] for i in picked],
        routes=[segment.routes[i] for i in picked],
        request_ids=[segment.request_ids[i] for i in picked],
        latency_ms=[segment.latency_ms[i] for i in picked],
        inputs=inputs,
        outputs=Prediction(outputs.outputs[output_mask], probabilities, outputs.classes),
        rows=[segment.rows[i] for i in picked],
        output_rows=[segment.output_rows[i] for i in picked],
    )
