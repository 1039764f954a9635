"""`servekit serve` as operators run it, against real processes: an alias moved under traffic,
a new version that cannot load, SIGTERM with requests in flight, several workers, a settings file."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from tests.support import SERVEKIT, ServerProcess, free_port, iris_bundle, iris_model

ROW = [5.1, 3.5, 1.4, 0.2]
RELOAD_ENV = {"SERVEKIT_RELOAD_INTERVAL_S": "0.5"}


def servekit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One `servekit` command in its own process (SERVEKIT_HOME comes from the conftest fixture)."""
    return subprocess.run(
        [SERVEKIT, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def push_iris(tmp: Path, home: Path, *trees: int) -> None:
    """Push one iris version per forest size into the registry at `home` (versions 1, 2, ...)."""
    from servekit.bundle import Bundle
    from servekit.registry import Registry

    with Registry(home) as registry:
        for number, n in enumerate(trees, start=1):
            folder = tmp / f"v{number}"
            folder.mkdir()
            registry.push(Bundle.read(iris_bundle(folder, trees=n)))


def promote(version: int) -> None:
    result = servekit("promote", "iris", str(version), "--alias", "production")
    assert result.returncode == 0, result.stderr


def detail(server: ServerProcess) -> dict[str, Any]:
    with server.client() as client:
        response = client.get("/v1/models/iris")
    assert response.status_code == 200, response.text
    return response.json()


class Traffic:
    """Threads posting one-row predictions in a loop; every answer or transport error is kept."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: list[list[tuple[float, int | str, int | None]]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _post(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/models/iris/predict", json={"features": ROW})
                    version = response.json()["version"] if response.status_code == 200 else None
                    self.answers[index].append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError as exc:
                    self.answers[index].append((time.monotonic(), type(exc).__name__, None))
                time.sleep(0.01)

    def wait_for(self, version: int, since: float, *, count: int = 5, timeout: float = 10) -> float:
        """Wait until every thread got `count` answers from `version` after `since`; the first one's time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            firsts = []
            for answers in self.answers:
                fresh = [t for t, _, v in list(answers) if t >= since and v == version]
                if len(fresh) < count:
                    break
                firsts.append(fresh[0])
            else:
                return min(firsts)
            time.sleep(0.05)
        raise AssertionError(f"not every thread got version {version} within {timeout} s: {self.summary()}")

    def failures(self) -> list[tuple[float, int | str, int | None]]:
        return [a for answers in self.answers for a in answers if a[1] != 200]

    def versions(self) -> list[list[int | None]]:
        """Per thread, the versions that answered in order, repeats collapsed."""
        return [[v for v, _ in itertools.groupby(v for _, _, v in answers)] for answers in self.answers]

    def summary(self) -> str:
        now = time.monotonic()
        quiet = [f"{now - answers[-1][0]:.1f}" if answers else "-" for answers in list(self.answers)]
        return (
            f"{sum(map(len, self.answers))} answers ({[len(a) for a in self.answers]} per thread, the last one "
            f"{quiet} s ago), versions {self.versions()}, failures {self.failures()[:5]}"
        )


def test_alias_moves_and_rolls_back_under_traffic_without_a_failed_request(tmp_path: Path, servekit_home: Path) -> None:
    push_iris(tmp_path, servekit_home, 5, 20)
    promote(1)
    with ServerProcess(["serve", "iris@production"], env=RELOAD_ENV) as server:
        server.wait_ready()
        with Traffic(server.url) as traffic:
            traffic.wait_for(1, since=0)
            promote(2)
            promoted = time.monotonic()
            switched = traffic.wait_for(2, since=promoted)
            assert switched - promoted < 5
            rollback = servekit("rollback", "iris", "--alias", "production")
            assert rollback.returncode == 0, rollback.stderr
            rolled_back = time.monotonic()
            assert traffic.wait_for(1, since=rolled_back) - rolled_back < 5
        assert not traffic.failures(), traffic.summary()
        assert traffic.versions() == [[1, 2, 1]] * 4, traffic.summary()
        model = detail(server)
    assert model["version"] == 1 and model["state"] == "ready" and model["error"] is None
    assert [(r["from"], r["to"]) for r in model["reloads"]] == [(1, 2), (2, 1)]
    assert model["reloads"][0]["at"] <= model["reloads"][1]["at"]


def test_a_version_that_cannot_load_leaves_the_old_one_serving(tmp_path: Path, servekit_home: Path) -> None:
    push_iris(tmp_path, servekit_home, 5, 8, 20)
    promote(1)
    (artifact,) = (servekit_home / "models" / "iris" / "3").glob("*.joblib")
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # the registry's sha256 no longer matches
    with ServerProcess(["serve", "iris@production"], env=RELOAD_ENV) as server:
        server.wait_ready()
        with Traffic(server.url) as traffic:
            traffic.wait_for(1, since=0)
            promote(3)
            deadline = time.monotonic() + 10
            while not (error := detail(server)["error"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert error and "version 3" in error and "sha256" in error and artifact.name in error, error
            time.sleep(2)  # four more reload intervals: version 1 keeps answering
            model = detail(server)
            assert model["version"] == 1 and model["state"] == "ready" and model["error"] == error
            assert servekit("rollback", "iris", "--alias", "production").returncode == 0  # back to 1
            deadline = time.monotonic() + 10
            while detail(server)["error"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert detail(server)["error"] is None
            promote(2)  # the watcher is still alive: a good version is picked up
            promoted = time.monotonic()
            traffic.wait_for(2, since=promoted)
        assert not traffic.failures(), traffic.summary()
        assert traffic.versions() == [[1, 2]] * 4, traffic.summary()
        model = detail(server)
        log = server.log()
    assert model["error"] is None and [(r["from"], r["to"]) for r in model["reloads"]] == [(1, 2)]
    failures = [line for line in log.splitlines() if "version 3 failed to load" in line]
    assert len(failures) == 1, log  # reported once, not at every reload interval
    assert "sha256" in failures[0] and "version 1 keeps serving" in failures[0]
    assert "Traceback" not in log


def test_sigterm_answers_every_accepted_request_then_exits_0(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    model, _ = iris_model(tmp_path, name="slow.joblib", trees=500)
    rows = np.tile(load_iris().data, (60, 1))
    body = json.dumps({"instances": rows.tolist()})
    count = 12
    answers: list[tuple[int, int] | str | None] = [None] * count
    finished: list[float] = []
    start = threading.Barrier(count + 1, timeout=10)
    server = ServerProcess(["serve", str(model), "--trust"])
    try:
        server.wait_ready()

        def post(index: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                start.wait()
                try:
                    response = client.post(
                        "/v1/models/slow/predict", content=body, headers={"content-type": "application/json"}
                    )
                    answers[index] = (response.status_code, len(response.json().get("predictions", [])))
                except httpx.HTTPError as exc:
                    answers[index] = type(exc).__name__
                finished.append(time.monotonic())

        threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(count)]
        for thread in threads:
            thread.start()
        start.wait()
        deadline = time.monotonic() + 20
        while not finished and time.monotonic() < deadline:
            time.sleep(0.005)
        in_flight = answers.count(None)
        assert in_flight >= count // 2, answers  # most requests are still being answered
        server.process.send_signal(signal.SIGTERM)
        refused = _wait_refused(server.url)
        for thread in threads:
            thread.join(30)
        returncode = server.process.wait(30)
        log = server.log()
    finally:
        server.terminate()
    assert answers == [(200, len(rows))] * count, answers
    assert returncode == 0, log
    assert refused < max(finished)  # new connections were refused while accepted ones were answered
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health/live", timeout=2)
    # uvicorn waited for the open HTTP requests before running the app's shutdown (runner drain)
    assert log.index("Waiting for connections to close") < log.index("Waiting for application shutdown")
    assert "Application shutdown complete" in log and "Traceback" not in log


def _wait_refused(url: str, timeout: float = 10) -> float:
    """Poll with new connections until the server refuses them; when that happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health/live", timeout=2)
        except httpx.ConnectError:
            return time.monotonic()
        except httpx.TransportError:
            pass  # accepted just before the socket closed, then shut as an idle connection
        time.sleep(0.02)
    raise AssertionError("the server still accepts connections after SIGTERM")


def _workers(master: int) -> list[int]:
    """The uvicorn worker processes of `master` (multiprocessing spawn children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == master and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _sockets(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


def test_two_workers_both_answer_and_sigterm_stops_them(tmp_path: Path) -> None:
    model, _ = iris_model(tmp_path)
    server = ServerProcess(["serve", str(model), "--trust", "--workers", "2"])
    clients: list[httpx.Client] = []
    try:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = _workers(server.process.pid)
            if len(workers) == 2 and _ready_everywhere(server):
                break
            time.sleep(0.1)
        assert len(workers) == 2, workers
        before = {pid: _sockets(pid) for pid in workers}
        for _ in range(40):  # each on its own kept-alive connection: the kernel hands them to either worker
            client = server.client()
            clients.append(client)
            response = client.post("/v1/models/iris/predict", json={"features": ROW})
            assert response.status_code == 200 and response.json()["predictions"][0]["prediction"] == "setosa"
        grown = {pid: _sockets(pid) - before[pid] for pid in workers}
        assert all(n > 0 for n in grown.values()), grown  # both workers hold some of the connections
        for client in clients:
            client.close()
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(30)
        log = server.log()
    finally:
        for client in clients:
            client.close()
        server.terminate()
    assert returncode == 0, log
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert log.count("Application shutdown complete") == 2, log  # each worker ran its shutdown


def _ready_everywhere(server: ServerProcess) -> bool:
    """Twenty fresh connections in a row find the server ready: each lands on either worker (by
    address hash, one socket per worker), so a worker still loading is missed with odds 2**-20."""
    for _ in range(20):
        with server.client() as client:
            if client.get("/health/ready").status_code != 200:
                return False
    return True


def test_config_file_with_env_and_flag_precedence(tmp_path: Path) -> None:
    model, _ = iris_model(tmp_path)
    file_port = free_port()
    config = tmp_path / "servekit.yaml"
    config.write_text(
        yaml.safe_dump(
            {"models": [str(model)], "trust": True, "runner": {"max_batch_size": 8}, "max_rows": 5, "port": file_port}
        )
    )
    six = {"instances": [ROW] * 6}
    with ServerProcess(["serve", "--config", str(config)]) as server:  # --port (a flag) beats the file
        server.wait_ready()
        with server.client() as client:
            assert client.post("/v1/models/iris/predict", json={"instances": [ROW] * 5}).status_code == 200
            refused = client.post("/v1/models/iris/predict", json=six)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{file_port}/health/live", timeout=2)
    assert refused.status_code == 413 and "at most 5" in refused.json()["detail"], refused.text
    env_port = free_port()
    env = {"SERVEKIT_MAX_ROWS": "7", "SERVEKIT_PORT": str(env_port)}
    with ServerProcess(["serve", "--config", str(config)], env=env) as server:  # env beats the file, --port both
        server.wait_ready()
        with server.client() as client:
            assert client.post("/v1/models/iris/predict", json=six).status_code == 200
            refused = client.post("/v1/models/iris/predict", json={"instances": [ROW] * 8})
        for port in (file_port, env_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)
    assert refused.status_code == 413 and "at most 7" in refused.json()["detail"], refused.text
    # the nested runner section is read and validated: a bad value stops the server before it binds
    config.write_text(yaml.safe_dump({"models": [str(model)], "trust": True, "runner": {"max_batch_size": 0}}))
    result = servekit("serve", "--config", str(config), "--port", str(file_port))
    assert result.returncode == 2 and "runner.max_batch_size" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # a nested variable merges into the file's section instead of replacing it
    nested = servekit(
        "serve", "--config", str(config), "--port", str(file_port), env={"SERVEKIT_RUNNER__MAX_QUEUE": "3"}
    )
    assert nested.returncode == 2 and "runner.max_batch_size" in nested.stderr, nested.stderr
