"""`servekit export` as users run it, and the exported predictor run where servekit is not.

The exported `predictor.py` runs in a fresh venv holding only onnxruntime and numpy (the
versions this environment has, from the indexes this machine's pip uses), made once per test
session; its answers are compared with servekit's predictions of the original model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import servekit
from servekit.packing import pack
from tests.support import IRIS_FEATURES, diabetes_model, iris_model, one_line_error

# The CLI in a fresh process, with some modules made unimportable (as on a machine without that
# extra).
_RUNNER = """
import sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None
from servekit.cli.main import app, main

main(sys.argv[2:])
"""
_NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


def servekit_cli(*args: str, blocked: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, blocked, *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "250"},
    )


def bare_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new venv with onnxruntime and numpy installed, and no servekit."""
    venv = tmp_path_factory.mktemp("edge-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180, env=bare_env())
    python = venv / "bin" / "python"
    pins = [f"onnxruntime=={version('onnxruntime')}", f"numpy=={version('numpy')}"]
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *pins],
        capture_output=True,
        text=True,
        timeout=600,
        env=bare_env(),
    )
    assert installed.returncode == 0, installed.stderr
    return python


def run_predictor(python: Path, folder: Path, rows: Any, cwd: Path) -> subprocess.CompletedProcess:
    (cwd / "rows.json").write_text(json.dumps(rows))
    return subprocess.run(
        [str(python), str(folder / "predictor.py"), "rows.json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=bare_env(),
    )


def predictions(result: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["predictions"]


def original_records(bundle: Path, rows: Any) -> list[dict[str, Any]]:
    """What servekit answers with the bundle's original model (not an ONNX variant)."""
    with servekit.load(bundle, trust=True, optimized=False) as model:
        return model.predict(rows).to_records()


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[float]]]:
    """An iris forest (string labels) bundle with its verified ONNX variant, and the iris rows."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("export-iris")
    rows = load_iris().data
    path, _ = iris_model(folder)
    return pack(path, output=folder / "iris", features=IRIS_FEATURES, trust=True, sample=rows).path, rows.tolist()


def test_the_python_there_has_onnxruntime_and_numpy_but_not_servekit(bare_python: Path, tmp_path: Path) -> None:
    probe = "import numpy, onnxruntime; print(onnxruntime.__version__)"
    ok = subprocess.run([str(bare_python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=bare_env())
    assert ok.returncode == 0 and ok.stdout.strip() == version("onnxruntime"), ok.stderr
    missing = subprocess.run(
        [str(bare_python), "-c", "import servekit"], capture_output=True, text=True, cwd=tmp_path, env=bare_env()
    )
    assert missing.returncode == 1 and "No module named 'servekit'" in missing.stderr


def test_an_iris_classifier_predicts_the_same_without_servekit(
    iris: tuple[Path, list], bare_python: Path, tmp_path: Path
) -> None:
    bundle, rows = iris
    out = tmp_path / 'it\'s "my $model" edge'  # a path a shell would mangle unquoted
    result = servekit_cli("export", str(bundle), "--format", "onnx", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"exported iris to {out} (onnx variant from the bundle" in result.stdout
    assert "python -m pip install onnxruntime numpy" in result.stdout
    command = next(line.strip() for line in result.stdout.splitlines() if "predictor.py" in line)
    assert command == "python " + "'" + str(out).replace("'", "'\"'\"'") + "/predictor.py' rows.json"
    got = predictions(run_predictor(bare_python, out, rows, tmp_path))
    want = original_records(bundle, rows)
    assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
    assert {r["prediction"] for r in got} == {"setosa", "versicolor", "virginica"}
    for have, expected in zip(got, want, strict=True):
        assert list(have["probabilities"]) == ["setosa", "versicolor", "virginica"]
        assert have["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert have["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
    named = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in rows[:3]]
    by_name = predictions(run_predictor(bare_python, out, {"instances": named}, tmp_path))
    assert [r["prediction"] for r in by_name] == [r["prediction"] for r in got[:3]]
    assert [r["probabilities"] for r in by_name] == [pytest.approx(r["probabilities"], abs=1e-6) for r in got[:3]]
    readme = (out / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    path = f"{bare_python.parent}{os.pathsep}{os.environ['PATH']}"  # `python` is the bare venv's
    steps = subprocess.run(
        ["bash", "-e", "-c", readme], capture_output=True, text=True, cwd=out, env={**bare_env(), "PATH": path}
    )
    assert steps.returncode == 0, steps.stderr
    assert json.loads(steps.stdout.splitlines()[-1])["predictions"][0]["prediction"] == "versicolor"
    bad = run_predictor(bare_python, out, [[5.1, 3.5, 1.4]], tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == (
        "error: row 0 has 3 values; the model expects 4 (sepal_length, sepal_width, petal_length, petal_width)"
    )


def test_a_diabetes_regressor_file_is_converted_verified_and_predicts_the_same(
    bare_python: Path, tmp_path: Path
) -> None:
    from sklearn.datasets import load_diabetes

    model, _ = diabetes_model(tmp_path)
    rows = load_diabetes().data
    sample = tmp_path / "sample.csv"
    header = [f"x{i}" for i in range(10)]
    sample.write_text("\n".join(",".join(map(str, row)) for row in [header, *rows[:100].tolist()]) + "\n")
    out = tmp_path / "edge"
    result = servekit_cli("export", str(model), "--sample", str(sample), "--trust", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "onnx variant converted now" in result.stdout and "on 100 rows against the original" in result.stdout
    got = predictions(run_predictor(bare_python, out, rows.tolist(), tmp_path))
    want = original_records(tmp_path / "diabetes.joblib", rows.tolist())
    assert all(set(r) == {"prediction"} for r in got)
    values = np.asarray([r["prediction"] for r in got])
    expected = np.asarray([r["prediction"] for r in want])
    assert np.max(np.abs(values - expected) / np.maximum(1.0, np.abs(expected))) <= 1e-5  # as optimize verifies


def test_a_quantized_registry_model_keeps_the_labels(bare_python: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from servekit.registry import Registry

    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0)
    model = make_pipeline(StandardScaler(), mlp).fit(data.data, labels)
    joblib.dump(model, tmp_path / "mlp.joblib")
    bundle = pack(
        tmp_path / "mlp.joblib", output=tmp_path / "mlp", features=IRIS_FEATURES, trust=True, sample=data.data
    )
    with Registry() as registry:  # SERVEKIT_HOME comes from the conftest fixture
        registry.push(bundle)
    out = tmp_path / "edge-int8"
    result = servekit_cli("export", "mlp@latest", "--quantize", "-o", str(out))  # registry refs need no --trust
    assert result.returncode == 0, result.stderr
    assert "onnx-int8 variant converted now; labels agree" in result.stdout
    rows = data.data.tolist()
    got = predictions(run_predictor(bare_python, out, rows, tmp_path))
    want = original_records(bundle.path, rows)
    assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
    difference = max(
        abs(have["probabilities"][c] - expected["probabilities"][c])
        for have, expected in zip(got, want, strict=True)
        for c in expected["probabilities"]
    )
    signature = json.loads((out / "signature.json").read_text())
    assert signature["variant"] == "onnx-int8" and signature["verification"]["label_agreement"] >= 0.99
    print(f"int8 vs original on the 150 iris rows: labels identical, max probability difference {difference:.3g}")
    assert 0 < difference < 0.1  # quantized: close, not identical


@pytest.mark.parametrize(
    ("args", "blocked", "expected"),
    [
        (["--format", "tflite"], "", "unknown export format 'tflite'. Choose one of: onnx"),
        (["--ref", "ghost"], "", "no model named 'ghost'"),
        (["--ref", "missing/model.joblib"], "", "missing/model.joblib does not exist"),
        (["--plain"], "", "nobody vouched for it"),
        (["--plain", "--trust"], "skl2onnx", "pip install 'servekit[onnx]'"),
        ([], "onnxruntime", "pip install 'servekit[onnx]'"),
        (["--existing"], "", "already exists and is not empty. Choose another --output or pass --force"),
    ],
)
def test_mistakes_end_with_one_clear_line_and_write_nothing(
    iris: tuple[Path, list], tmp_path: Path, args: list[str], blocked: str, expected: str
) -> None:
    bundle, rows = iris
    plain = pack(
        next(bundle.glob("*.joblib")), output=tmp_path / "plain", trust=True, sample=np.asarray(rows), optimize=False
    ).path
    out = tmp_path / "out"
    ref = str(plain if "--plain" in args else bundle)
    if "--ref" in args:
        ref = args[args.index("--ref") + 1]
    if "--existing" in args:
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
    extra = [a for a in args if a not in {"--ref", "--plain", "--existing", ref}]
    line = one_line_error(servekit_cli("export", ref, "-o", str(out), *extra, blocked=blocked, cwd=tmp_path))
    assert expected in line
    if "--existing" in args:
        assert [p.name for p in out.iterdir()] == ["mine.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
