"""The LightGBM runtime: detection, description, objectives, options and errors.

LightGBM's own parser aborts or segfaults on a truncated text model, so the truncation tests
would crash the test process if the runtime's structure check let such a file through.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.datasets import load_iris

from servekit.errors import CorruptArtifact, InvalidManifest
from servekit.formats import detect_format
from servekit.runtimes.lightgbm import LightGBMRuntime
from tests.integration.cases.lightgbm_models import (
    cancer_classifier,
    cancer_train_named,
    diabetes_regressor,
    iris_classifier,
)


def _loaded(path: Path, classes: list[object] | None = None, **options: object) -> LightGBMRuntime:
    runtime = LightGBMRuntime(path, options)
    runtime.configure(None, classes, None)
    runtime.load()
    return runtime


def test_detected_by_content_whatever_the_extension(tmp_path: Path) -> None:
    made = iris_classifier(tmp_path)
    assert detect_format(made.path) == "lightgbm"
    for name in ("model.lgb", "model.json", "model.onnx"):  # .json/.onnx belong to other formats
        renamed = tmp_path / name
        renamed.write_bytes(made.path.read_bytes())
        assert detect_format(renamed) == "lightgbm"


def test_other_files_are_not_taken_for_lightgbm(tmp_path: Path) -> None:
    for head in (b"tree\n", b"trees\nversion=v4", b'{"learner":{', b"PK\x03\x04", b"\x80\x04\x95", b"\x08\x08\x12"):
        assert not LightGBMRuntime.sniff(tmp_path / "m.txt", head, None)
    notes = tmp_path / "notes.txt"
    notes.write_text("a plain text file\n")
    assert not LightGBMRuntime.sniff(notes, notes.read_bytes(), None)
    with pytest.raises(CorruptArtifact, match=r"notes\.txt is not a complete LightGBM text model"):
        _loaded(notes)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda text: text.index("Tree=0") + 40, id="in-the-first-tree"),
        pytest.param(lambda text: len(text) // 2, id="half"),
        pytest.param(lambda text: text.index("end of trees") - 3, id="before-end-of-trees"),
        pytest.param(lambda text: text.index("parameters:") + 200, id="in-the-parameters"),
        pytest.param(lambda text: text.index("feature_names=") + 5, id="in-the-header"),
    ],
)
def test_truncated_file_is_corrupt_not_a_crash(tmp_path: Path, cut) -> None:
    data = iris_classifier(tmp_path).path.read_bytes()
    broken = tmp_path / "broken.txt"
    broken.write_bytes(data[: cut(data.decode())])
    with pytest.raises(CorruptArtifact, match=r"broken\.txt") as info:
        _loaded(broken)
    assert "\n" not in str(info.value)


def test_edited_tree_sizes_are_caught(tmp_path: Path) -> None:
    text = iris_classifier(tmp_path).path.read_text()
    edited = tmp_path / "edited.txt"
    edited.write_text(text.replace("Tree=1\n", "Tree=1\nextra=1\n", 1))
    with pytest.raises(CorruptArtifact, match="do not have the sizes its header records"):
        _loaded(edited)


def test_describe_multiclass_unnamed(tmp_path: Path) -> None:
    description = _loaded(iris_classifier(tmp_path).path).describe()
    assert description.task == "classification"
    assert description.framework == "lightgbm"
    assert description.framework_version == lgb.__version__
    assert description.classes == [0, 1, 2]
    assert description.extra["objective"] == "multiclass"
    signature = description.signature
    assert signature.n_features == 4
    assert not signature.named
    assert signature.names == ["x0", "x1", "x2", "x3"]  # not LightGBM's invented Column_0..


def test_describe_binary_and_regressor(tmp_path: Path) -> None:
    binary = _loaded(cancer_classifier(tmp_path).path).describe()
    assert (binary.task, binary.classes, binary.extra["objective"]) == ("classification", [0, 1], "binary")
    regressor = _loaded(diabetes_regressor(tmp_path).path).describe()
    assert (regressor.task, regressor.classes, regressor.signature.n_features) == ("regression", None, 10)


def test_named_features(tmp_path: Path) -> None:
    made = cancer_train_named(tmp_path)
    runtime = _loaded(made.path)
    signature = runtime.describe().signature
    assert signature.named
    assert signature.input_kind == "array"
    assert signature.names[:2] == ["mean_radius", "mean_texture"]
    record = dict(zip(signature.names, made.inputs[0].tolist(), strict=True))
    prediction = runtime.predict(signature.batch(record))
    np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities[:1], rtol=1e-6)


def test_binary_probabilities_are_two_columns(tmp_path: Path) -> None:
    made = cancer_classifier(tmp_path)
    prediction = _loaded(made.path).predict(made.inputs)
    assert prediction.probabilities.shape == (len(made.inputs), 2)
    assert prediction.probabilities.dtype == np.float64
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0)


def test_string_labels_come_from_the_manifest(tmp_path: Path) -> None:
    """An LGBMClassifier keeps its labels in Python; the file knows 0..k-1; the manifest names them."""
    data = load_iris()
    labels = np.asarray(data.target_names)[data.target]
    model = lgb.LGBMClassifier(n_estimators=4, num_leaves=5, n_jobs=1, verbose=-1).fit(data.data, labels)
    model.booster_.save_model(tmp_path / "species.txt")
    runtime = _loaded(tmp_path / "species.txt", classes=model.classes_.tolist())
    prediction = runtime.predict(data.data[::10])
    assert prediction.outputs.tolist() == model.predict(data.data[::10]).tolist()
    assert list(prediction.classes) == ["setosa", "versicolor", "virginica"]
    assert runtime.describe().classes == ["setosa", "versicolor", "virginica"]


def test_one_vs_all_objective(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    params = {"objective": "multiclassova", "num_class": 3, "num_leaves": 5, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=4)
    booster.save_model(tmp_path / "ova.txt")
    runtime = _loaded(tmp_path / "ova.txt")
    assert runtime.describe().classes == [0, 1, 2]
    prediction = runtime.predict(X[::10])
    np.testing.assert_allclose(prediction.probabilities, booster.predict(X[::10]), rtol=1e-6)
    assert prediction.outputs.tolist() == booster.predict(X[::10]).argmax(axis=1).tolist()


def test_manifest_with_the_wrong_number_of_classes(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="2 classes"):
        _loaded(iris_classifier(tmp_path).path, classes=["a", "b"])


def test_thread_option_and_unload(tmp_path: Path) -> None:
    made = diabetes_regressor(tmp_path)
    runtime = _loaded(made.path, intra_op_threads=1)
    assert runtime.info()["objective"] == "regression"
    np.testing.assert_allclose(runtime.predict(made.inputs).outputs, made.expected_outputs, rtol=1e-6)
    runtime.unload()
    assert runtime.booster is None
