"""`export_model`: which ONNX file is shipped, what the folder holds, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from servekit.bundle import Bundle, sha256_file
from servekit.edge import export_model
from servekit.edge.export import standalone_source
from servekit.errors import ArtifactError, Conflict, InvalidInput, InvalidName, MissingInformation, UntrustedArtifact
from servekit.optimize.store import write_manifest_atomically
from servekit.packing import pack
from tests.support import IRIS_FEATURES, iris_model

EXPORT_FILES = ["README.md", "model.onnx", "predictor.py", "signature.json"]


class Doubling(RegressorMixin, BaseEstimator):
    """An estimator no converter knows."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> Doubling:
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype="float64").sum(axis=1) * 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only bundles: iris with its ONNX variant, iris without (but with a profile), and
    iris with neither variant nor profile."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("export-models")
    path, _ = iris_model(folder)
    rows = load_iris().data
    made = {"file": path}
    made["variant"] = pack(path, output=folder / "variant", features=IRIS_FEATURES, trust=True, sample=rows).path
    made["profile"] = pack(
        path, output=folder / "profile", features=IRIS_FEATURES, trust=True, sample=rows, optimize=False
    ).path
    made["bare"] = pack(path, output=folder / "bare", features=IRIS_FEATURES, trust=True).path
    return made


