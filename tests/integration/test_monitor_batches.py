"""Micro-batches answered on the event loop are monitored as a whole: one record per predict call,
yet every request keeps its own line in the prediction log and its count in the metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from servekit.dataplane import DataPlane
from servekit.loading import load
from servekit.monitoring.context import CURRENT, RequestContext
from servekit.monitoring.monitor import Monitor
from servekit.monitoring.predlog import PredictionLog, read_log
from servekit.runner import Runner
from servekit.settings import RunnerSettings, Settings
from tests.support import IRIS_FEATURES


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from servekit.packing import pack

    folder = tmp_path_factory.mktemp("batches")
    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    joblib.dump(LogisticRegression(max_iter=500).fit(data.data, labels), folder / "iris.joblib")
    return pack(
        folder / "iris.joblib", name="iris", output=folder / "iris.bundle", features=IRIS_FEATURES, trust=True
    ).path


def predictions_counted(monitor: Monitor) -> dict[str, float]:
    assert monitor.metrics is not None
    found: dict[str, float] = {}
    for family in monitor.metrics.predictions.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[sample.labels["class"]] = found.get(sample.labels["class"], 0) + sample.value
    return found


def test_concurrent_requests_are_logged_one_by_one_from_their_micro_batch(bundle: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    X = load_iris().data
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    settings = Settings(access_log=False)
    answered: dict[str, tuple[list[list[float]], list[Any]]] = {}
    contexts: list[RequestContext] = []
    before: dict[str, float] = {}

    async def main() -> Monitor:
        monitor = Monitor(settings)
        before.update(predictions_counted(monitor))  # the metrics are the process's: count the change
        monitor.prediction_log = PredictionLog(url)
        await monitor.start()
        plane = DataPlane(settings)
        plane.monitor = monitor
        runner = Runner(load(bundle, trust=True), RunnerSettings(inline_below_ms=1000))
        runner._predict_seconds = 0.0  # measured fast: requests of one loop turn share a call
        await runner.start()
        monitor.watch(runner)

        async def request(i: int) -> None:
            rows = X[i : i + 1 + i % 3]
            ctx = RequestContext(f"r{i}", "/v1/models/{name}/predict")
            contexts.append(ctx)
            CURRENT.set(ctx)
            prediction = await plane.infer_batch(runner, rows)
            answered[f"r{i}"] = (rows.tolist(), prediction.outputs.tolist())

        await asyncio.gather(*(asyncio.create_task(request(i)) for i in range(40)))
        await runner.stop()
        await monitor.stop()
        return monitor

    monitor = asyncio.run(main())
    assert all(ctx.grouped == 1 for ctx in contexts)  # reported with their micro-batches
    assert all(ctx.rows == 1 + int(ctx.request_id[1:]) % 3 for ctx in contexts)
    logged = {r.request_id: r for r in read_log(url)}
    assert sorted(logged) == sorted(answered)
    for request_id, (rows, outputs) in answered.items():
        assert logged[request_id].inputs.tolist() == rows
        assert list(logged[request_id].outputs) == outputs
        assert logged[request_id].route == "/v1/models/{name}/predict"
        assert logged[request_id].probabilities.shape == (len(rows), 3)
    expected = dict(before)
    for _, outputs in answered.values():
        for label in outputs:
            expected[label] = expected.get(label, 0) + 1
    assert predictions_counted(monitor) == expected
