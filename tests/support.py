"""Helpers shared by the tests: small real models, an in-process app, a real server process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from fastapi.testclient import TestClient

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SERVEKIT = str(Path(sys.executable).parent / "servekit")


def iris_model(tmp: Path, *, name: str = "iris.joblib", trees: int = 10) -> tuple[Path, Any]:
    """A RandomForest on iris with string labels, saved with joblib."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    model = RandomForestClassifier(n_estimators=trees, random_state=0).fit(data.data, labels)
    path = tmp / name
    joblib.dump(model, path)
    return path, model


def diabetes_model(tmp: Path) -> tuple[Path, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    path = tmp / "diabetes.joblib"
    joblib.dump(model, path)
    return path, model


def iris_bundle(tmp: Path, *, name: str = "iris", trees: int = 10) -> Path:
    """A packed iris bundle with named features."""
    from servekit.packing import pack

    path, _ = iris_model(tmp, trees=trees)
    return pack(path, name=name, output=tmp / f"{name}.bundle", features=IRIS_FEATURES, trust=True).path


@contextmanager
def running_app(settings: Any, *, registry: Any | None = None, timeout: float = 30) -> Iterator[TestClient]:
    """The ASGI app in-process (lifespan run), once every model is ready."""
    from servekit.server import create_app

    app = create_app(settings, registry=registry)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client, timeout)
        yield client


def wait_ready(client: httpx.Client | TestClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("the server did not become ready")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `servekit serve` process on 127.0.0.1 and a random port."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"servekit-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [SERVEKIT, *args, "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={key: value for key, value in {**os.environ, **(env or {})}.items() if key not in unset},
            cwd=cwd,
        )

    def wait_ready(self, timeout: float = 60) -> ServerProcess:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
                try:
                    if client.get("/health/ready").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"the server did not become ready:\n{self.log()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """A failed command: exit code 2, one line on stderr, no traceback; returns that line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def system_tool(name: str, install: str) -> str:
    """The path of a program some tests need (on PATH or in this venv): skipped when missing
    locally, a failure under CI, where `make test` installs it (`install` says how)."""
    import shutil

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: {install}")
        pytest.skip(f"{name} is not installed ({install})")
    return found
