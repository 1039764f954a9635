"""The Docker artifact for real: `servekit build docker`, then podman builds the image on a local
Debian base, runs it, serves predictions as a non-root user and stops cleanly (issue #7).

Slow (the first run on a machine debootstraps the base, a few minutes; then about two): select
or leave it out with `-m container` / `-m "not container"`.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests import container_harness as harness
from tests.support import SERVEKIT, free_port, iris_model

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]


def test_the_docker_image_builds_serves_and_stops_cleanly_in_podman(tmp_path: Path) -> None:
    harness.require_tools()
    podman = harness.Podman.configured(tmp_path)
    base = harness.ensure_base_image(podman)

    model_path, model = iris_model(tmp_path)
    context = tmp_path / "iris-docker"
    built = subprocess.run(
        [SERVEKIT, "build", "docker", str(model_path), "-o", str(context), "--trust"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr

    suffix = uuid.uuid4().hex[:8]
    image, name, port = f"localhost/servekit-test-iris:{suffix}", f"servekit-test-{suffix}", free_port()
    try:
        harness.build_image(podman, context, image, base=base, work=tmp_path)
        harness.run_container(podman, image, name, port)
        url = f"http://127.0.0.1:{port}"
        harness.wait_ready(podman, name, url)

        from sklearn.datasets import load_iris

        rows = load_iris().data[[0, 1, 50, 75, 100, 149]]
        response = httpx.post(f"{url}/v1/models/iris/predict", json={"instances": rows.tolist()}, timeout=30)
        assert response.status_code == 200, response.text
        answers = [p["prediction"] for p in response.json()["predictions"]]
        assert answers == model.predict(rows).tolist()
        assert len(set(answers)) == 3  # the rows cover every class: a constant answer would not pass

        uid = podman("exec", name, "id", "-u").stdout.strip()
        assert uid.isdigit() and int(uid) != 0, f"the server runs as uid {uid!r}"
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr  # the image's own HEALTHCHECK, inside

        podman("stop", "-t", "40", name, timeout=60)
        state = podman.inspect(name)["State"]
        output = harness.logs(podman, name)
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), output
        assert "Application shutdown complete" in output, output
        assert "Finished server process" in output, output
        assert "Traceback" not in output, output
    finally:
        harness.remove(podman, container=name, image=image)
    assert podman("image", "exists", image, check=False).returncode != 0
