"""The ONNX runtime: detection, description, multi-input graphs, options and errors."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import onnxruntime
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from servekit.errors import ArtifactError, CorruptArtifact, InvalidManifest
from servekit.formats import detect_format
from servekit.runtimes.onnx import OnnxRuntime
from tests.integration.cases.onnx_models import (
    diabetes_forest,
    iris_column_transformer,
    iris_forest,
    iris_species_zipmap,
    save_onnx,
)


def _loaded(path: Path, **options: object) -> OnnxRuntime:
    runtime = OnnxRuntime(path, options)
    runtime.load()
    return runtime


def _tiny_graph(path: Path, inputs: dict[str, list[object]], output_shape: list[object]) -> Path:
    """A hand-built graph: the sum of its float inputs (concatenated, then reduced over axis 1.. )."""
    import onnx
    from onnx import TensorProto, helper

    names = list(inputs)
    nodes = []
    source = names[0]
    if len(names) > 1:
        nodes.append(helper.make_node("Concat", names, ["joined"], axis=1))
        source = "joined"
    rank = len(next(iter(inputs.values())))
    axes = helper.make_tensor("axes", TensorProto.INT64, [rank - 1], list(range(1, rank)))
    nodes.append(helper.make_node("ReduceSum", [source, "axes"], ["total"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, output_shape)],
        initializer=[axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_detected_by_content_whatever_the_extension(tmp_path: Path) -> None:
    made = iris_forest(tmp_path)
    assert detect_format(made.path) == "onnx"
    for name in ("model.bin", "model.txt", "model.json"):  # .txt/.json belong to other formats
        renamed = tmp_path / name
        renamed.write_bytes(made.path.read_bytes())
        assert detect_format(renamed) == "onnx"


def test_other_formats_are_not_taken_for_onnx(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(X, y), tmp_path / "model.onnx")
    assert not OnnxRuntime.sniff(tmp_path / "model.onnx", (tmp_path / "model.onnx").read_bytes()[:64], None)
    assert detect_format(tmp_path / "model.onnx") == "joblib"
    for head in (b'{"learner":{', b"tree\nversion=v4\n", b"PK\x03\x04\x14\x00", b"\x80\x04\x95"):
        assert not OnnxRuntime.sniff(tmp_path / "x.onnx", head, None)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_corrupt(tmp_path: Path, keep: float) -> None:
    data = iris_forest(tmp_path).path.read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptArtifact, match=r"broken\.onnx cannot be loaded by onnxruntime") as info:
        _loaded(broken)
    assert "\n" not in str(info.value)


def test_garbage_with_onnx_extension_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(CorruptArtifact, match=r"model\.onnx has the extension of an onnx file"):
        detect_format(path)  # the extension alone is not enough
    with pytest.raises(CorruptArtifact, match=r"model\.onnx"):
        _loaded(path)


def test_describe_classifier_with_probability_tensor(tmp_path: Path) -> None:
    runtime = _loaded(iris_forest(tmp_path).path)
    description = runtime.describe()
    assert description.task == "classification"
    assert description.framework == "onnxruntime"
    assert description.framework_version == onnxruntime.__version__
    assert description.classes == [0, 1, 2]
    assert description.signature is not None
    assert description.signature.n_features == 4
    assert description.signature.array_dtype == "float32"
    assert description.signature.input_kind == "array"
    assert not description.signature.named
    assert description.extra["producer"] == "skl2onnx"


def test_zipmap_classes_and_probabilities(tmp_path: Path) -> None:
    made = iris_species_zipmap(tmp_path)
    runtime = _loaded(made.path)
    assert runtime.describe().classes == ["setosa", "versicolor", "virginica"]
    prediction = runtime.predict(made.inputs)
    assert prediction.outputs.tolist() == made.expected_outputs.tolist()
    assert prediction.probabilities.shape == (len(made.inputs), 3)
    assert prediction.probabilities.dtype == np.float64
    np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities, rtol=1e-6, atol=1e-9)


def test_describe_regressor(tmp_path: Path) -> None:
    made = diabetes_forest(tmp_path)
    runtime = _loaded(made.path)
    description = runtime.describe()
    assert description.task == "regression"
    assert description.classes is None
    assert description.signature.n_features == 10
    prediction = runtime.predict(made.inputs)
    assert prediction.outputs.shape == (len(made.inputs),)
    assert prediction.probabilities is None


def test_one_input_per_column_gives_a_named_frame_signature(tmp_path: Path) -> None:
    made = iris_column_transformer(tmp_path)
    runtime = _loaded(made.path)
    signature = runtime.describe().signature
    assert signature.input_kind == "frame"
    assert signature.named
    assert signature.names == ["sepal_length", "sepal_width", "petal_length", "petal_width", "size"]
    assert [f.dtype for f in signature.features] == ["float32"] * 4 + ["string"]
    records = made.inputs.to_dict(orient="records")
    prediction = runtime.predict(signature.batch(records))
    assert prediction.outputs.tolist() == made.expected_outputs.tolist()


def test_several_wide_inputs_are_refused_clearly(tmp_path: Path) -> None:
    path = _tiny_graph(tmp_path / "two.onnx", {"a": [None, 2], "b": [None, 2]}, [None])
    with pytest.raises(ArtifactError, match="ONNX models with 2 inputs"):
        _loaded(path)


def test_tensor_input_keeps_its_row_shape(tmp_path: Path) -> None:
    runtime = _loaded(_tiny_graph(tmp_path / "grid.onnx", {"grid": [None, 2, 3]}, [None]))
    signature = runtime.describe().signature
    assert signature.row_shape == (2, 3)
    assert signature.n_features == 6
    batch = signature.batch([[[1, 2, 3], [4, 5, 6]], [[0, 0, 0], [0, 0, 1]]])
    assert runtime.predict(batch).outputs.tolist() == [21.0, 1.0]


def test_symbolic_width_gives_no_signature(tmp_path: Path) -> None:
    runtime = _loaded(_tiny_graph(tmp_path / "free.onnx", {"x": [None, "width"]}, [None]))
    assert runtime.describe().signature is None


def test_manifest_classes_rename_the_labels(tmp_path: Path) -> None:
    made = iris_forest(tmp_path)
    runtime = OnnxRuntime(made.path)
    runtime.configure(None, ["setosa", "versicolor", "virginica"], "classification")
    runtime.load()
    prediction = runtime.predict(made.inputs)
    names = np.asarray(["setosa", "versicolor", "virginica"])
    assert prediction.outputs.tolist() == names[made.expected_outputs].tolist()
    assert list(prediction.classes) == names.tolist()


def test_configure_without_classes_uses_the_graph_classes(tmp_path: Path) -> None:
    made = iris_species_zipmap(tmp_path)
    runtime = OnnxRuntime(made.path)
    runtime.configure(None, None, None)
    runtime.load()
    assert list(runtime.predict(made.inputs).classes) == ["setosa", "versicolor", "virginica"]


def test_manifest_with_the_wrong_number_of_classes(tmp_path: Path) -> None:
    runtime = OnnxRuntime(iris_forest(tmp_path).path)
    runtime.configure(None, ["a", "b"], "classification")
    with pytest.raises(InvalidManifest, match="2 classes"):
        runtime.load()


def test_session_options(tmp_path: Path) -> None:
    path = iris_forest(tmp_path).path
    default = _loaded(path).session.get_session_options()
    assert default.intra_op_num_threads == 1
    assert default.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert _loaded(path, intra_op_threads=3).session.get_session_options().intra_op_num_threads == 3
    runtime = _loaded(path)
    assert runtime.session.get_providers() == ["CPUExecutionProvider"]
    runtime.unload()
    assert runtime.session is None


def test_converted_without_zipmap_option_by_default(tmp_path: Path) -> None:
    """`to_onnx(model, X)` with no options at all: the ZipMap path with integer classes."""
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    runtime = _loaded(save_onnx(model, X[:1], tmp_path / "plain.onnx", zipmap=True))
    prediction = runtime.predict(X[:10])
    assert runtime.describe().classes == [0, 1, 2]
    assert prediction.outputs.tolist() == model.predict(X[:10]).tolist()
    np.testing.assert_allclose(prediction.probabilities, model.predict_proba(X[:10]), rtol=1e-6, atol=1e-9)
