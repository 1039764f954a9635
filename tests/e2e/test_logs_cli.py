"""`servekit logs` as users run it, over a registry database filled through `PredictionLog`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servekit.monitoring.predlog import PredictionLog
from servekit.prediction import Prediction
from tests import support
from tests.support import IRIS_FEATURES, SERVEKIT

HEAD = ["ts", "request_id", "version", "route", "latency_ms", *IRIS_FEATURES, "prediction"]
CLASSES = ["setosa", "versicolor", "virginica"]


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, "logs", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The shared check, and nothing on stdout (where exports go)."""
    assert result.stdout == ""
    return support.one_line_error(result)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry home whose log holds 5 recent iris requests (8 rows) and 2 from three days ago."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=500).fit(data.data, np.asarray(data.target_names)[data.target])
    home = tmp_path_factory.mktemp("logs-home")
    log = PredictionLog(f"sqlite:///{home / 'registry.db'}")
    now = time.time()
    for i, (size, age) in enumerate([(1, 3 * 86400), (1, 3 * 86400), (1, 600), (2, 500), (1, 400), (3, 300), (1, 5)]):
        rows = data.data[i * 20 : i * 20 + size]
        outputs = Prediction(model.predict(rows), model.predict_proba(rows), model.classes_)
        log.record(model="iris", version=1 + i // 4, route="/v1/models/iris/predict", request_id=f"req-{i}",
                   latency_ms=1.0 + i, feature_names=IRIS_FEATURES, inputs=rows, outputs=outputs,
                   ts=now - age)  # fmt: skip
    log.close()
    assert log.written == 7
    return home


def test_csv_to_stdout_since_one_hour(home: Path) -> None:
    result = run("iris", "--since", "1h", home=home)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame.columns.tolist() == HEAD + [f"probability_{c}" for c in CLASSES]
    assert len(frame) == 8
    assert frame["request_id"].unique().tolist() == [f"req-{i}" for i in range(2, 7)]
    assert frame["version"].tolist() == [1, 1, 1, 2, 2, 2, 2, 2]
    assert np.allclose(frame[[f"probability_{c}" for c in CLASSES]].sum(axis=1), 1.0)
    assert set(frame["prediction"]) <= set(CLASSES)


def test_everything_as_jsonl(home: Path) -> None:
    result = run("iris", "--format", "jsonl", home=home)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 10 and rows[0]["request_id"] == "req-0"
    assert list(rows[0])[: len(HEAD)] == HEAD


def test_parquet_to_a_file(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "iris.parquet"
    result = run("iris", "--since", "7d", "-o", str(out), home=home)
    assert result.returncode == 0, result.stderr
    assert "wrote 10 rows" in result.stdout
    frame = pd.read_parquet(out)
    assert len(frame) == 10 and frame["latency_ms"].tolist()[:2] == [1.0, 2.0]
    assert str(frame["ts"].dt.tz) == "UTC"


def test_an_empty_window_says_so_and_succeeds(home: Path) -> None:
    result = run("iris", "--since", "2100-01-01", home=home)
    assert result.returncode == 0, result.stderr
    assert "no predictions" in result.stderr
    assert result.stdout.strip() == ",".join(HEAD + [f"probability_{c}" for c in CLASSES])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["iris", "--format", "parquet"], "parquet is a binary format"),
        (["iris", "--format", "xlsx"], "unknown format 'xlsx'"),
        (["iris", "--since", "yesterday"], "'yesterday' is neither a duration nor a date"),
        (["wine"], "no predictions of model 'wine' are logged. logged models: iris"),
    ],
)
def test_errors_are_one_line(home: Path, args: list[str], message: str) -> None:
    assert message in one_line_error(run(*args, home=home))


def test_a_home_without_a_log(tmp_path: Path) -> None:
    assert "no prediction log at" in one_line_error(run("iris", home=tmp_path / "empty"))
    assert not (tmp_path / "empty").exists()
