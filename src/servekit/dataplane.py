"""`DataPlane`: the models a server serves, their readiness, and `infer`.

Everything left of it knows HTTP, nothing right of it does. Models named by an alias
(`iris@production`) are watched: when the alias moves, the new version is loaded beside the
old one, swapped in atomically, and the old one drained and unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from servekit.circuit import OPEN
from servekit.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    ServekitError,
    VersionNotFound,
)
from servekit.monitoring.context import CURRENT
from servekit.prediction import Prediction
from servekit.predictor import Predictor
from servekit.runner import Runner
from servekit.settings import Settings
from servekit.sources import ModelSource, parse_source

__all__ = ["DataPlane", "Pending", "ServedModel"]

logger = logging.getLogger("servekit.dataplane")


@dataclass
class ServedModel:
    """One configured model: where it comes from and the runner currently answering for it."""

    source: ModelSource
    runner: Runner | None = None
    state: str = "loading"
    """loading | ready | failed"""
    error: str | None = None
    """Why the last load or reload failed (shown in metadata, never a traceback)."""
    loaded_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    failed_version: int | None = None
    """A version the alias points at that failed to load; not retried until the alias moves."""

    @property
    def name(self) -> str:
        return self.runner.predictor.name if self.runner else self.source.name

    @property
    def status(self) -> str:
        """`state`, or `unavailable` while the served version's circuit is open."""
        if self.state == "ready" and self.runner is not None and self.runner.circuit.state == OPEN:
            return "unavailable"
        return self.state

    @property
    def predictor(self) -> Predictor:
        if self.runner is None:
            raise ModelNotReady(f"model {self.source.name} is {self.state}", hint=self.error)
        return self.runner.predictor


class Pending(NamedTuple):
    """A request handed to its runner by `DataPlane.submit`, not yet answered."""

    runner: Runner
    predictor: Predictor
    batch: Any
    answer: Awaitable[Prediction]
    ctx: Any
    grouped: int
    started: float


