"""Drift in a running app: the live window at /v1/models/{name}/drift, gauges, and the log line."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servekit.settings import Settings
from tests.integration.test_metrics import scrape, total
from tests.support import IRIS_FEATURES, iris_model, running_app


@pytest.fixture(scope="module")
def iris_with_profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """An iris bundle packed with its training data as the reference sample (no ONNX variant)."""
    from sklearn.datasets import load_iris

    from servekit.packing import pack

    tmp = tmp_path_factory.mktemp("drift")
    path, _ = iris_model(tmp)
    X = load_iris().data
    sample = pd.DataFrame(X, columns=IRIS_FEATURES)
    bundle = pack(path, name="iris", output=tmp / "iris.bundle", sample=sample, trust=True, optimize=False).path
    return bundle, X


def settings_for(bundle: Path, **drift: float) -> Settings:
    options = {"window_size": 300, "min_rows": 60, "check_interval_s": 0.2, **drift}
    return Settings(models=[str(bundle)], trust=True, drift=options, prediction_log={"enabled": False})


def post_rows(client, rows: np.ndarray) -> None:
    for start in range(0, len(rows), 25):
        chunk = rows[start : start + 25].tolist()
        assert client.post("/v1/models/iris/predict", json={"instances": chunk}).status_code == 200


def test_live_inputs_like_the_training_data_do_not_drift_and_shifted_ones_do(iris_with_profile, caplog) -> None:
    bundle, X = iris_with_profile
    rng = np.random.default_rng(7)
    with running_app(settings_for(bundle)) as client:
        early = client.get("/v1/models/iris/drift").json()
        assert early["status"] == "ok" and early["window"]["rows"] == 0
        assert {f["state"] for f in early["features"]} == {"not_assessable"}  # too few rows yet

        post_rows(client, X[rng.integers(0, len(X), 300)])
        calm = client.get("/v1/models/iris/drift").json()
        assert calm["status"] == "ok", calm["drifted"]
        assert calm["window"]["rows"] == 300
        assert {f["feature"] for f in calm["features"]} == set(IRIS_FEATURES)

        shifted = X[rng.integers(0, len(X), 300)].copy()
        shifted[:, 2] += 2.5  # petal length: a mean shift
        with caplog.at_level(logging.WARNING, logger="servekit.drift"):
            post_rows(client, shifted)
            report = client.get("/v1/models/iris/drift").json()
            assert report["status"] == "drift"
            assert "petal_length" in report["drifted"]
            by_name = {f["feature"]: f for f in report["features"]}
            assert by_name["petal_length"]["ks_pvalue"] < 1e-6 and by_name["petal_length"]["psi"] > 0.2
            deadline = time.monotonic() + 5  # the periodic check publishes gauges and logs once
            while time.monotonic() < deadline:
                samples = scrape(client)
                if total(samples, "servekit_drift_detected", model="iris", feature="petal_length") == 1:
                    break
                time.sleep(0.1)
            assert total(samples, "servekit_drift_detected", model="iris", feature="petal_length") == 1
            assert total(samples, "servekit_drift_score", model="iris", feature="petal_length") > 0.2
        crossings = [r for r in caplog.records if "petal_length drifted" in r.getMessage()]
        assert len(crossings) >= 1


def test_a_bundle_without_profile_says_so(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    with running_app(settings_for(path)) as client:
        answer = client.get("/v1/models/iris/drift")
        assert answer.status_code == 200
        assert answer.json()["status"] == "no_reference"
        assert "--sample" in answer.json()["detail"]
        assert client.get("/v1/models/nope/drift").status_code == 404


def test_drift_settings_are_validated() -> None:
    with pytest.raises(Exception, match="min_rows"):
        Settings(drift={"window_size": 10, "min_rows": 50})
