"""The XGBoost runtime: detection, description, objectives, options and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_iris

from servekit.errors import CorruptArtifact, InvalidManifest
from servekit.formats import detect_format
from servekit.runtimes.xgboost import XGBoostRuntime
from tests.integration.cases.xgboost_models import cancer_classifier_json, diabetes_regressor_ubj, iris_classifier_ubj


def _loaded(path: Path, classes: list[object] | None = None, **options: object) -> XGBoostRuntime:
    runtime = XGBoostRuntime(path, options)
    runtime.configure(None, classes, None)
    runtime.load()
    return runtime


def _train(tmp_path: Path, name: str, objective: str, X: np.ndarray, y: np.ndarray, **params: object) -> Path:
    params = {"objective": objective, "max_depth": 2, "nthread": 1, "seed": 0, **params}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=4)
    booster.save_model(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("make", [iris_classifier_ubj, cancer_classifier_json])
def test_detected_by_content_whatever_the_extension(tmp_path: Path, make) -> None:
    made = make(tmp_path)
    assert detect_format(made.path) == "xgboost"
    for name in ("model.bin", "model.txt", "model.onnx"):  # .txt/.onnx belong to other formats
        renamed = tmp_path / name
        renamed.write_bytes(made.path.read_bytes())
        assert detect_format(renamed) == "xgboost"


def test_other_json_and_other_formats_are_not_taken_for_xgboost(tmp_path: Path) -> None:
    for head in (b'{"name": "config"}', b"tree\nversion=v4\n", b"PK\x03\x04", b"\x80\x04\x95", b"\x08\x08\x12\x07"):
        assert not XGBoostRuntime.sniff(tmp_path / "m.json", head, None)
    other = tmp_path / "settings.json"
    other.write_text('{"threshold": 0.5, "learner": "not this one"}')
    assert not XGBoostRuntime.sniff(other, other.read_bytes()[:64], None)
    with pytest.raises(CorruptArtifact, match=r"settings\.json cannot be read by XGBoost"):
        _loaded(other)


@pytest.mark.parametrize("make", [iris_classifier_ubj, cancer_classifier_json])
def test_truncated_file_is_corrupt_with_a_one_line_message(tmp_path: Path, make) -> None:
    data = make(tmp_path).path.read_bytes()
    broken = tmp_path / "broken.model"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifact, match=r"broken\.model cannot be read by XGBoost") as info:
        _loaded(broken)
    message = str(info.value)
    assert "\n" not in message
    assert "Stack trace" not in message
    assert ".cc:" not in message


def test_describe_multiclass(tmp_path: Path) -> None:
    runtime = _loaded(iris_classifier_ubj(tmp_path).path)
    description = runtime.describe()
    assert description.task == "classification"
    assert description.framework == "xgboost"
    assert description.framework_version == xgb.__version__
    assert description.classes == [0, 1, 2]
    assert description.signature.n_features == 4
    assert not description.signature.named
    assert description.extra["objective"] == "multi:softprob"
    assert description.extra["sklearn_wrapper"] is True


def test_describe_binary_and_regressor(tmp_path: Path) -> None:
    binary = _loaded(cancer_classifier_json(tmp_path).path).describe()
    assert (binary.task, binary.classes, binary.signature.n_features) == ("classification", [0, 1], 30)
    regressor = _loaded(diabetes_regressor_ubj(tmp_path).path).describe()
    assert (regressor.task, regressor.classes, regressor.signature.n_features) == ("regression", None, 10)
    assert regressor.extra["objective"].startswith("reg:")


def test_named_features_from_a_dataframe(tmp_path: Path) -> None:
    data = load_iris(as_frame=True)
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(data.data, data.target)
    model.save_model(tmp_path / "named.json")
    runtime = _loaded(tmp_path / "named.json")
    signature = runtime.describe().signature
    assert signature.named
    assert signature.input_kind == "array"
    assert signature.names == list(data.data.columns)
    record = data.data.iloc[0].to_dict()
    prediction = runtime.predict(signature.batch(record))
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(data.data.iloc[:1]), rtol=1e-6)


def test_binary_probabilities_are_two_columns(tmp_path: Path) -> None:
    made = cancer_classifier_json(tmp_path)
    prediction = _loaded(made.path).predict(made.inputs)
    assert prediction.probabilities.shape == (len(made.inputs), 2)
    assert prediction.probabilities.dtype == np.float64
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_softmax_objective_gives_the_softprob_probabilities(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    softmax = _loaded(_train(tmp_path, "softmax.ubj", "multi:softmax", X, y, num_class=3))
    softprob = _loaded(_train(tmp_path, "softprob.ubj", "multi:softprob", X, y, num_class=3))
    assert softmax.describe().task == "classification"
    one, other = softmax.predict(X[::5]), softprob.predict(X[::5])
    np.testing.assert_allclose(one.probabilities, other.probabilities, rtol=1e-5)
    booster = xgb.Booster(model_file=tmp_path / "softmax.ubj")
    assert one.outputs.tolist() == booster.predict(xgb.DMatrix(X[::5])).astype(int).tolist()


def test_logitraw_objective_gives_probabilities(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    # The same start (margin 0) for both, so both grow the same trees.
    raw = _loaded(_train(tmp_path, "raw.json", "binary:logitraw", X, y, base_score=0.0))
    logistic = _loaded(_train(tmp_path, "logistic.json", "binary:logistic", X, y, base_score=0.5))
    one, other = raw.predict(X[::20]), logistic.predict(X[::20])
    np.testing.assert_allclose(one.probabilities, other.probabilities, rtol=1e-5, atol=1e-7)
    assert one.outputs.tolist() == other.outputs.tolist()


def test_early_stopped_sklearn_model_predicts_with_its_best_iteration(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model = xgb.XGBClassifier(n_estimators=40, max_depth=2, n_jobs=1, early_stopping_rounds=2, learning_rate=0.9)
    model.fit(X[:300], y[:300], eval_set=[(X[300:], y[300:])], verbose=False)
    assert model.best_iteration < 39  # else the test proves nothing
    model.save_model(tmp_path / "stopped.ubj")
    prediction = _loaded(tmp_path / "stopped.ubj").predict(X)
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_manifest_classes_name_the_labels(tmp_path: Path) -> None:
    made = iris_classifier_ubj(tmp_path)
    names = ["setosa", "versicolor", "virginica"]
    runtime = _loaded(made.path, classes=names)
    prediction = runtime.predict(made.inputs)
    assert prediction.outputs.tolist() == np.asarray(names)[made.expected_outputs].tolist()
    assert list(prediction.classes) == names
    assert runtime.describe().classes == names


def test_manifest_with_the_wrong_number_of_classes(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="4 classes"):
        _loaded(iris_classifier_ubj(tmp_path).path, classes=[0, 1, 2, 3])


def test_thread_option_and_unload(tmp_path: Path) -> None:
    made = diabetes_regressor_ubj(tmp_path)
    runtime = _loaded(made.path, intra_op_threads=2)
    assert '"nthread":"2"' in runtime.booster.save_config().replace(" ", "")
    np.testing.assert_allclose(runtime.predict(made.inputs).outputs, made.expected_outputs, rtol=1e-6)
    runtime.unload()
    assert runtime.booster is None
