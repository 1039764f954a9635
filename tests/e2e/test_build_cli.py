"""`servekit build` as users run it: real processes, real files, a real registry and wheel."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from servekit import __version__
from servekit.bundle import Bundle, sha256_file
from tests.support import SERVEKIT, iris_bundle, iris_model, one_line_error


def servekit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "250"}
    )


def test_docker_build_from_source_ships_the_bundle_and_a_wheel(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    out = tmp_path / "out"
    checkout = Path(__file__).parents[2]
    before = sorted(p.name for p in checkout.iterdir())
    result = servekit("build", "docker", str(bundle), "-o", str(out), "--trust")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in checkout.iterdir()) == before  # the wheel is built from a copy
    assert f"docker build -t servekit-iris:latest {out}" in result.stdout
    assert f"docker compose -f {out}/compose.yaml --profile monitoring up --build -d" in result.stdout
    for name in ("servekit.yaml", "iris.joblib"):
        assert sha256_file(out / "models" / "iris" / name) == sha256_file(bundle / name)
    Bundle.read(out / "models" / "iris").verify()
    wheels = list((out / "wheels").glob("servekit-*.whl"))
    assert [w.name for w in wheels] == [f"servekit-{__version__}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    assert "servekit/deploy/templates/docker/Dockerfile.j2" in names and "servekit/cli/build.py" in names
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert f"./wheels/{wheels[0].name}" in requirements
    assert (out / "monitoring" / "grafana" / "dashboards").is_dir()
    shipped = Path(__file__).parents[2] / "src" / "servekit" / "monitoring" / "assets"
    for name, copied in (
        ("grafana-dashboard.json", "monitoring/grafana/dashboards/servekit.json"),
        ("alerts.yml", "monitoring/prometheus/rules/servekit-alerts.yml"),
    ):
        if (shipped / name).is_file():  # the monitoring assets, once the package has them
            assert (out / copied).read_bytes() == (shipped / name).read_bytes()


def test_a_registry_reference_is_trusted_and_tags_the_image_with_its_version(tmp_path: Path) -> None:
    from servekit.registry import Registry

    with Registry() as registry:  # SERVEKIT_HOME comes from the conftest fixture
        registry.push(Bundle.read(iris_bundle(tmp_path)))
    out = tmp_path / "k8s"
    result = servekit("build", "k8s", "iris@latest", "-o", str(out), "--from-pypi")
    assert result.returncode == 0, result.stderr
    deployment = yaml.safe_load((out / "k8s" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "servekit-iris:1"
    assert (out / "requirements.txt").read_text().splitlines()[1] == f"servekit=={__version__}"
    assert not (out / "wheels").exists()
    assert "kubectl apply -k" in result.stdout and "--trust" in (out / "Dockerfile").read_text()


def test_a_bare_model_file_is_packed_on_the_fly(tmp_path: Path) -> None:
    model, _ = iris_model(tmp_path)
    out = tmp_path / "heroku"
    result = servekit("build", "heroku", str(model), "-o", str(out), "--trust", "--from-pypi", "-r", "psycopg[binary]")
    assert result.returncode == 0, result.stderr
    manifest = Bundle.read(out / "models" / "iris").manifest
    assert manifest.format == "joblib" and manifest.task == "classification"
    assert (out / "Procfile").read_text().startswith("web: exec servekit serve models/iris ")
    assert "psycopg[binary]" in (out / "requirements.txt").read_text().splitlines()


def test_the_default_folder_is_named_after_the_model_and_target(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    result = servekit("build", "lambda", str(bundle), "--trust", "--from-pypi", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = tmp_path / "iris-lambda" / "build-zip.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    assert "servekit[lambda]==" in (tmp_path / "iris-lambda" / "requirements.txt").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build", "nomad", "MODEL"], "unknown deployment target 'nomad'"),
        (["build", "docker", "MODEL"], "--trust"),
        (["build", "docker", "missing/model.joblib"], "does not exist"),
        (["build", "docker", "ghost", "--trust"], "ghost"),
    ],
)
def test_mistakes_end_with_one_clear_line(tmp_path: Path, args: list[str], expected: str) -> None:
    bundle = iris_bundle(tmp_path)
    args = [str(bundle) if a == "MODEL" else a for a in args]
    line = one_line_error(servekit(*args, "-o", str(tmp_path / "out"), cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_kept_unless_forced(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    line = one_line_error(servekit("build", "cloudrun", str(bundle), "-o", str(out), "--trust", "--from-pypi"))
    assert "already exists" in line and "--force" in line
    assert (out / "mine.txt").read_text() == "keep me"
    forced = servekit("build", "cloudrun", str(bundle), "-o", str(out), "--trust", "--from-pypi", "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (out / "mine.txt").exists() and (out / "service.yaml").is_file()
    assert "gcloud run services replace" in forced.stdout
