"""A served ONNX model reports nothing to ONNX Runtime's usage telemetry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sklearn.datasets import load_iris

from servekit.packing import pack
from tests.support import IRIS_FEATURES, ServerProcess, iris_model

ROW = [5.1, 3.5, 1.4, 0.2]
QUIET_ENV = "ORT_DISABLE_TELEMETRY"


def test_a_served_onnx_model_leaves_no_telemetry_store_and_answers(tmp_path: Path) -> None:
    model, _ = iris_model(tmp_path)
    sample = load_iris().data[:40]  # with a sample, pack verifies and stores an ONNX variant
    bundle = pack(
        model, name="iris", output=tmp_path / "iris.bundle", features=IRIS_FEATURES, sample=sample, trust=True
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "SERVEKIT_HOME": str(tmp_path / "servekit")}
    # onnxruntime keeps its device id and event store under ~/.cache/Microsoft when telemetry is on.
    with ServerProcess(["serve", str(bundle.path), "--trust"], env=env, unset=(QUIET_ENV, "XDG_CACHE_HOME")) as server:
        server.wait_ready()
        with server.client() as client:
            assert client.get("/v1/models/iris").json()["metadata"]["runtime"] == "onnx"
            answer = client.post("/v1/models/iris/predict", json={"features": ROW})
            assert answer.status_code == 200, answer.text
        assert server.terminate() == 0
    assert not (home / ".cache" / "Microsoft").exists()
    assert list(home.iterdir()) == []


def test_an_operators_own_telemetry_setting_is_kept() -> None:
    probe = (
        "import os; from servekit.runtimes.base import quiet_onnxruntime; quiet_onnxruntime(); "
        f"print(os.environ[{QUIET_ENV!r}])"
    )
    for preset, expected in ((None, "1"), ("0", "0"), ("1", "1")):
        env = {key: value for key, value in os.environ.items() if key != QUIET_ENV}
        if preset is not None:
            env[QUIET_ENV] = preset
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
