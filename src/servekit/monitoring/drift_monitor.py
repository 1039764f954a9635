"""`DriftMonitor`: each served version's live inputs against its bundle's reference profile.

The monitor's drain hands it every predicted batch (`add`), which lands in the version's sliding
window (`DriftWindow`). Under heavy traffic only every k-th batch is kept, k chosen at each check so
that the window is refilled about twice per interval: the window then holds an even sample of the
recent inputs instead of the last few milliseconds of them, and costs next to nothing per request.
Every `check_interval_s` the windows holding at least `min_rows` rows are
assessed in a worker thread (the statistics never run on the event loop); the per-feature PSI and
verdicts go to Prometheus gauges, and a feature crossing its threshold, either way, is logged once.
`GET /v1/models/{name}/drift` assesses the current window on demand.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from servekit.aio import cancel
from servekit.monitoring.drift import DriftReport, DriftSettings, DriftWindow, assess
from servekit.monitoring.metrics import retire

if TYPE_CHECKING:
    from servekit.monitoring.metrics import Metrics
    from servekit.runner import Runner

__all__ = ["DriftMonitor"]

logger = logging.getLogger("servekit.drift")


@dataclass
class _Watched:
    """One served version: its reference profile, its window and what was last found."""

    name: str
    version: int | None
    profile: dict[str, Any] | None
    features: list[str]
    window: DriftWindow
    last: DriftReport | None = None
    drifting: set[str] = field(default_factory=set)
    offered: int = 0
    """Rows offered since the last check."""
    keep_every: int = 1
    skipped: int = 0


class DriftMonitor:
    """Sliding windows of live inputs per served version, assessed periodically and on demand."""

    def __init__(self, settings: DriftSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._watched: dict[int, _Watched] = {}
        self._task: asyncio.Task[None] | None = None

    # -- fed by the monitor's drain ------------------------------------------------------------
    def add(self, runner: Runner, batch: Any) -> None:
        watched = self._watched.get(id(runner))
        if watched is None:
            watched = self._watch(runner)
        if watched.profile is None:
            return
        watched.offered += len(batch)
        if watched.keep_every > 1:
            watched.skipped += 1
            if watched.skipped < watched.keep_every:
                return
            watched.skipped = 0
        watched.window.add(batch)

    def _watch(self, runner: Runner) -> _Watched:
        predictor = runner.predictor
        profile = predictor.manifest.profile or None
        window = DriftWindow(self.settings.window_size)
        watched = _Watched(predictor.name, predictor.version, profile, predictor.signature.names, window)
        self._watched[id(runner)] = watched
        return watched

    def forget(self, runner: Runner) -> None:
        """The version stopped serving: drop its window and its gauges."""
        watched = self._watched.pop(id(runner), None)
        if watched is not None and self.metrics is not None:
            version = _version(watched.version)
            for feature in watched.features:
                for gauge in (self.metrics.drift_score, self.metrics.drift_detected):
                    retire(gauge, watched.name, version, feature)

    # -- periodic checks -----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="servekit-drift")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.check_interval_s)
            for watched in list(self._watched.values()):
                watched.keep_every = max(1, watched.offered // (2 * self.settings.window_size))
                watched.offered = 0
                if watched.profile is None or watched.window.rows < self.settings.min_rows:
                    continue
                try:
                    await self._check(watched)
                except Exception:  # a failed check must not stop the next ones
                    logger.exception("drift check of model %s failed", watched.name)

    async def _check(self, watched: _Watched) -> DriftReport:
        report = await asyncio.to_thread(self._assess, watched)
        watched.last = report
        self._publish(watched, report)
        return report

    def _assess(self, watched: _Watched) -> DriftReport:
        window = watched.window
        current = window.columns(watched.features)  # numeric arrays: no pandas import, no copy per column
        if current is None:
            current = window.frame(watched.features)
        model, version = watched.name, watched.version
        return assess(watched.profile, current, self.settings, model=model, version=version, features=watched.features)

    def _publish(self, watched: _Watched, report: DriftReport) -> None:
        version = _version(watched.version)
        now_drifting = set(report.drifted)
        for feature in report.features:
            if self.metrics is not None and feature.state != "not_assessable":
                self.metrics.drift_score.labels(watched.name, version, feature.feature).set(feature.score)
                self.metrics.drift_detected.labels(watched.name, version, feature.feature).set(
                    1 if feature.state == "drift" else 0
                )
            if feature.feature in now_drifting and feature.feature not in watched.drifting:
                logger.warning(
                    "model %s version %s: feature %s drifted (PSI %.3f, p-value %s) over the last %d rows",
                    watched.name,
                    version or "-",
                    feature.feature,
                    feature.score,
                    _p(feature.pvalue),
                    report.rows,
                )
            elif feature.feature in watched.drifting and feature.feature not in now_drifting:
                shown = version or "-"
                logger.info("model %s version %s: feature %s no longer drifts", watched.name, shown, feature.feature)
        watched.drifting = now_drifting

    # -- on demand -----------------------------------------------------------------------------
    async def report(self, runner: Runner) -> dict[str, Any]:
        """The drift of `runner`'s version now, as `GET /v1/models/{name}/drift` answers it."""
        watched = self._watched.get(id(runner)) or self._watch(runner)
        if watched.profile is None:
            return {
                "model": watched.name,
                "version": watched.version,
                "status": "no_reference",
                "detail": "this version has no reference profile: pack it with --sample to compare live inputs",
                "window": {"rows": 0, "size": self.settings.window_size, "min_rows": self.settings.min_rows},
                "features": [],
            }
        report = await self._check(watched)
        data = report.to_dict()
        data["status"] = "drift" if report.drifted else "ok"
        data["window"] = {
            "rows": watched.window.rows,
            "size": self.settings.window_size,
            "min_rows": self.settings.min_rows,
            "seen": watched.window.seen,
        }
        return data


def _version(version: int | None) -> str:
    return "" if version is None else str(version)


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"
