"""The prediction log under real faults: another process holding the SQLite write lock, a full
database (SQLite's own `max_page_count`), an unreachable database, overload, and several writers."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, event

from servekit.monitoring.predlog import PredictionLog
from servekit.prediction import Prediction

FEATURES = ["a", "b", "c", "d"]
OUTPUTS = Prediction(np.array(["x"]), np.array([[0.25, 0.75]]), ["x", "y"])
ROW = np.array([[5.1, 3.5, 1.4, 0.2]])

# Holds SQLite's write lock (BEGIN EXCLUSIVE) until its stdin is closed.
_HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
"""

# Writes `count` records through its own PredictionLog, then prints its counters.
_WRITER = """
import sys
import numpy as np
from servekit.monitoring.predlog import PredictionLog
from servekit.prediction import Prediction
log = PredictionLog(sys.argv[1], batch_size=25, flush_interval_s=0.02).start()
for i in range(int(sys.argv[2])):
    log.record(model="iris", version=1, route="/p", request_id=f"{sys.argv[3]}-{i}", latency_ms=1.0,
               feature_names=["a"], inputs=np.array([[float(i)]]), outputs=Prediction(np.array([1.0])))
log.close()
print(log.written, log.lost)
"""


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(10) == 0


def wait_until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def record(log: PredictionLog, inputs: np.ndarray = ROW, request_id: str = "r") -> float:
    """Record one prediction; the seconds the call took."""
    started = time.perf_counter()
    log.record(model="iris", version=1, route="/p", request_id=request_id, latency_ms=1.0, feature_names=FEATURES,
               inputs=inputs, outputs=OUTPUTS)  # fmt: skip
    return time.perf_counter() - started


def stored(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT coalesce(sum(records), 0) FROM prediction_log_blocks").fetchone()[0]


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "servekit.predlog" and r.levelno == logging.WARNING]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A registry.db that already holds the table and one logged record."""
    path = tmp_path / "registry.db"
    log = PredictionLog(f"sqlite:///{path}")
    record(log)
    log.close()
    assert stored(path) == 1
    return path


def test_a_lock_held_by_another_process_delays_writes_and_loses_nothing(database: Path) -> None:
    log = PredictionLog(f"sqlite:///{database}", flush_interval_s=0.05).start()
    with write_lock(database):
        durations = []
        for i in range(150):
            durations.append(record(log, request_id=f"r{i}"))
            time.sleep(0.002)  # spread over several flush intervals, each one failing to write
        time.sleep(0.3)
        assert (log.written, log.pending, log.lost) == (0, 150, 0)
        assert max(durations) < 0.05, max(durations)  # never waits for the lock
        assert stored(database) == 1
    wait_until(lambda: log.written == 150)
    log.close()
    assert (log.written, log.lost, log.pending) == (150, 0, 0)
    assert stored(database) == 151


def test_close_while_locked_gives_up_at_its_timeout_and_counts_the_rest(database: Path) -> None:
    reports: list[tuple[int, str]] = []
    log = PredictionLog(f"sqlite:///{database}", flush_interval_s=0.05, on_lost=lambda n, r: reports.append((n, r)))
    log.start()
    with write_lock(database):
        for i in range(40):
            record(log, request_id=f"r{i}")
        started = time.monotonic()
        log.close(timeout=0.5)
        assert time.monotonic() - started < 2.5
    assert (log.written, log.lost, log.pending) == (0, 40, 0)
    assert sum(n for n, _ in reports) == 40
    assert stored(database) == 1


def test_a_full_database_counts_losses_reports_once_and_recovers(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servekit.predlog")
    with sqlite3.connect(database) as connection:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]

    def full(dbapi_connection: Any, _record: Any) -> None:
        # SQLite answers SQLITE_FULL once the file would grow past this many pages.
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    reports: list[tuple[int, str]] = []
    big = np.random.default_rng(0).random((200, 4))  # several KB of JSON: needs new pages
    event.listen(Engine, "connect", full)
    try:
        log = PredictionLog(
            f"sqlite:///{database}", flush_interval_s=0.05, retry_s=0.3, on_lost=lambda n, r: reports.append((n, r))
        ).start()
        durations = [record(log, big, f"r{i}") for i in range(20)]
        wait_until(lambda: log.lost == 20)
    finally:
        event.remove(Engine, "connect", full)
    assert max(durations) < 0.05
    assert log.written == 0 and sum(n for n, _ in reports) == 20
    assert all("full" in reason for _, reason in reports), reports
    assert len(warnings(caplog)) == 1 and "full" in warnings(caplog)[0].getMessage()
    # Space again (new connections have no limit): writing resumes and the incident ends.
    record(log, big, "after")
    wait_until(lambda: log.written == 1)
    log.close()
    assert (log.written, log.lost) == (1, 20) and stored(database) == 2
    assert any("writing again" in r.getMessage() and "20" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("where", ["under a file", "a directory"])
def test_an_unreachable_database_never_reaches_the_caller(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="servekit.predlog")
    blocker = tmp_path / "blocker"
    if where == "under a file":
        blocker.write_text("a file, not a folder")
        url = f"sqlite:///{blocker / 'logs' / 'registry.db'}"
    else:
        blocker.mkdir()
        url = f"sqlite:///{blocker}"
    reports: list[tuple[int, str]] = []
    log = PredictionLog(url, flush_interval_s=0.05, retry_s=0.2, on_lost=lambda n, r: reports.append((n, r)))
    log.start()
    durations = [record(log, request_id=f"r{i}") for i in range(30)]
    wait_until(lambda: log.lost == 30)
    log.close(timeout=1)
    assert max(durations) < 0.05
    assert (log.written, log.lost, log.pending) == (0, 30, 0)
    assert sum(n for n, _ in reports) == 30 and all("cannot write" in r for _, r in reports)
    assert len(warnings(caplog)) == 1
    assert not any("writing again" in r.getMessage() for r in caplog.records)


def test_overload_loses_exactly_the_excess(database: Path) -> None:
    reports: list[tuple[int, str]] = []
    log = PredictionLog(
        f"sqlite:///{database}", max_pending=50, flush_interval_s=0.05, on_lost=lambda n, r: reports.append((n, r))
    ).start()
    with write_lock(database):
        for i in range(500):
            record(log, request_id=f"r{i}")
        assert (log.lost, log.pending) == (450, 50)
        wait_until(lambda: sum(n for n, _ in reports) == 450)
        assert all("max_pending=50" in r for _, r in reports)
    wait_until(lambda: log.written == 50)
    log.close()
    assert (log.written, log.lost) == (50, 450) and stored(database) == 51


def test_several_processes_write_one_log(database: Path) -> None:
    url = f"sqlite:///{database}"
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, url, "300", f"p{n}"], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    results = [w.communicate(timeout=60)[0].split() for w in writers]
    assert results == [["300", "0"]] * 3
    assert stored(database) == 1 + 900
