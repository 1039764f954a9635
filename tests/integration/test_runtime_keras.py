"""The Keras runtimes on real files: `.keras` archives and legacy `.h5` files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from servekit.errors import CorruptArtifact, UntrustedArtifact  # noqa: E402
from servekit.formats import detect_format, read_signature_bytes  # noqa: E402
from servekit.runtimes import all_runtimes, get_runtime  # noqa: E402
from servekit.runtimes.keras import KerasRuntime  # noqa: E402
from servekit.signature import Signature  # noqa: E402
from tests.integration.cases import MadeModel, ModelCase  # noqa: E402
from tests.integration.cases.keras_models import CASES, classifier_outputs, mlp  # noqa: E402

KERAS_FORMATS = {"keras", "keras-h5"}


@pytest.fixture(scope="module")
def iris_rows() -> np.ndarray:
    return load_iris().data[::10].astype("float32")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keras files in every shape this suite needs, and other formats' files to tell apart."""
    tmp = tmp_path_factory.mktemp("keras")
    X, y = load_iris(return_X_y=True)
    paths = {
        "keras": tmp / "iris.keras",
        "keras_zip": tmp / "iris.zip",
        "h5": tmp / "iris.h5",
        "weights": tmp / "iris.weights.h5",
        "logits": tmp / "logits.keras",
        "lambda_keras": tmp / "lambda.keras",
        "lambda_h5": tmp / "lambda.h5",
        "grid": tmp / "grid.keras",
        "torchscript": tmp / "net.pt",
        "torch": tmp / "weights.pt",
        "skops": tmp / "model.skops",
        "joblib": tmp / "model.joblib",
    }
    model = mlp(4, 3, "softmax", "sparse_categorical_crossentropy")
    model.save(paths["keras"])
    model.save(paths["h5"])
    model.save_weights(paths["weights"])
    paths["keras_zip"].write_bytes(paths["keras"].read_bytes())
    mlp(4, 3, None, "mse").save(paths["logits"])
    scaled = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda x: x / 10), keras.layers.Dense(3, activation="softmax")]
    )
    scaled.save(paths["lambda_keras"])
    scaled.save(paths["lambda_h5"])
    grid = keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    grid.save(paths["grid"])
    net = torch.nn.Linear(4, 3)
    torch.jit.save(torch.jit.script(net), paths["torchscript"])
    torch.save(net.state_dict(), paths["torch"])
    import skops.io

    sklearn_model = LogisticRegression(max_iter=300).fit(X, y)
    skops.io.dump(sklearn_model, paths["skops"])
    joblib.dump(sklearn_model, paths["joblib"])
    return paths


def claimed_by(path: Path) -> list[str]:
    """Every format whose sniff accepts the file: detection is precise when there is one."""
    head, members = read_signature_bytes(path)
    return sorted(name for name, rt in all_runtimes().items() if rt.sniff(path, head, members))


def loaded(path: Path, options: dict[str, Any] | None = None, **manifest: Any):
    rt = get_runtime(detect_format(path))(path, options)
    rt.configure(manifest.get("signature"), manifest.get("classes"), manifest.get("task"))
    rt.load()
    return rt


# -- the conformance cases, straight through the runtime -------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_predicts_like_the_original(case: ModelCase, tmp_path: Path) -> None:
    made: MadeModel = case.make(tmp_path)
    assert detect_format(made.path) == case.format
    rt = get_runtime(case.format)(made.path)
    assert rt.needs_trust() is False
    rt.load()
    description = rt.describe()
    assert description.task == case.task
    assert description.classes == made.classes
    batch = description.signature.batch_from_array(np.asarray(made.inputs))
    prediction = rt.predict(batch)
    if case.task == "classification":
        assert prediction.outputs.tolist() == made.expected_outputs.tolist()
        np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities, rtol=1e-6)
        assert list(prediction.classes) == made.classes
    else:
        np.testing.assert_allclose(prediction.outputs, made.expected_outputs, rtol=1e-6)
    # Calling the model directly gives what the loaded model's own (slower) predict gives.
    if case.task == "classification":
        _, reference = classifier_outputs(rt.model, batch)
        np.testing.assert_allclose(prediction.probabilities, reference, rtol=1e-6)
    else:
        np.testing.assert_allclose(prediction.outputs, rt.model.predict(batch, verbose=0)[:, 0], rtol=1e-6)
    one = rt.predict(batch[:1])
    assert len(one) == 1
    np.testing.assert_allclose(
        np.asarray(one.outputs, dtype="float64")[0], np.asarray(prediction.outputs)[0], rtol=1e-5
    )


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "fmt"),
    [("keras", "keras"), ("keras_zip", "keras"), ("h5", "keras-h5"), ("lambda_keras", "keras")],
)
def test_keras_files_are_claimed_by_exactly_their_format(files: dict[str, Path], key: str, fmt: str) -> None:
    assert claimed_by(files[key]) == [fmt]
    assert detect_format(files[key]) == fmt


