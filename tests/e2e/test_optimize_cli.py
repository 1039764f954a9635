"""`servekit optimize` and the automatic optimization of `servekit pack`, as real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import IRIS_FEATURES, SERVEKIT, iris_model


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SERVEKIT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVEKIT_HOME": str(home), "COLUMNS": "200"},
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model file and its bundle without profile or variant, packed in-process (read-only)."""
    from servekit.packing import pack

    folder = tmp_path_factory.mktemp("plain")
    path = iris_model(folder)[0]
    return path, pack(path, output=folder / "bundle", trust=True).path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return iris_model(tmp_path)[0]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    from sklearn.datasets import load_iris

    rows = load_iris().data
    path = tmp_path / "train.csv"
    path.write_text(",".join(IRIS_FEATURES) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def _manifest(bundle: Path) -> dict:
    return yaml.safe_load((bundle / "servekit.yaml").read_text())


def test_pack_with_a_sample_optimizes(tmp_path: Path, home: Path, model: Path, sample: Path) -> None:
    bundle = tmp_path / "bundle"
    result = run("pack", str(model), "--sample", str(sample), "--trust", "-o", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    assert "optimized: onnx (max diff " in result.stdout
    manifest = _manifest(bundle)
    assert manifest["variants"]["onnx"]["rows_checked"] == 150
    assert manifest["variants"]["onnx"]["converter"].startswith("skl2onnx ")
    assert set(manifest["files"]) == {"iris.joblib", "model.onnx"}


def test_pack_no_optimize_writes_no_variant(tmp_path: Path, home: Path, model: Path, sample: Path) -> None:
    bundle = tmp_path / "bundle"
    result = run(
        "pack", str(model), "--sample", str(sample), "--trust", "--no-optimize", "-o", str(bundle), "--json", home=home
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert "optimization" not in printed and not printed["manifest"]["variants"]
    assert "variants" not in _manifest(bundle) or not _manifest(bundle)["variants"]
    assert not (bundle / "model.onnx").exists()


def test_optimize_a_bundle_folder(tmp_path: Path, home: Path, plain_bundle: tuple[Path, Path], sample: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(plain_bundle[1], bundle)
    result = run("optimize", str(bundle), "--sample", str(sample), "--trust", home=home)
    assert result.returncode == 0, result.stderr
    assert "ONNX variant verified and stored" in result.stdout
    assert "skl2onnx" in result.stdout and "150 rows from the sample" in result.stdout
    assert "ms for one row" in result.stdout
    assert _manifest(bundle)["variants"]["onnx"]["artifact"] == "model.onnx"

    as_json = run("optimize", str(bundle), "--sample", str(sample), "--trust", "--json", home=home)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)["report"]
    assert report["stored"] and report["max_abs_diff"] <= 1e-5
    assert set(report["latency_ms"]) == {"original", "onnx"}


def test_optimize_a_registry_ref_pushes_a_new_version(home: Path, model: Path, sample: Path) -> None:
    from servekit.packing import pack
    from servekit.registry import Registry

    bundle = pack(model, name="iris", sample=sample, trust=True, optimize=False, output=model.parent / "bundle")
    with Registry(home) as registry:
        registry.push(bundle)
    result = run("optimize", "iris", "--json", home=home)  # the profile gives the rows; no trust needed
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["source"] == "iris:1" and printed["pushed"] == {"name": "iris", "version": 2}
    versions = json.loads(run("models", "iris", "--json", home=home).stdout)
    assert [v["version"] for v in versions] == [1, 2]


def test_a_model_that_does_not_optimize_exits_1_with_the_reason(tmp_path: Path, home: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.semi_supervised import LabelSpreading

    from servekit.packing import pack

    X, y = load_iris(return_X_y=True)
    joblib.dump(LabelSpreading().fit(X, y), tmp_path / "spreading.joblib")
    bundle = pack(tmp_path / "spreading.joblib", trust=True, output=tmp_path / "bundle").path
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in X) + "\n")
    result = run("optimize", str(bundle), "--sample", str(csv), "--trust", home=home)
    assert result.returncode == 1
    assert "not optimized: the ONNX conversion failed" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimize", "no/such/bundle"], "no/such/bundle does not exist"),
        (["optimize", "unknown-model"], "no model named 'unknown-model'"),
        (["optimize", "BUNDLE"], "no rows to verify an ONNX variant"),
        (["optimize", "BUNDLE", "--trust", "--sample", "missing.csv"], "missing.csv does not exist"),
        (["optimize", "BUNDLE", "--trust", "--tolerance", "-1"], "the tolerance must be a number >= 0"),
        (["optimize", "MODEL"], "is a model file, not a bundle folder"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(
    home: Path, plain_bundle: tuple[Path, Path], args: list[str], expected: str
) -> None:
    model, bundle = plain_bundle
    args = [{"BUNDLE": str(bundle), "MODEL": str(model)}.get(a, a) for a in args]
    result = run(*args, home=home)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected in lines[0]
