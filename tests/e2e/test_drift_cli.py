"""`servekit drift` as users run it: a real packed and pushed model, real files, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import IRIS_FEATURES, SERVEKIT, iris_model, one_line_error


def run(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "SERVEKIT_HOME": str(home), "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture(scope="module")
def iris_frame() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).data
    frame.columns = IRIS_FEATURES
    return frame


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, iris_frame: pd.DataFrame) -> tuple[Path, Path]:
    """A bundle packed with the iris data as its sample, pushed as iris:1, and one packed without a
    sample; returns (cwd, home).

    Shared by the tests of this module (packing is the slow part); each test that writes files
    works in its own folder."""
    from servekit.packing import pack
    from servekit.registry import Registry

    cwd = tmp_path_factory.mktemp("drift-cli")
    home = cwd / "home"
    model, _ = iris_model(cwd)
    bundle = pack(model, name="iris", output=cwd / "bundle", sample=iris_frame, trust=True, optimize=False)
    with Registry(home) as registry:
        registry.push(bundle)
    bare = pack(model, name="bare", output=cwd / "bare", trust=True, optimize=False)  # packed without a sample
    assert bare.manifest.profile is None
    rng = np.random.default_rng(0)
    resampled = iris_frame.iloc[rng.integers(0, len(iris_frame), size=150)]
    resampled.to_csv(cwd / "resampled.csv", index=False)
    shifted = resampled.assign(petal_length=resampled["petal_length"] + 1.5)
    shifted.to_parquet(cwd / "shifted.parquet")
    return cwd, home


def test_shifted_inputs_exit_1_and_write_the_report(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, home = workspace
    current = str(cwd / "shifted.parquet")
    result = run("drift", "iris@latest", "--current", current, "-o", "out/report.html", home=home, cwd=tmp_path)
    assert "cannot write out/report.html" in one_line_error(result)  # no such folder

    result = run("drift", "iris:1", "--current", current, "-o", "report.html", home=home, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "drift in 1 of 4 assessed features (150 rows) → report.html" in result.stdout
    assert "petal_length" in result.stdout
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "Drift in 1 of 4 assessed features: petal_length" in html
    assert html.count("<svg") == 4


def test_resampled_inputs_exit_0(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, home = workspace
    result = run("drift", "iris", "--current", str(cwd / "resampled.csv"), home=home, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no drift in 4 assessed features (150 rows) → drift-iris.html" in result.stdout
    assert "No drift in 4 assessed features" in (tmp_path / "drift-iris.html").read_text(encoding="utf-8")


def test_a_bundle_folder_and_json_output(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, home = workspace
    result = run(
        "drift", str(cwd / "bundle"), "--current", str(cwd / "shifted.parquet"), "--json", home=home, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "iris" and report["drift"] is True and report["drifted"] == ["petal_length"]
    assert [f["feature"] for f in report["features"]] == IRIS_FEATURES
    assert report["features"][2]["ks_pvalue"] < 1e-6 and report["features"][2]["psi"] > 1
    assert list(tmp_path.iterdir()) == []  # --json alone writes no file


def test_inputs_from_the_prediction_log(workspace: tuple[Path, Path], iris_frame: pd.DataFrame) -> None:
    """`--since` reads the registry database's prediction log: old shifted rows fall outside 24h."""
    from servekit.monitoring.predlog import PredictionLog
    from servekit.prediction import Prediction

    cwd, home = workspace
    log = PredictionLog(f"sqlite:///{home / 'registry.db'}").start()
    rows = iris_frame.to_numpy()
    shifted = rows + np.array([0.0, 0.0, 3.0, 0.0])
    outputs = Prediction(np.array(["setosa"] * 50))
    three_days_ago = time.time() - 3 * 86400
    for i in range(3):
        log.record(**_logged(f"old{i}", shifted[i * 50 : (i + 1) * 50], outputs, three_days_ago))
        log.record(**_logged(f"new{i}", rows[i * 50 : (i + 1) * 50], outputs, time.time()))
    log.close()
    assert log.written == 6

    recent = run("drift", "iris", "--since", "24h", "--json", home=home, cwd=cwd)
    assert recent.returncode == 0, recent.stderr
    assert json.loads(recent.stdout)["rows"] == 150
    week = run("drift", "iris", "--since", "7d", "--json", home=home, cwd=cwd)
    assert week.returncode == 1, week.stderr
    assert json.loads(week.stdout)["rows"] == 300 and json.loads(week.stdout)["drifted"] == ["petal_length"]
    assert "--since takes a duration" in one_line_error(
        run("drift", "iris", "--since", "yesterday", home=home, cwd=cwd)
    )


def _logged(request_id: str, batch: np.ndarray, outputs: object, ts: float) -> dict:
    return {
        "model": "iris",
        "version": 1,
        "route": "/v1/models/iris/predict",
        "request_id": request_id,
        "latency_ms": 1.0,
        "feature_names": IRIS_FEATURES,
        "inputs": batch,
        "outputs": outputs,
        "ts": ts,
    }


def test_errors_are_one_line_with_exit_code_2(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, home = workspace
    assert "either --current FILE or --since" in one_line_error(run("drift", "iris", home=home, cwd=cwd))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    message = one_line_error(run("drift", "iris", "-c", str(tmp_path / "other.csv"), home=home, cwd=cwd))
    assert "other.csv has none of the model's feature columns (sepal_length" in message
    message = one_line_error(run("drift", "bare", "-c", "resampled.csv", home=home, cwd=cwd))
    assert "bare has no reference profile to compare with" in message and "--sample" in message
