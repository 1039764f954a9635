"""Faults around a running server: its model files vanish, a worker is killed, the registry database
is locked by another process, the prediction log's disk is full. Predictions keep being answered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve import _ready_everywhere, _workers, push_iris, servekit
from tests.support import ServerProcess, iris_bundle

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}


def test_the_loaded_version_keeps_serving_when_its_files_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    bundle = iris_bundle(tmp_path / "models")
    with ServerProcess(["serve", str(bundle), "--trust"]) as server:
        server.wait_ready()
        shutil.rmtree(tmp_path / "models")
        with server.client() as client:
            for _ in range(20):
                answer = client.post("/v1/models/iris/predict", json=ROW)
                assert answer.status_code == 200 and answer.json()["predictions"][0]["prediction"] == "setosa"
            assert client.get("/health/ready").status_code == 200


def test_a_killed_worker_is_replaced_and_the_server_is_ready_again(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    with ServerProcess(["serve", str(bundle), "--trust", "--workers", "2"]) as server:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while not (len(workers := _workers(server.process.pid)) == 2 and _ready_everywhere(server)):
            assert time.monotonic() < deadline, workers
            time.sleep(0.1)
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # the supervisor starts a new worker, which loads the model and gets ready
            now = _workers(server.process.pid)
            # Fresh connections may all land on the old worker: the new one must also say it loaded
            # (the log's third "ready" line: one per worker at start, one from the replacement).
            replaced = len(now) == 2 and victim not in now and _models_ready(server) >= 3
            if replaced and _ready_everywhere(server):
                break
            assert time.monotonic() < deadline, (now, server.log()[-3000:])
            time.sleep(0.2)
        for _ in range(10):
            with server.client() as client:
                answer = client.post("/v1/models/iris/predict", json=ROW)
                assert answer.status_code == 200, answer.text
        assert server.terminate() == 0


def _models_ready(server: ServerProcess) -> int:
    """How many times the server log says a worker loaded its model and is ready."""
    lines = (json.loads(line) for line in server.log().splitlines() if line.startswith("{"))
    return sum(1 for record in lines if " ready (" in record.get("message", ""))


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_registry_commands_wait_for_a_lock_held_by_another_process(tmp_path: Path, servekit_home: Path) -> None:
    push_iris(tmp_path, servekit_home, 5, 8)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(servekit_home / "registry.db"), "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        promoted = servekit("promote", "iris", "2", "--alias", "production")
        waited = time.monotonic() - started
    finally:
        holder.wait(30)
    assert promoted.returncode == 0, promoted.stderr
    assert waited >= 2, "the command waited for the lock instead of failing"
    listed = servekit("models", "iris", "--json")
    assert listed.returncode == 0 and '"production"' in listed.stdout


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs: a real file system that fills up."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {mounted.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def logged_rows(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as db:
        return db.execute("SELECT coalesce(sum(records), 0) FROM prediction_log_blocks").fetchone()[0]


def lost_rows(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "servekit_prediction_log_rows_total" and sample.labels == {"outcome": "lost"}:
                return sample.value
    return 0.0


def test_a_full_prediction_log_disk_never_fails_a_prediction_and_losses_are_counted(
    tmp_path: Path, full_disk: Path
) -> None:
    bundle = iris_bundle(tmp_path)
    env = {
        "SERVEKIT_PREDICTION_LOG__URL": f"sqlite:///{full_disk / 'log.db'}",
        "SERVEKIT_PREDICTION_LOG__RETRY_S": "1",
        "SERVEKIT_PREDICTION_LOG__FLUSH_INTERVAL_S": "0.2",
        "SERVEKIT_PREDICTION_LOG__BATCH_SIZE": "10",
    }
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as server:
        server.wait_ready()
        rows = [[5.1, 3.5, 1.4, 0.2]] * 50  # ~2 KB of JSON per logged request: the disk fills fast
        with server.client() as client:
            for _ in range(300):
                answer = client.post("/v1/models/iris/predict", json={"instances": rows})
                assert answer.status_code == 200
            deadline = time.monotonic() + 60
            while True:  # every request ends up either written or counted lost
                lost, written = lost_rows(client.get("/metrics").text), logged_rows(full_disk / "log.db")
                if lost + written == 300:
                    break
                assert time.monotonic() < deadline, (lost, written)
                time.sleep(0.3)
            assert client.get("/health/ready").status_code == 200
        assert server.terminate() == 0
        log = server.log()
    assert lost > 0 and written > 0
    assert "database or disk is full" in log or "disk" in log.lower()
