"""The rendered commands, run for real: Heroku's web process on $PORT, and the container's CMD
and HEALTHCHECK (the image's own lines, with the bundle path pointed at the build folder)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, iris_bundle

BIN = str(Path(sys.executable).parent)
ROW = [5.1, 3.5, 1.4, 0.2]


def build(target: str, tmp: Path) -> Path:
    out = tmp / target
    result = subprocess.run(
        [f"{BIN}/servekit", "build", target, str(iris_bundle(tmp)), "-o", str(out), "--trust", "--from-pypi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out


def start(command: list[str], port: int, cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(log.read_text())


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_the_procfile_web_command_serves_on_port(tmp_path: Path) -> None:
    out = build("heroku", tmp_path)
    procfile = (out / "Procfile").read_text()
    web = re.fullmatch(r"web: (.+)\n", procfile)
    assert web is not None, procfile
    port, log = free_port(), tmp_path / "heroku.log"
    process = start(["bash", "-c", web.group(1)], port, out, log)  # Heroku runs it with bash, in the app folder
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris/predict", json={"features": ROW}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["prediction"] == "setosa"
    finally:
        code = stop(process)
    assert code == 0, log.read_text()  # exec: SIGTERM reached servekit, which drained and exited 0


def test_the_container_command_and_health_check_work_as_written(tmp_path: Path) -> None:
    out = build("docker", tmp_path)
    lines = re.sub(r"\\\n\s*", " ", (out / "Dockerfile").read_text()).splitlines()
    command = json.loads(next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD "))
    healthcheck = json.loads(next(line for line in lines if line.startswith("HEALTHCHECK")).split(" CMD ", 1)[1])
    command[-1] = command[-1].replace("/models/", f"{out}/models/")  # where `COPY models/ /models/` puts it
    port, log = free_port(), tmp_path / "docker.log"
    healthcheck[0] = sys.executable  # the image's `python`
    probe_env = {**os.environ, "PORT": str(port)}
    refused = subprocess.run(healthcheck, env=probe_env, capture_output=True, timeout=30)
    assert refused.returncode != 0  # nothing listening yet: unhealthy
    process = start(command, port, out, log)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log)
        healthy = subprocess.run(healthcheck, env=probe_env, capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        code = stop(process)
    assert code == 0, log.read_text()


@pytest.mark.parametrize("target", ["docker"])
def test_compose_healthcheck_is_the_image_one(tmp_path: Path, target: str) -> None:
    import yaml

    out = build(target, tmp_path)
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    dockerfile = re.sub(r"\\\n\s*", " ", (out / "Dockerfile").read_text())
    image_check = json.loads(re.search(r"HEALTHCHECK .*? CMD (\[.*\])", dockerfile).group(1))
    assert compose["services"]["iris"]["healthcheck"]["test"] == ["CMD", *image_check]
