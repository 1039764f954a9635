"""`Runner`: runs one loaded model version's predictions.

Adaptive micro-batching in two modes, chosen by how long the model's calls take (a moving
average):
- fast models (under `inline_below_ms`, e.g. an ONNX variant at ~8 µs a row): the requests that
  arrive in one turn of the event loop are stacked and predicted at the start of the next turn,
  on the loop itself — a thread hand-off would cost more than the prediction;
- slower models: requests wait in a bounded queue and are stacked into one `predict` call in the
  model's own thread when it frees up (under load, optionally waiting up to `max_latency_ms` for
  more company), so the event loop never blocks on them.
At low load a request never waits for company; under load batches grow by themselves, up to
`max_batch_size` rows (a bigger request always goes to the thread). A full queue answers
`Overloaded` (503 + Retry-After) at once and a request that takes too long `PredictionTimeout` (504).
Repeated failures open the model's circuit breaker (`servekit.circuit`): fast 503s until a probe
succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servekit.cache import PredictionCache
from servekit.circuit import CircuitBreaker
from servekit.errors import InvalidInput, Overloaded, PredictionFailed, PredictionTimeout
from servekit.monitoring.context import CURRENT
from servekit.prediction import Prediction
from servekit.predictor import Predictor
from servekit.settings import RunnerSettings
from servekit.signature import Batch

__all__ = ["Runner"]

logger = logging.getLogger("servekit.runner")

_SMOOTHING = 0.1
_CLIP = 4.0
_STOP_POLL_S = 0.005
"""How often `stop` looks again while predictions run in the thread without a queue."""


@dataclass(slots=True)
class _Job:
    batch: Batch
    rows: int
    future: asyncio.Future[Prediction]
    enqueued: float = field(default_factory=time.perf_counter)
    ctx: Any = None
    """The request's monitoring context (`servekit.monitoring.context`), when it has one."""
    counted: bool = False
    """Its failure or success goes into the circuit when the batch is settled (the request
    awaits the future directly, with no coroutine of the runner's around it to count it)."""