def leftovers(folder: Path) -> list[str]:
    """Staging folders an export would leave behind if it did not clean up."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_verified_variant_is_shipped_as_stored_without_loading_the_pickle(models: dict, tmp_path: Path) -> None:
    bundle = Bundle.read(models["variant"])
    result = export_model(str(bundle.path), tmp_path / "out")  # no trust: only the ONNX file is read
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == EXPORT_FILES == result.files
    variant = bundle.manifest.variants["onnx"]
    assert sha256_file(out / "model.onnx") == bundle.manifest.files[variant["artifact"]]
    assert result.onnx.variant == "onnx" and not result.onnx.converted
    assert result.onnx.facts["max_abs_diff"] == variant["max_abs_diff"] and result.rows_checked > 0
    assert (out / "predictor.py").read_text() == standalone_source()
    signature = json.loads((out / "signature.json").read_text())
    assert signature == result.signature
    assert [f["name"] for f in signature["features"]] == IRIS_FEATURES
    assert signature["classes"] == signature["model_classes"] == ["setosa", "versicolor", "virginica"]
    assert signature["task"] == "classification" and signature["name"] == "iris"
    assert (signature["input_name"], signature["input_dtype"]) == ("input", "float32")
    assert signature["inputs"] == [{"name": "input", "dtype": "float32", "shape": [None, 4]}]
    assert signature["example_row"] == [5.8, 3.0, 4.35, 1.3]  # the medians of iris, from the profile
    readme = (out / "README.md").read_text()
    assert "`sepal_length`, `sepal_width`, `petal_length`, `petal_width`" in readme
    assert "echo '[[5.8, 3.0, 4.35, 1.3]]' > rows.json" in readme and "python predictor.py rows.json" in readme
    assert "Checked against the original model: largest difference 1.2e-07 on 150 rows." in readme


def test_a_model_without_variant_is_converted_in_a_copy_of_its_bundle(models: dict, tmp_path: Path) -> None:
    folder = models["profile"]
    before = {p.name: sha256_file(p) for p in folder.iterdir()}
    with pytest.raises(UntrustedArtifact):  # converting loads the pickle
        export_model(str(folder), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = export_model(str(folder), tmp_path / "out", trust=True)
    assert result.onnx.converted and result.onnx.variant == "onnx"
    assert result.onnx.facts["rows_checked"] == 500  # drawn from the reference profile
    assert result.onnx.facts["max_abs_diff"] <= 1e-5
    assert {p.name: sha256_file(p) for p in folder.iterdir()} == before  # the bundle is untouched
    assert leftovers(tmp_path) == []


def test_a_bare_model_file_needs_a_sample_to_verify_the_conversion(models: dict, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    with pytest.raises(MissingInformation) as caught:
        export_model(str(models["file"]), tmp_path / "out", trust=True)
    assert "--sample" in caught.value.detail
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    result = export_model(str(models["file"]), tmp_path / "out", trust=True, sample=load_iris().data)
    assert result.onnx.converted and result.onnx.facts["rows_checked"] == 150
    assert [f["name"] for f in result.signature["features"]] == ["x0", "x1", "x2", "x3"]


def test_a_model_that_does_not_convert_writes_nothing(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    joblib.dump(Doubling().fit(X, y), tmp_path / "doubling.joblib")
    bundle = pack(tmp_path / "doubling.joblib", output=tmp_path / "bundle", trust=True, sample=X[:50], optimize=False)
    with pytest.raises(ArtifactError) as caught:
        export_model(str(bundle.path), tmp_path / "out", trust=True)
    assert caught.value.detail.startswith("cannot export doubling to ONNX: the ONNX conversion failed")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_an_unknown_format_is_refused_first(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        export_model("does-not-matter", tmp_path / "out", format="tflite")
    assert caught.value.detail == "unknown export format 'tflite'. Choose one of: onnx"
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_replaced_only_when_forced_and_only_by_a_whole_export(
    models: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(Conflict):
        export_model(str(models["variant"]), out)
    with pytest.raises(MissingInformation):  # fails after the check: the old folder stays as it was
        export_model(str(models["bare"]), out, trust=True, force=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    export_model(str(models["variant"]), out, force=True)
    assert sorted(p.name for p in out.iterdir()) == EXPORT_FILES
    assert leftovers(tmp_path) == []


def test_an_onnx_model_ships_its_own_file_and_quantizes_only_weights(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    (tmp_path / "forest.onnx").write_bytes(to_onnx(forest, X[:1].astype(np.float32)).SerializeToString())
    bundle = pack(tmp_path / "forest.onnx", output=tmp_path / "bundle", sample=X)
    result = export_model(str(bundle.path), tmp_path / "out")
    assert result.onnx.variant == "original" and not result.onnx.converted
    assert sha256_file(tmp_path / "out" / "model.onnx") == sha256_file(tmp_path / "forest.onnx")
    assert result.signature["model_classes"] == [0, 1, 2]
    with pytest.raises(ArtifactError) as caught:
        export_model(str(bundle.path), tmp_path / "int8", quantize=True)
    assert "nothing to quantize" in caught.value.detail and caught.value.hint == "Export it without --quantize"
    assert not (tmp_path / "int8").exists()


def test_a_manifest_with_an_invalid_name_is_refused(models: dict, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(models["variant"], tmp_path / "bundle"))
    bundle = Bundle.read(copy)
    bundle.manifest.name = "../../escaped"
    write_manifest_atomically(bundle)
    with pytest.raises(InvalidName) as caught:
        export_model(str(copy), tmp_path / "out")
    assert "'../../escaped', which is not a valid model name" in caught.value.detail
    assert not (tmp_path / "out").exists()


def test_an_onnx_network_is_quantized_and_checked_against_itself(tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    mlp = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0))
    mlp.fit(X, y)
    onnx = to_onnx(mlp, X[:1].astype(np.float32), options={id(mlp): {"zipmap": False}})
    (tmp_path / "mlp.onnx").write_bytes(onnx.SerializeToString())
    bundle = pack(tmp_path / "mlp.onnx", output=tmp_path / "bundle", sample=X)
    result = export_model(str(bundle.path), tmp_path / "out", quantize=True)
    assert result.onnx.variant == "onnx-int8" and result.onnx.converted
    assert result.onnx.facts["label_agreement"] >= 0.99 and 0 < result.onnx.facts["max_abs_diff"] < 0.1
    assert result.rows_checked > 0  # the int8 file, run by predictor.py and by servekit, agreed
    import onnx

    ops = {node.op_type for node in onnx.load_model(str(tmp_path / "out" / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops and "MatMul" not in ops  # int8 weights replaced the float ones
