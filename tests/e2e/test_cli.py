"""The `servekit` command as users run it: real processes, real files, real registry."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import IRIS_FEATURES, SERVEKIT, iris_model, one_line_error


def run(
    *args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "SERVEKIT_HOME": str(home), "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_pack_writes_a_complete_manifest(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    sample = tmp_path / "train.csv"
    sample.write_text(",".join(IRIS_FEATURES) + "\n" + "\n".join("5.1,3.5,1.4,0.2" for _ in range(20)) + "\n")
    result = run(
        "pack", str(model), "--name", "iris", "--version", "3", "--sample", str(sample), "--metrics",
        "accuracy=0.95", "--tag", "team=ds", "--training-date", "2026-11-01", "--trust", "-o",
        str(tmp_path / "bundle"), home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((tmp_path / "bundle" / "servekit.yaml").read_text())
    assert manifest["name"] == "iris" and manifest["version"] == 3
    assert manifest["format"] == "joblib" and manifest["task"] == "classification"
    assert manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert [f["name"] for f in manifest["signature"]["features"]] == IRIS_FEATURES
    assert manifest["metrics"] == {"accuracy": 0.95} and manifest["tags"] == {"team": "ds"}
    assert manifest["training_date"] == "2026-11-01"
    assert manifest["framework"] == "scikit-learn" and manifest["framework_version"]
    assert manifest["python_version"].count(".") == 2
    # With a sample, pack also stores a verified ONNX variant beside the original.
    assert set(manifest["files"]) == {"iris.joblib", "model.onnx"} and len(manifest["files"]["iris.joblib"]) == 64
    assert manifest["variants"]["onnx"]["artifact"] == "model.onnx"
    assert manifest["variants"]["onnx"]["max_abs_diff"] <= 1e-5
    profile = manifest["profile"]["features"]["sepal_length"]
    assert profile["kind"] == "numeric" and profile["count"] == 20 and profile["mean"] == pytest.approx(5.1)


def test_registry_workflow_with_json_output(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    for _ in range(2):
        pushed = run("push", str(model), "--name", "iris", "--trust", "--json", home=home)
        assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"] == 2
    assert run("promote", "iris", "1", "--alias", "production", home=home).returncode == 0
    assert run("promote", "iris", "2", "--alias", "production", home=home).returncode == 0
    listed = json.loads(run("models", "--json", home=home).stdout)
    assert listed[0]["name"] == "iris" and listed[0]["aliases"] == {"production": 2}
    rolled = json.loads(run("rollback", "iris", "--alias", "production", "--json", home=home).stdout)
    assert rolled["version"] == 1
    versions = json.loads(run("models", "iris", "--json", home=home).stdout)
    assert sorted((v["version"], v["aliases"]) for v in versions) == [(1, ["production"]), (2, [])]
    table = run("models", home=home)
    assert "iris" in table.stdout and "production" in table.stdout
    assert run("rm", "iris", "2", home=home).returncode == 0
    assert [v["version"] for v in json.loads(run("models", "iris", "--json", home=home).stdout)] == [1]


def test_concurrent_pushes_from_two_processes(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    env = {**os.environ, "SERVEKIT_HOME": str(home)}
    procs = [
        subprocess.Popen([SERVEKIT, "push", str(model), "--name", "iris", "--trust", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sorted(json.loads(out)["version"] for out, _ in results) == [1, 2]


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "model.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    for args in (["pack", str(evil)], ["push", str(evil)], ["serve", str(evil), "--port", "1"]):
        line = one_line_error(run(*args, home=home, cwd=tmp_path))
        assert "runs whatever code it contains" in line and "--trust" in line
    assert not marker.exists()
    assert not (tmp_path / "model.bundle").exists()


def test_tampered_registry_artifact_is_refused(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    assert run("push", str(model), "--name", "iris", "--trust", home=home).returncode == 0
    stored = home / "models" / "iris" / "1" / "iris.joblib"
    stored.write_bytes(stored.read_bytes() + b"\0")
    line = one_line_error(run("serve", "iris:1", "--port", "1", home=home))
    assert "iris.joblib" in line and "sha256" in line and "changed after" in line
    script = "import servekit; servekit.load('iris:1')"
    loaded = subprocess.run(
        [str(Path(SERVEKIT).parent / "python"), "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVEKIT_HOME": str(home)},
    )
    assert loaded.returncode != 0
    assert "TamperedArtifact" in loaded.stderr and "iris.joblib" in loaded.stderr and "sha256" in loaded.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pack", "missing.joblib"], "is not a file"),
        (["pack", "notes.bin"], "cannot tell the model format"),
        (["pack", "notes.txt"], "content is not one"),
        (["pack", "half.joblib", "--trust"], "cannot be unpickled"),
        (["pack", "dict.joblib", "--trust"], "not a model"),
        (["pack", "model.joblib", "--trust", "--name", "a/b"], "name"),
        (["pack", "model.joblib", "--trust", "--name", ".."], "name"),
        (["pack", "model.joblib", "--trust", "--metrics", "accuracy"], "KEY=VALUE"),
        (["push", "model.joblib", "--trust", "--name", "../etc"], "name"),
        (["models", "nope"], "no model named 'nope'"),
        (["promote", "nope", "1"], "no model named 'nope'"),
        (["rollback", "nope"], "no model named 'nope'"),
        (["rm", "nope", "1"], "no model named 'nope'"),
        (["serve", "nope.joblib"], "does not exist"),
        (["push", "badbundle"], "servekit.yaml"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path: Path, home: Path, args: list[str], expected: str) -> None:
    model, fitted = iris_model(tmp_path, name="model.joblib")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "notes.bin").write_text("hello")
    (tmp_path / "half.joblib").write_bytes(model.read_bytes()[:200])
    import joblib

    joblib.dump({"weights": [1, 2]}, tmp_path / "dict.joblib")
    bad = tmp_path / "badbundle"
    bad.mkdir()
    (bad / "servekit.yaml").write_text("name: x\nformat: [unclosed\n")
    line = one_line_error(run(*args, home=home, cwd=tmp_path))
    assert expected in line
    assert not list(tmp_path.glob("*.bundle")) and not list(tmp_path.glob(".*.bundle*"))
    models_dir = home / "models"
    assert not models_dir.exists() or not any(models_dir.rglob("*.joblib"))
    del fitted


def test_missing_version_and_invalid_manifest_field(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    assert run("push", str(model), "--name", "iris", "--trust", home=home).returncode == 0
    assert "version" in one_line_error(run("promote", "iris", "9", home=home)).lower()
    bundle = tmp_path / "bundle"
    assert run("pack", str(model), "--trust", "-o", str(bundle), home=home).returncode == 0
    manifest = yaml.safe_load((bundle / "servekit.yaml").read_text())
    manifest["task"] = "clustering"
    (bundle / "servekit.yaml").write_text(yaml.safe_dump(manifest))
    line = one_line_error(run("push", str(bundle), "--trust", home=home))
    assert "task" in line
    assert [v for v in (home / "models" / "iris").iterdir() if v.name != "1"] == []


def test_pack_refuses_to_overwrite_without_force(tmp_path: Path, home: Path) -> None:
    model, _ = iris_model(tmp_path)
    out = tmp_path / "out"
    assert run("pack", str(model), "--trust", "-o", str(out), home=home).returncode == 0
    assert "--force" in one_line_error(run("pack", str(model), "--trust", "-o", str(out), home=home))
    assert run("pack", str(model), "--trust", "-o", str(out), "--force", home=home).returncode == 0