class Runner:
    """Predictions of one `Predictor`, batched, bounded and timed."""

    def __init__(self, predictor: Predictor, settings: RunnerSettings | None = None) -> None:
        self.predictor = predictor
        self.settings = settings or RunnerSettings()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"servekit-{predictor.name}")
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.in_flight = 0
        self._last_batch_jobs = 0
        self._carry: _Job | None = None
        self._pending: list[_Job] = []  # fast models: requests waiting for the next loop turn
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it started on
        self.cache = PredictionCache(self.settings.cache_size) if self.settings.cache_size else None
        self._predict_seconds = float("inf")  # unknown until measured: the first calls use the thread
        self._inline_below_s = self.settings.inline_below_ms / 1000
        self._clip_seconds = _CLIP * self._inline_below_s
        self.circuit = CircuitBreaker(
            predictor.name, failures=self.settings.circuit_failures, reset_after_s=self.settings.circuit_reset_s
        )
        self.labels = (predictor.name, "" if predictor.version is None else str(predictor.version))
        """(model, version) as metric labels."""
        self.on_call: Callable[[int, float], None] | None = None
        """Told the rows and seconds of every predict call (the monitor's batch-size and latency metrics)."""
        self.on_batch: Callable[[Batch, Prediction, list[tuple[Any, int, float]]], None] | None = None
        """Told each micro-batch answered on the loop: the stacked inputs, the whole prediction and
        (context, rows, seconds waited) per request, in order. Each context's `grouped` count goes
        up, so that the data plane does not report those requests again one by one."""

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self.settings.batching and self._worker is None:
            # Kept: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue(maxsize=self.settings.max_queue)
            self._worker = asyncio.create_task(self._work(), name=f"runner-{self.predictor.name}")

    async def stop(self) -> None:
        """Finish queued work, then stop the worker and unload the model."""
        while True:
            while self._pending:
                await asyncio.sleep(0)  # the loop batch in flight is answered within a turn
            if self._queue is not None:
                await self._queue.join()
            # A request handed this runner just before a swap may be a task that has not run its
            # first step yet (the HTTP fast path starts the unusual cases that way): one more turn
            # lets it queue its work. `join` alone is not enough: a job queued between the last
            # `task_done` and the wake-up of `join` is let through, and the worker may already hold
            # it; `in_flight` counts every request of the thread path until its answer is read.
            await asyncio.sleep(0 if self._queue is not None or not self.in_flight else _STOP_POLL_S)
            if not self._pending and not self.in_flight:
                break
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await asyncio.to_thread(self._executor.shutdown, True)  # never stall the event loop
        self.predictor.close()

    def infer(self, batch: Batch) -> Awaitable[Prediction]:
        """Predict on a validated batch, within the configured timeout (or from the cache), unless
        the circuit is open. Returns what to await: for the usual request (circuit closed, no
        cache, a fast model, room in the loop batch) its micro-batch's future itself, whose
        failures the batch counts in the circuit; else a coroutine."""
        if (
            not self.circuit.state
            and self.cache is None
            and self._queue is not None
            and len(self._pending) < self.settings.max_queue
            and self._fast(rows := len(batch))
        ):
            return self._join_loop_batch(batch, rows, counted=True)
        return self._guarded_infer(batch)

    async def _guarded_infer(self, batch: Batch) -> Prediction:
        if not self.circuit.state:
            try:
                found = await (self._infer(batch) if self.cache is None else self._cached_infer(batch))
            except (PredictionFailed, PredictionTimeout):
                self.circuit.failure()
                raise
            if self.circuit.failures:
                self.circuit.success()
            return found
        probe = self.circuit.allow()
        try:
            found = await self._cached_infer(batch)
        except (PredictionFailed, PredictionTimeout):
            self.circuit.failure(probe)
            raise
        except BaseException:
            if probe:
                self.circuit.release_probe()
            raise
        self.circuit.success(probe)
        return found

    async def _cached_infer(self, batch: Batch) -> Prediction:
        if self.cache is not None:
            key = self.cache.key(batch)
            if key is not None:
                found = self.cache.get(key)
                if found is None:
                    found = await self._infer(batch)
                    self.cache.put(key, found)
                return found
        return await self._infer(batch)

    async def _infer(self, batch: Batch) -> Prediction:
        rows = _rows(batch)
        if self._fast(rows):
            if self._queue is None:
                return self._predict(batch)
            return await self._join_loop_batch(batch, rows)
        self.in_flight += 1
        try:
            if self._queue is None:
                work = asyncio.get_running_loop().run_in_executor(self._executor, self._predict, batch)
                return await asyncio.wait_for(work, self.settings.timeout_s)
            future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
            try:
                job = _Job(batch, rows, future)
                self._queue.put_nowait(job)
            except asyncio.QueueFull:
                raise Overloaded(
                    f"model {self.predictor.name} has {self.settings.max_queue} requests waiting",
                    hint="Retry after a moment",
                ) from None
            return await asyncio.wait_for(future, self.settings.timeout_s)
        except TimeoutError:
            raise PredictionTimeout(
                f"the prediction took longer than {self.settings.timeout_s:g} s", hint="Retry with fewer rows"
            ) from None
        finally:
            self.in_flight -= 1

    def _join_loop_batch(self, batch: Batch, rows: int, *, counted: bool = False) -> asyncio.Future[Prediction]:
        """Fast models: requests that arrive in the same turn of the event loop are stacked and
        predicted at the start of the next turn, on the loop itself (no thread, no timer: the
        answer comes within one turn). Returns the future to await (a plain function: one
        coroutine less per request)."""
        if len(self._pending) >= self.settings.max_queue:
            raise Overloaded(
                f"model {self.predictor.name} has {self.settings.max_queue} requests waiting",
                hint="Retry after a moment",
            )
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        job = _Job(batch, rows, future, ctx=CURRENT.get() if self.on_batch is not None else None, counted=counted)
        self._pending.append(job)
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        limit = self.settings.max_batch_size
        start = 0
        while start < len(pending):
            chunk, rows = [pending[start]], pending[start].rows
            start += 1
            while start < len(pending) and rows + pending[start].rows <= limit:
                rows += pending[start].rows
                chunk.append(pending[start])
                start += 1
            self._last_batch_jobs = len(chunk)
            _settle(chunk, self._predict, self._report if self.on_batch is not None else None, self.circuit)

    def _report(self, stacked: Batch, whole: Prediction, jobs: list[_Job]) -> None:
        """Hand a micro-batch answered on the loop to `on_batch`, when every request in it has a
        monitoring context and got its answer (else the data plane reports them one by one)."""
        report = self.on_batch
        if report is None or any(job.ctx is None or job.future.cancelled() for job in jobs):
            return
        now = time.perf_counter()
        for job in jobs:
            job.ctx.grouped += 1
        report(stacked, whole, [(job.ctx, job.rows, now - job.enqueued) for job in jobs])

    def _fast(self, rows: int) -> bool:
        """A model whose calls take less than `inline_below_ms` runs on the event loop: a thread
        hand-off would cost more than the prediction. Requests with more rows than a batch holds
        go to the thread, so one big request never stalls the others."""
        return self._predict_seconds < self._inline_below_s and rows <= self.settings.max_batch_size

    def _predict(self, batch: Batch) -> Prediction:
        """Predict, keeping a moving average of how long one call takes."""
        started = time.perf_counter()
        try:
            return self.predictor.predict_batch(batch)
        finally:
            elapsed = time.perf_counter() - started
            # One slow call (a preempted thread, a collection) must not send a fast model to
            # the thread for the next dozens of calls: each call weighs at most `_CLIP` times
            # the threshold. A model that is slow every time still ends up well above it.
            measured = min(elapsed, self._clip_seconds)
            if self._predict_seconds == float("inf"):
                self._predict_seconds = measured
            else:
                self._predict_seconds += _SMOOTHING * (measured - self._predict_seconds)
            if self.on_call is not None:
                self.on_call(len(batch), elapsed)

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._carry is not None:
                jobs, self._carry = [self._carry], None
            else:
                jobs = [await self._queue.get()]
            rows = jobs[0].rows
            # Wait for company only under load: a lone request at low traffic never waits.
            wait_ms = self.settings.max_latency_ms if self._last_batch_jobs > 1 else 0.0
            deadline = time.perf_counter() + wait_ms / 1000
            while rows < self.settings.max_batch_size:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if rows + job.rows > self.settings.max_batch_size:
                    self._carry = job  # too big to join: it opens the next batch
                    break
                jobs.append(job)
                rows += job.rows
            self._last_batch_jobs = len(jobs)
            taken = len(jobs)  # a carried job was taken from the queue but not yet marked done
            live = [j for j in jobs if not j.future.done()]  # requests that timed out are dropped
            try:
                if live:
                    await self._run(loop, live)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        if self._fast(sum(j.rows for j in jobs)):
            _settle(jobs, self._predict)
            return
        stacked = jobs[0].batch if len(jobs) == 1 else _stack([j.batch for j in jobs])
        try:
            whole = await loop.run_in_executor(self._executor, self._predict, stacked)
        except InvalidInput as exc:
            if len(jobs) == 1:
                _fail(jobs, exc)
                return
            for job in jobs:  # one request's rows spoiled the batch: answer each request alone
                await self._run(loop, [job])
            return
        except Exception as exc:
            _fail(jobs, exc)
            return
        _deliver(jobs, whole)


