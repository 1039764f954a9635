"""`servekit score` as users run it: real processes, a real SIGKILL, a real Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from servekit.batch import score
from servekit.packing import pack
from tests.support import IRIS_FEATURES, SERVEKIT, iris_model

KILL_ROWS = 40_000
KILL_CHUNK = 200
KILL_AFTER = 10  # completed chunks, of 200


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, "score", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVEKIT_HOME": str(home), "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("score-cli")
    path, _ = iris_model(folder)
    return pack(path, output=folder / "iris.bundle", features=IRIS_FEATURES, trust=True, optimize=False).path


def iris_csv(path: Path, rows: int, bad: list[int]) -> Path:
    from sklearn.datasets import load_iris

    frame = pd.DataFrame(np.resize(load_iris().data, (rows, 4)), columns=IRIS_FEATURES)
    frame.insert(0, "id", range(rows))
    frame.loc[bad, "sepal_width"] = np.nan
    frame.to_csv(path, index=False)
    return path


def test_score_prints_a_summary_and_writes_the_output(tmp_path: Path, bundle: Path) -> None:
    source = iris_csv(tmp_path / "in.csv", 300, bad=[42])
    result = run(str(bundle), str(source), "-o", str(tmp_path / "out.parquet"), "--trust", home=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("scored 299 of 300 rows → ")
    assert lines[0].endswith("rows/s; iris, joblib, local engine)")
    assert lines[1] == f"1 row was not scored (1 problems) → {tmp_path / 'out.parquet.errors.csv'}"
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 299 and 42 not in out["id"].tolist()
    assert "Traceback" not in result.stderr


def test_json_summary_and_plain_progress_lines_off_a_terminal(tmp_path: Path, bundle: Path) -> None:
    source = iris_csv(tmp_path / "in.csv", 2000, bad=[])
    result = run(
        str(bundle), str(source), "-o", str(tmp_path / "out.jsonl"), "--trust", "--chunk-size", "100",
        "--progress-interval", "0", "--json", home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_scored"] == 2000 and summary["errors"] is None and summary["chunks"] >= 15
    progress = [line for line in result.stderr.splitlines() if line.startswith("scoring: ")]
    assert len(progress) == summary["chunks"]
    assert progress[-1].startswith("scoring: 2,000 rows, 100%, ") and "\x1b[" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.joblib", "in.csv", "-o", "out.csv"], "missing.joblib does not exist"),
        (["BUNDLE", "in.csv", "-o", "out.xlsx"], "unknown output format '.xlsx'"),
        (["BUNDLE", "in.csv", "-o", "out.csv", "--trust", "--fail-fast"], "row 3 of the input (in.csv), column"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, bundle: Path, args: list[str], message: str) -> None:
    iris_csv(tmp_path / "in.csv", 10, bad=[3])
    args = [str(bundle) if a == "BUNDLE" else str(tmp_path / a) if a.startswith(("in.", "out.")) else a for a in args]
    result = run(*args, home=tmp_path)
    assert result.returncode == 2, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_killed_mid_way_then_resumed_equals_an_uninterrupted_run(tmp_path: Path, bundle: Path) -> None:
    source = iris_csv(tmp_path / "in.csv", KILL_ROWS, bad=[10, KILL_ROWS // 2, KILL_ROWS - 1])
    whole = score(bundle, source, tmp_path / "whole.parquet", chunk_size=KILL_CHUNK, trust=True)
    output = tmp_path / "out.parquet"
    state = tmp_path / "out.parquet.partial" / "state.json"
    args = [str(bundle), str(source), "-o", str(output), "--trust", "--chunk-size", str(KILL_CHUNK), "-q"]
    process = subprocess.Popen([SERVEKIT, "score", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _pieces_done(state) < KILL_AFTER:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    done = _pieces_done(state)
    assert KILL_AFTER <= done < whole.chunks and not output.exists()
    result = run(*args, "--resume", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed_rows"] >= done * KILL_CHUNK * 0.9 and summary["rows_read"] == KILL_ROWS
    assert (summary["rows_scored"], summary["rows_failed"]) == (whole.rows_scored, whole.rows_failed)
    resumed, reference = pq.read_table(output), pq.read_table(tmp_path / "whole.parquet")
    assert resumed.num_rows == KILL_ROWS - 3 and resumed.equals(reference)  # row for row
    assert Path(summary["errors"]).read_text() == whole.errors.read_text()
    assert not (tmp_path / "out.parquet.partial").exists()


def _pieces_done(state: Path) -> int:
    try:
        return int(json.loads(state.read_text())["pieces_done"])
    except (OSError, ValueError, KeyError):
        return 0


def test_the_dask_engine_starts_a_loopback_cluster(tmp_path: Path, bundle: Path) -> None:
    pytest.importorskip("distributed")
    source = iris_csv(tmp_path / "in.csv", 500, bad=[7])
    result = run(
        str(bundle), str(source), "-o", str(tmp_path / "out.csv"), "--trust", "--engine", "dask", "--workers", "2",
        "--chunk-size", "100", "--json", home=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "dask" and summary["scheduler"].startswith("tcp://127.0.0.1:")
    local = score(bundle, source, tmp_path / "local.csv", chunk_size=100, trust=True)
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert summary["rows_failed"] == local.rows_failed == 1 and summary["chunks"] == local.chunks >= 4
