"""`Monitor`: everything a server records about its requests, kept off the request's path.

Answering a request only appends a tuple to a queue (`request_done`, `predicted`, `called`); a task
on the event loop drains that queue every `DRAIN_INTERVAL_S` in slices, so that requests keep
flowing in between, and does the work there: Prometheus metrics, the JSON access log, the
prediction log (which writes in its own thread) and the drift windows. `/metrics` drains first, so
what it shows includes every request answered before it. The queue is bounded; an event that does
not fit is counted (`servekit_monitor_events_dropped_total`), never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import IO, TYPE_CHECKING, Any

import orjson

from servekit.aio import cancel
from servekit.memory import MemoryReleaser
from servekit.monitoring.context import RequestContext
from servekit.monitoring.metrics import Metrics, metrics, multiprocess_dir, retire
from servekit.monitoring.predlog_blocks import Segment, single
from servekit.monitoring.tally import Tally

if TYPE_CHECKING:
    from servekit.prediction import Prediction
    from servekit.runner import Runner
    from servekit.settings import Settings

__all__ = ["Monitor", "protocol_of"]

logger = logging.getLogger("servekit.monitor")

DRAIN_INTERVAL_S = 0.05
SLICE = 128
MAX_EVENTS = 200_000
BULK_BACKLOG_ROWS = 10_000
BULK_REQUEST_ROWS = 100
"""Requests of at least this many rows count towards returning freed memory to the OS."""

_REQUEST, _PREDICTED, _CALLED, _BATCH = 0, 1, 2, 3
_ROUTE = attrgetter("route")
_REQUEST_ID = attrgetter("request_id")


@cache
def protocol_of(route: str) -> str:
    """The protocol family of a route template, for the `protocol` label."""
    if route.startswith("/v2"):
        return "oip"
    if route.endswith(":predict") or route == "/v1/models/{name}:predict":
        return "kserve"
    if route.startswith("/v1/models"):
        return "native"
    if route in {"/invocations", "/ping", "/version"}:
        return "mlflow"
    if route in {"/predict", "/predict/batch", "/v1/predict", "/health", "/model/info"}:
        return "seed"
    if route.startswith("/health"):
        return "health"
    return "other"


class Monitor:
    """Per-server monitoring: metrics, access log, prediction log and drift windows."""

    def __init__(self, settings: Settings, *, stream: IO[str] | None = None) -> None:
        self.settings = settings
        self.metrics: Metrics | None = metrics() if settings.metrics else None
        self.access_log = settings.access_log
        self.json_log = settings.log_format == "json"
        self.stream = stream
        self.in_flight = 0
        self._pid = os.getpid()
        self.dropped = 0
        self._dropped_reported = 0
        self._events: deque[tuple[Any, ...]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._budgets = dict(settings.latency_budgets_ms)
        self._default_budget = self._budgets.pop("default", None)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._cache_seen: dict[int, tuple[int, int]] = {}
        self.prediction_log: Any | None = None
        self._feature_names: dict[int, tuple[str, ...]] = {}
        self._written_seen = 0
        self.drift: Any | None = None
        self._runners: dict[int, Runner] = {}
        self.memory = MemoryReleaser(self._bulk_backlog)
        """Gives the allocator's free memory back to the OS after many-row traffic."""

    # -- the request path: O(1), no I/O -------------------------------------------------------
    def request_done(self, ctx: RequestContext, method: str, status: int, seconds: float) -> None:
        """An HTTP request was answered."""
        events = self._events
        if len(events) < MAX_EVENTS:
            events.append((_REQUEST, ctx, method, status, seconds, time.time()))
        else:
            self.dropped += 1

    def predicted(self, runner: Runner, batch: Any, prediction: Prediction, seconds: float, ctx: Any) -> None:
        """A model answered a request's rows."""
        events = self._events
        if len(events) < MAX_EVENTS:
            events.append((_PREDICTED, runner, batch, prediction, seconds, ctx, time.time()))
        else:
            self.dropped += 1

    def watch(self, runner: Runner) -> None:
        """Follow a runner: its predict calls, queue, cache and circuit appear in the metrics."""
        self._runners[id(runner)] = runner
        predictor = runner.predictor
        labels = (predictor.name, _version(predictor.version))
        runtime = predictor.runtime.format
        events = self._events

        def called(rows: int, seconds: float) -> None:
            if len(events) < MAX_EVENTS:
                events.append((_CALLED, labels, runtime, rows, seconds))
            else:
                self.dropped += 1

        def answered(stacked: Any, whole: Prediction, jobs: list[tuple[RequestContext, int, float]]) -> None:
            if len(events) < MAX_EVENTS:
                events.append((_BATCH, runner, stacked, whole, jobs, time.time()))
            else:
                self.dropped += 1

        runner.on_call = called
        runner.on_batch = answered
        if self.metrics is not None:
            self.metrics.model_loaded.labels(*labels, runtime, predictor.variant or "").set(1)

    def unwatch(self, runner: Runner) -> None:
        """A runner was replaced (new version) or stopped."""
        self.drain()  # what the old version answered is recorded under its own labels
        self._runners.pop(id(runner), None)
        self._cache_seen.pop(id(runner), None)
        self._feature_names.pop(id(runner), None)
        runner.on_call = None
        runner.on_batch = None
        if self.drift is not None:
            self.drift.forget(runner)
        if self.metrics is not None:
            predictor = runner.predictor
            labels = (predictor.name, _version(predictor.version))
            retire(self.metrics.model_loaded, *labels, predictor.runtime.format, predictor.variant or "")
            for gauge in (self.metrics.queue_depth, self.metrics.circuit_state):
                retire(gauge, *labels)

    def model_loaded(self, name: str, version: int | None, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.model_load_duration.labels(name, _version(version)).observe(seconds)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.start()
        if self.drift is not None:
            await self.drift.start()
        self._task = asyncio.create_task(self._run(), name="servekit-monitor")

    async def stop(self) -> None:
        """Record everything still queued, then flush the prediction log (graceful shutdown)."""
        await cancel(self._task)
        self._task = None
        if self.drift is not None:
            await self.drift.stop()
        self.drain()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)
        if self.metrics is not None and multiprocess_dir() is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # its live gauges no longer count

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_INTERVAL_S)
            try:
                while self.drain(SLICE) == SLICE:
                    await asyncio.sleep(0)  # let requests through between slices
                if self.memory.due():
                    await asyncio.to_thread(self.memory.release)
            except Exception:  # monitoring must never take the server down
                logger.exception("monitoring failed to record a batch of events")

    # -- the work, off the request path ---------------------------------------------------------
    def drain(self, limit: int | None = None) -> int:
        """Record up to `limit` queued events (all when `None`); returns how many."""
        events = self._events
        count = len(events) if limit is None else min(limit, len(events))
        if not count:
            self._report_dropped()
            return 0
        lines: list[bytes] = []
        logged: list[Segment] = []
        tally = Tally()
        answered: dict[tuple[str, str, str, int], list[float]] = {}
        for _ in range(count):
            event = events.popleft()
            kind = event[0]
            if kind == _REQUEST:
                self._record_request(event, answered, lines)
            elif kind == _PREDICTED:
                self._record_prediction(event, tally, logged)
            elif kind == _BATCH:
                self._record_batch(event, tally, logged)
            else:
                self._record_call(event, tally)
        if self.metrics is not None:
            self._count_requests(answered, tally)
            tally.apply(self._child)
        if logged:
            self.prediction_log.record_segments(logged)  # type: ignore[union-attr]
        if lines:
            self._write(lines)
        self._report_dropped()
        return count

    def refresh(self) -> None:
        """Bring live gauges (in flight, queue depth, circuit state, cache counters) up to date."""
        if self.metrics is None:
            return
        m = self.metrics
        m.in_flight.set(self.in_flight)
        for key, runner in list(self._runners.items()):
            predictor = runner.predictor
            labels = (predictor.name, _version(predictor.version))
            m.queue_depth.labels(*labels).set(runner.queue_depth)
            m.circuit_state.labels(*labels).set(runner.circuit.state)
            cache_ = runner.cache
            if cache_ is not None:
                hits, misses = self._cache_seen.get(key, (0, 0))
                if cache_.hits > hits:
                    m.cache_hits.labels(*labels).inc(cache_.hits - hits)
                if cache_.misses > misses:
                    m.cache_misses.labels(*labels).inc(cache_.misses - misses)
                self._cache_seen[key] = (cache_.hits, cache_.misses)
        log = self.prediction_log
        if log is not None:
            m.prediction_log_pending.set(log.pending)
            if log.written > self._written_seen:
                m.prediction_log_rows.labels("written").inc(log.written - self._written_seen)
                self._written_seen = log.written

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _bulk_backlog(self) -> bool:
        """Many input rows still wait for the prediction log (their memory is freed later)."""
        log = self.prediction_log
        return log is not None and log.rows_waiting > BULK_BACKLOG_ROWS

    def _record_request(
        self, event: tuple[Any, ...], answered: dict[tuple[str, str, str, int], list[float]], lines: list[bytes]
    ) -> None:
        """Per request only its duration, under its (model, version, route, status); the metrics'
        labels are made once per such group (`_count_requests`)."""
        _, ctx, method, status, seconds, at = event
        if ctx.rows >= BULK_REQUEST_ROWS:  # small requests do not leave big holes in the heap
            self.memory.rows += ctx.rows
        if self.metrics is not None:
            key = (ctx.model, ctx.version, ctx.route, status)
            durations = answered.get(key)
            if durations is None:
                answered[key] = [seconds]
            else:
                durations.append(seconds)
        if self.access_log:
            lines.append(self._access_line(ctx, method, status, seconds, at))

    def _count_requests(self, answered: dict[tuple[str, str, str, int], list[float]], tally: Tally) -> None:
        """Requests, their durations and those over their route's latency budget, per group."""
        m = self.metrics
        if m is None:
            return
        for (model, version, route, status), durations in answered.items():
            labels = (model, version, route, protocol_of(route), str(status))
            tally.count(m.requests, labels, len(durations))
            tally.observe_all(m.request_duration, labels, durations)
            budget = self._budgets.get(route, self._default_budget)
            if budget is not None:
                limit = budget / 1000
                over = sum(seconds > limit for seconds in durations)
                if over:
                    tally.count(m.requests_over_budget, (route, labels[3]), over)

    def _access_line(self, ctx: RequestContext, method: str, status: int, seconds: float, at: float) -> bytes:
        if self.json_log:
            return orjson.dumps(
                {
                    "ts": _iso(at),
                    "level": "info",
                    "logger": "servekit.access",
                    "pid": self._pid,
                    "request_id": ctx.request_id,
                    "method": method,
                    "route": ctx.route,
                    "status": status,
                    "latency_ms": int(seconds * 1_000_000 + 0.5) / 1000,  # µs precision; round() costs 4x
                    "model": ctx.model or None,
                    "version": ctx.version or None,
                    "rows": ctx.rows,
                }
            )
        model = f" {ctx.model}:{ctx.version}" if ctx.model else ""
        took = f"{seconds * 1000:.2f}ms"
        return f"{_iso(at)} {method} {ctx.route} {status} {took}{model} rows={ctx.rows} id={ctx.request_id}".encode()

    def _record_prediction(self, event: tuple[Any, ...], tally: Tally, logged: list[Segment]) -> None:
        """One request's prediction (runners that do not batch on the loop, cache hits)."""
        _, runner, batch, prediction, seconds, ctx, at = event
        predictor = runner.predictor
        self._count(predictor, prediction, tally)
        if self.prediction_log is not None:
            route, request_id = (ctx.route, ctx.request_id) if ctx is not None else ("", "")
            names = self._names(runner)
            logged.append(
                single(
                    at,
                    predictor.name,
                    predictor.version,
                    route,
                    request_id,
                    seconds * 1000,
                    names,
                    batch,
                    prediction.detached(),
                )
            )
        if self.drift is not None and predictor.manifest.profile:
            self.drift.add(runner, batch)

    def _record_batch(self, event: tuple[Any, ...], tally: Tally, logged: list[Segment]) -> None:
        """A micro-batch of requests answered by one predict call: recorded as a whole."""
        _, runner, stacked, whole, jobs, at = event
        predictor = runner.predictor
        self._count(predictor, whole, tally)
        if self.prediction_log is not None:
            contexts, rows, waited = zip(*jobs, strict=True)
            logged.append(
                Segment(
                    (at,) * len(jobs),
                    predictor.name,
                    predictor.version,
                    tuple(map(_ROUTE, contexts)),
                    tuple(map(_REQUEST_ID, contexts)),
                    tuple(seconds * 1000 for seconds in waited),
                    self._names(runner),
                    stacked,
                    whole.detached(),
                    rows,
                    rows,
                )
            )
        if self.drift is not None and predictor.manifest.profile:
            self.drift.add(runner, stacked)

    def _count(self, predictor: Any, prediction: Prediction, tally: Tally) -> None:
        """Predicted classes (classifiers) or values (regressors) in the metrics."""
        m = self.metrics
        if m is None:
            return
        labels = (predictor.name, _version(predictor.version))
        if prediction.probabilities is not None and predictor.classes is not None:
            for label, amount in Counter(prediction.values()).items():
                tally.count(m.predictions, (*labels, str(label)), amount)
        elif prediction.outputs.dtype.kind in "fiu":
            tally.observe_all(m.prediction_values, labels, prediction.outputs.reshape(-1).tolist())

    def _names(self, runner: Runner) -> tuple[str, ...]:
        """The runner's feature names, one tuple per runner (the prediction log keys its JSON on it)."""
        names = self._feature_names.get(id(runner))
        if names is None:
            names = self._feature_names[id(runner)] = tuple(runner.predictor.signature.names)
        return names

    def _record_call(self, event: tuple[Any, ...], tally: Tally) -> None:
        if self.metrics is None:
            return
        _, labels, runtime, rows, seconds = event
        tally.observe(self.metrics.batch_size, labels, rows)
        tally.observe(self.metrics.predict_duration, (*labels, runtime), seconds)

    def _write(self, lines: list[bytes]) -> None:
        """One write for the whole slice: bytes straight to stderr's file descriptor (no text
        encoding layer), or text to the stream a caller set."""
        data = b"\n".join(lines) + b"\n"
        try:
            if self.stream is not None:
                self.stream.write(data.decode())
                self.stream.flush()
                return
            view = memoryview(data)
            while view:
                view = view[os.write(2, view) :]
        except (OSError, ValueError):  # a closed or broken log stream must not stop monitoring
            pass

    def _report_dropped(self) -> None:
        if self.dropped > self._dropped_reported:
            lost = self.dropped - self._dropped_reported
            self._dropped_reported = self.dropped
            if self.metrics is not None:
                self.metrics.monitor_events_dropped.inc(lost)
            logger.warning("monitoring fell behind: %d events were not recorded", lost)

    def on_prediction_log_loss(self) -> Callable[[int, str], None]:
        """The prediction log's `on_lost` callback: count lost rows in the metrics."""

        def lost(count: int, reason: str) -> None:
            if self.metrics is not None:
                self.metrics.prediction_log_rows.labels("lost").inc(count)

        return lost


def _version(version: int | None) -> str:
    return "" if version is None else str(version)


def _iso(at: float) -> str:
    """UTC ISO-8601 with milliseconds; the text is reused while the millisecond lasts (a drained
    slice holds many requests of the same millisecond under load)."""
    global _ISO_MS, _ISO_TEXT
    ms = int(at * 1000)
    if ms != _ISO_MS:
        second, rest = divmod(ms, 1000)
        _ISO_MS, _ISO_TEXT = ms, f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{rest:03d}Z"
    return _ISO_TEXT


_ISO_MS = -1
_ISO_TEXT = ""