def _settle(
    jobs: list[_Job],
    predict: Callable[[Batch], Prediction],
    report: Callable[[Batch, Prediction, list[_Job]], None] | None = None,
    circuit: CircuitBreaker | None = None,
) -> None:
    """Predict the jobs as one batch, now, and answer each its own rows; then `report` the batch.
    The outcome of `counted` jobs goes into `circuit`, as `Runner.infer` would count it."""
    live = [j for j in jobs if not j.future.done()]  # callers that gave up are skipped
    if not live:
        return
    try:
        stacked = live[0].batch if len(live) == 1 else _stack([j.batch for j in live])
        whole = predict(stacked)
    except InvalidInput as exc:
        if len(live) == 1:
            _fail(live, exc)
            return
        for job in live:  # one request's rows spoiled the batch: answer each request alone
            _settle([job], predict, report, circuit)
        return
    except Exception as exc:
        _fail(live, exc)
        if circuit is not None and isinstance(exc, PredictionFailed | PredictionTimeout):
            for job in live:
                if job.counted:
                    circuit.failure()
        return
    _deliver(live, whole)
    if circuit is not None and circuit.failures and any(job.counted for job in live):
        circuit.success()
    if report is not None:
        report(stacked, whole, live)


def _deliver(jobs: list[_Job], whole: Prediction) -> None:
    if len(jobs) == 1:
        if not jobs[0].future.done():
            jobs[0].future.set_result(whole)
        return
    start = 0
    for job in jobs:
        if not job.future.done():
            job.future.set_result(whole.take(start, start + job.rows))
        start += job.rows


def _fail(jobs: list[_Job], exc: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)


def _rows(batch: Batch) -> int:
    return len(batch)


def _stack(batches: list[Any]) -> Any:
    if isinstance(batches[0], np.ndarray):
        return np.concatenate(batches)
    import pandas as pd

    return pd.concat(batches, ignore_index=True)