class DataPlane:
    """Loads the configured models and routes predictions to their runners."""

    def __init__(self, settings: Settings, registry: Any | None = None, *, monitor: Any | None = None) -> None:
        self.settings = settings
        self._registry = registry
        self.monitor = monitor
        """A `servekit.monitoring.Monitor` told about every model loaded and prediction made."""
        self.models: dict[str, ServedModel] = {}
        for text in settings.models:
            source = parse_source(text)
            if source.name in self.models:
                raise InvalidInput(f"two models are named {source.name!r}; serve each name once")
            self.models[source.name] = ServedModel(source)
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from servekit.registry import Registry

            settings = self.settings
            self._registry = Registry(settings.home, database_url=settings.database_url, store_url=settings.store_url)
        return self._registry

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every model in the background; watch alias references for new versions."""
        self._tasks.append(asyncio.create_task(self._load_all(), name="servekit-load"))
        if any(m.source.alias for m in self.models.values()):
            self._tasks.append(asyncio.create_task(self._watch(), name="servekit-watch"))

    async def load_all(self) -> None:
        """Load every model now (used by tests and the CLI's preflight)."""
        await self._load_all()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for model in self.models.values():
            if model.runner is not None:
                await model.runner.stop()
                if self.monitor is not None:
                    self.monitor.unwatch(model.runner)
                model.runner = None

    @property
    def ready(self) -> bool:
        """Every model is loaded and none has its circuit open."""
        return bool(self.models) and all(m.status == "ready" for m in self.models.values())

    # -- lookup -------------------------------------------------------------------------------
    def model(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            served = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFound(f"no model named {name!r} is served here", hint=f"Served models: {served}") from None

    @property
    def default_name(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        if not self.models:
            raise ModelNotFound("this server serves no model")
        return next(iter(self.models))

    def runner(self, name: str, version: str | int | None = None) -> Runner:
        """The runner for a model, checking that `version` (number or alias) is the one served."""
        model = self.model(name)
        if model.runner is None:
            if model.state == "failed":
                raise ModelNotReady(
                    f"model {name!r} failed to load",
                    hint=f"The reason is at GET /v1/models/{name} and in the server log",
                )
            raise ModelNotReady(f"model {name!r} is still loading", hint="Retry when /health/ready answers 200")
        if version is not None and str(version) not in self._names_of(model):
            raise VersionNotFound(
                f"model {name!r} has no version or alias {str(version)!r} served here",
                hint=f"Served: {', '.join(sorted(self._names_of(model)))}",
            )
        ctx = CURRENT.get()
        if ctx is not None:  # the request's model and version, for its metrics and access log
            ctx.model, ctx.version = model.runner.labels
        return model.runner

    @staticmethod
    def _names_of(model: ServedModel) -> set[str]:
        predictor = model.predictor
        names = {"latest"}
        if predictor.version is not None:
            names.add(str(predictor.version))
        if model.source.alias:
            names.add(model.source.alias)
        return names

    # -- inference ----------------------------------------------------------------------------
    async def infer(self, name: str, version: str | int | None, payload: Any) -> tuple[Predictor, Prediction]:
        """Validate `payload` against the model's signature and predict."""
        pending = self.submit(name, version, payload)
        return pending.predictor, self.complete(pending, await pending.answer)

    def submit(self, name: str, version: str | int | None, payload: Any) -> Pending:
        """`infer` without waiting: validate `payload` and hand it to the model's runner. Await
        `answer` (a future, or a coroutine for the unusual cases), then pass its result to
        `complete`. The request's monitoring context is read now, from `CURRENT`."""
        runner = self.runner(name, version)
        return self.submit_batch(runner, runner.predictor.batch(payload))

    def complete(self, pending: Pending, prediction: Prediction) -> Prediction:
        """Account for a submitted request's answer (rows, monitoring); the answer itself."""
        self._after(pending.runner, pending.batch, prediction, pending.ctx, pending.grouped, pending.started)
        return prediction

    async def infer_batch(self, runner: Runner, batch: Any) -> Prediction:
        """Predict on a validated batch."""
        pending = self.submit_batch(runner, batch)
        return self.complete(pending, await pending.answer)

    def submit_batch(self, runner: Runner, batch: Any) -> Pending:
        """`infer_batch` without waiting (see `submit`)."""
        ctx, grouped, started = self._before(runner, batch)
        return Pending(runner, runner.predictor, batch, runner.infer(batch), ctx, grouped, started)

    def _before(self, runner: Runner, batch: Any) -> tuple[Any, int, float]:
        """Check the row limit; (the request's monitoring context, its count of micro-batch
        reports so far, the start time)."""
        rows = len(batch)
        if rows > self.settings.max_rows:
            raise PayloadTooLarge(
                f"the request has {rows} rows; this server accepts at most {self.settings.max_rows}",
                hint="Split it into smaller requests or use `servekit score` for files",
            )
        if self.monitor is None:
            return None, 0, 0.0
        ctx = CURRENT.get()
        return ctx, (ctx.grouped if ctx is not None else 0), time.perf_counter()

    def _after(
        self, runner: Runner, batch: Any, prediction: Prediction, ctx: Any, grouped: int, started: float
    ) -> None:
        """Count the rows in the request's context and tell the monitor, unless the runner
        already reported the request with its micro-batch."""
        monitor = self.monitor
        if monitor is None:
            return
        if ctx is not None:
            ctx.rows += len(batch)
            if ctx.grouped != grouped:
                return
        monitor.predicted(runner, batch, prediction, time.perf_counter() - started, ctx)

    # -- loading ------------------------------------------------------------------------------
    async def _load_all(self) -> None:
        for model in self.models.values():
            try:
                runner = await self._open(model.source)
            except ServekitError as exc:
                model.state, model.error = "failed", exc.detail
                logger.error("model %s failed to load: %s", model.source.text, exc.detail)
                continue
            except Exception as exc:
                model.state, model.error = "failed", f"{type(exc).__name__}: {exc}"
                logger.exception("model %s failed to load", model.source.text)
                continue
            model.runner, model.state, model.error, model.loaded_at = runner, "ready", None, time.time()
            logger.info(
                "model %s version %s ready (%s)",
                runner.predictor.name,
                runner.predictor.version,
                runner.predictor.runtime.format,
            )
        # What is loaded now lives as long as the server: keep it out of the collector's full
        # passes, which would otherwise walk every model object and stall requests.
        gc.collect()
        gc.freeze()

    async def _open(self, source: ModelSource) -> Runner:
        started = time.perf_counter()
        predictor = await asyncio.to_thread(source.load, self.settings, lambda: self.registry)
        runner = Runner(predictor, self.settings.runner)
        await runner.start()
        if self.monitor is not None:
            self.monitor.model_loaded(predictor.name, predictor.version, time.perf_counter() - started)
            self.monitor.watch(runner)
        return runner

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            for model in list(self.models.values()):
                if model.source.alias and model.runner is not None:
                    await self._maybe_reload(model)

    async def _maybe_reload(self, model: ServedModel) -> None:
        try:
            target = await asyncio.to_thread(self.registry.resolve, model.source.text)
        except ServekitError as exc:
            model.error = exc.detail
            return
        current = model.predictor.version
        if target.version == current:
            model.error = model.failed_version = None  # e.g. rolled back after a failed promote
            return
        if target.version == model.failed_version:
            return  # versions are immutable: loading it again would fail again, every interval
        logger.info("model %s: %s moved to version %s; loading it", model.name, model.source.alias, target.version)
        try:
            runner = await self._open(model.source.pinned(target.version))
        except Exception as exc:
            model.error, model.failed_version = f"version {target.version} failed to load: {exc}", target.version
            logger.error("model %s: %s; version %s keeps serving", model.name, model.error, current)
            return
        old, model.runner = model.runner, runner  # atomic switch: new requests go to the new runner
        model.error, model.failed_version, model.loaded_at = None, None, time.time()
        model.history.append({"from": current, "to": target.version, "at": time.time()})
        if old is not None:
            await old.stop()  # drains what the old version already accepted
            if self.monitor is not None:
                self.monitor.unwatch(old)
        logger.info("model %s now served by version %s", model.name, target.version)
