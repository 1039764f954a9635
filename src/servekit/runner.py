"""`Runner`: runs one loaded model version's predictions off the event loop.

Adaptive micro-batching: requests that arrive while the model is busy wait in a bounded queue
and are stacked into one `predict` call when it frees up (under load, optionally waiting up to
`max_latency_ms` for more company). At low load a request runs alone with no added wait; under load
the batch grows by itself. A full queue answers `Overloaded` (503 + Retry-After) at once and a
request that takes too long `PredictionTimeout` (504).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servekit.cache import PredictionCache
from servekit.errors import Overloaded, PredictionTimeout
from servekit.prediction import Prediction
from servekit.predictor import Predictor
from servekit.settings import RunnerSettings
from servekit.signature import Batch

__all__ = ["Runner"]

logger = logging.getLogger("servekit.runner")

_SMOOTHING = 0.1


@dataclass
class _Job:
    batch: Batch
    rows: int
    future: asyncio.Future[Prediction]
    enqueued: float = field(default_factory=time.perf_counter)


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
        self.cache = PredictionCache(self.settings.cache_size) if self.settings.cache_size else None
        self._predict_seconds = float("inf")  # unknown until measured: the first calls use the thread

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self.settings.batching and self._worker is None:
            self._queue = asyncio.Queue(maxsize=self.settings.max_queue)
            self._worker = asyncio.create_task(self._work(), name=f"runner-{self.predictor.name}")

    async def stop(self) -> None:
        """Finish queued work, then stop the worker and unload the model."""
        if self._queue is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await asyncio.to_thread(self._executor.shutdown, True)  # never stall the event loop
        self.predictor.close()

    async def infer(self, batch: Batch) -> Prediction:
        """Predict on a validated batch, within the configured timeout (or from the cache)."""
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
        if self._queue is None and self._fast(_rows(batch)):
            return self._predict(batch)
        self.in_flight += 1
        try:
            if self._queue is None:
                work = asyncio.get_running_loop().run_in_executor(self._executor, self._predict, batch)
                return await asyncio.wait_for(work, self.settings.timeout_s)
            future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
            try:
                job = _Job(batch, _rows(batch), future)
                self._queue.put_nowait(job)
            except asyncio.QueueFull:
                raise Overloaded(
                    f"model {self.predictor.name} has {self.settings.max_queue} requests waiting",
                    hint="Retry after a moment",
                ) from None
            if self._fast(job.rows):
                return await future  # answered within this loop turn or the next: no timer needed
            return await asyncio.wait_for(future, self.settings.timeout_s)
        except TimeoutError:
            raise PredictionTimeout(
                f"the prediction took longer than {self.settings.timeout_s:g} s", hint="Retry with fewer rows"
            ) from None
        finally:
            self.in_flight -= 1

    def _fast(self, rows: int) -> bool:
        """A model whose calls take less than `inline_below_ms` runs on the event loop: a thread
        hand-off would cost more than the prediction. Requests with more rows than a batch holds
        go to the thread, so one big request never stalls the others."""
        return rows <= self.settings.max_batch_size and self._predict_seconds < self.settings.inline_below_ms / 1000

    def _predict(self, batch: Batch) -> Prediction:
        """Predict, keeping a moving average of how long one call takes."""
        started = time.perf_counter()
        try:
            return self.predictor.predict_batch(batch)
        finally:
            elapsed = time.perf_counter() - started
            if self._predict_seconds == float("inf"):
                self._predict_seconds = elapsed
            else:
                self._predict_seconds += _SMOOTHING * (elapsed - self._predict_seconds)

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
        fast = self._fast(sum(j.rows for j in jobs))
        try:
            if len(jobs) == 1:
                batch = jobs[0].batch
                results = [
                    self._predict(batch) if fast else await loop.run_in_executor(self._executor, self._predict, batch)
                ]
            else:
                stacked = _stack([j.batch for j in jobs])
                if fast:
                    whole = self._predict(stacked)
                else:
                    whole = await loop.run_in_executor(self._executor, self._predict, stacked)
                results, start = [], 0
                for job in jobs:
                    results.append(whole.take(start, start + job.rows))
                    start += job.rows
        except Exception as exc:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)


def _rows(batch: Batch) -> int:
    return len(batch)


def _stack(batches: list[Any]) -> Any:
    if isinstance(batches[0], np.ndarray):
        return np.concatenate(batches)
    import pandas as pd

    return pd.concat(batches, ignore_index=True)