@pytest.mark.parametrize(
    ("key", "fmt"), [("torchscript", "torchscript"), ("torch", "torch"), ("skops", "skops"), ("joblib", "joblib")]
)
def test_other_files_are_not_claimed_by_keras(files: dict[str, Path], key: str, fmt: str) -> None:
    assert not set(claimed_by(files[key])) & KERAS_FORMATS
    assert detect_format(files[key]) == fmt


# -- describe --------------------------------------------------------------------------------
def test_describe_a_softmax_classifier(files: dict[str, Path]) -> None:
    description = loaded(files["keras"]).describe()
    assert description.task == "classification"
    assert description.classes == [0, 1, 2]
    assert description.framework == "keras"
    assert description.framework_version == keras.__version__
    assert description.signature == Signature.positional(4, array_dtype="float32")
    assert description.extra["backend"] == "torch"


def test_describe_keeps_manifest_classes(files: dict[str, Path], iris_rows: np.ndarray) -> None:
    names = ["setosa", "versicolor", "virginica"]
    rt = loaded(files["h5"], classes=names, task="classification")
    assert rt.describe().classes == names
    prediction = rt.predict(iris_rows)
    assert set(prediction.outputs.tolist()) <= set(names)
    assert prediction.outputs.tolist() == np.asarray(names)[prediction.probabilities.argmax(axis=1)].tolist()


def test_describe_a_linear_output_as_regression(files: dict[str, Path], iris_rows: np.ndarray) -> None:
    rt = loaded(files["logits"])
    description = rt.describe()
    assert description.task == "regression"
    assert description.classes is None
    prediction = rt.predict(iris_rows)
    assert prediction.outputs.shape == (len(iris_rows), 3)
    assert prediction.probabilities is None


def test_tensor_rows_give_a_row_shape(files: dict[str, Path]) -> None:
    rt = loaded(files["grid"])
    signature = rt.describe().signature
    assert signature.row_shape == (2, 3)
    assert signature.n_features == 6
    rows = np.random.default_rng(0).normal(size=(4, 2, 3))
    prediction = rt.predict(signature.batch_from_array(rows))
    np.testing.assert_allclose(prediction.probabilities, rt.model.predict(rows.astype("float32"), verbose=0), rtol=1e-6)


def test_logits_of_a_declared_classifier_become_probabilities(files: dict[str, Path], iris_rows: np.ndarray) -> None:
    rt = loaded(files["logits"], task="classification", classes=["a", "b", "c"])
    logits = rt.model.predict(iris_rows, verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    prediction = rt.predict(iris_rows)
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-5)
    assert prediction.outputs.tolist() == np.asarray(["a", "b", "c"])[logits.argmax(axis=1)].tolist()


# -- safety and broken files -----------------------------------------------------------------
@pytest.mark.parametrize("key", ["lambda_keras", "lambda_h5"])
def test_lambda_layer_needs_trust_and_loads_once_trusted(files: dict[str, Path], key: str, iris_rows) -> None:
    rt = get_runtime(detect_format(files[key]))(files[key])
    assert rt.needs_trust() is True
    rt.load()  # the caller vouched for it: loading with safe_mode=False
    np.testing.assert_allclose(rt.predict(iris_rows).probabilities, rt.model.predict(iris_rows, verbose=0), rtol=1e-6)


def test_plain_models_need_no_trust(files: dict[str, Path]) -> None:
    assert get_runtime("keras")(files["keras"]).needs_trust() is False
    assert get_runtime("keras-h5")(files["h5"]).needs_trust() is False


def test_unsafe_content_found_only_by_keras_is_refused(files: dict[str, Path]) -> None:
    class Unaware(KerasRuntime):
        """A runtime whose own check misses the lambda: keras's safe mode still refuses it."""

        def needs_trust(self) -> bool:
            return False

    with pytest.raises(UntrustedArtifact, match="Lambda") as info:
        Unaware(files["lambda_keras"]).load()
    assert "--trust" in str(info.value)


def test_weights_only_h5_is_reported(files: dict[str, Path]) -> None:
    assert detect_format(files["weights"]) == "keras-h5"
    with pytest.raises(CorruptArtifact, match="without a Keras model config") as info:
        get_runtime("keras-h5")(files["weights"]).load()
    assert "save_weights" in str(info.value)


def test_corrupt_keras_archive_is_reported(files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(files["keras"]) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, b"{not json" if info.filename == "config.json" else src.read(info))
    assert detect_format(broken) == "keras"
    with pytest.raises(CorruptArtifact, match=r"broken\.keras"):
        get_runtime("keras")(broken).load()


def test_truncated_h5_is_reported(files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.h5"
    broken.write_bytes(files["h5"].read_bytes()[:2000])
    assert detect_format(broken) == "keras-h5"
    with pytest.raises(CorruptArtifact, match=r"broken\.h5"):
        get_runtime("keras-h5")(broken).load()


def test_unload_frees_the_model(files: dict[str, Path], iris_rows: np.ndarray) -> None:
    rt = loaded(files["keras"])
    rt.unload()
    assert rt.model is None
    rt.load()
    assert len(rt.predict(iris_rows)) == len(iris_rows)
