"""The standalone predictor shipped by `servekit export`: servekit's answers without servekit.

`servekit.edge.standalone` is the very file shipped as `predictor.py` (test_export checks
that), so it is imported here directly and run on real exported folders.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import servekit
from servekit.edge import export_model
from servekit.edge.standalone import Predictor, main
from servekit.packing import pack
from tests.support import IRIS_FEATURES, diabetes_model, iris_model

IRIS_NAMES = ["setosa", "versicolor", "virginica"]


def _iris_forest(folder: Path) -> tuple[Path, Any]:
    from sklearn.datasets import load_iris

    path, _ = iris_model(folder)
    return pack(path, output=folder / "b", features=IRIS_FEATURES, trust=True, sample=load_iris().data).path, None


def _onnx_with_renamed_classes(folder: Path) -> tuple[Path, Any]:
    """An ONNX graph labelling 0, 1, 2 in a bundle whose manifest names the classes."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    onnx = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    (folder / "iris.onnx").write_bytes(onnx.SerializeToString())
    return pack(folder / "iris.onnx", output=folder / "b", classes=IRIS_NAMES, sample=X).path, None


def _diabetes(folder: Path) -> tuple[Path, Any]:
    from sklearn.datasets import load_diabetes

    path, _ = diabetes_model(folder)
    return pack(path, output=folder / "b", trust=True, sample=load_diabetes().data).path, None


def _frame(folder: Path) -> tuple[Path, Any]:
    """A pipeline over named columns, one of them text: one ONNX input per column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = load_iris(as_frame=True)
    frame = data.data.iloc[:, :2].set_axis(["length", "width"], axis=1)
    frame["size"] = np.where(data.data.iloc[:, 2] > 3, "big", "small")
    labels = np.asarray(data.target_names)[data.target]
    columns = ColumnTransformer([("num", StandardScaler(), ["length", "width"]), ("cat", OneHotEncoder(), ["size"])])
    model = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(frame, labels)
    joblib.dump(model, folder / "frame.joblib")
    return pack(folder / "frame.joblib", output=folder / "b", trust=True, sample=frame).path, frame


MAKERS = {"iris": _iris_forest, "renamed": _onnx_with_renamed_classes, "diabetes": _diabetes, "frame": _frame}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Any]]:
    """name -> (bundle folder, export folder, the rows to predict on); read-only."""
    made = {}
    for name, make in MAKERS.items():
        folder = tmp_path_factory.mktemp(f"standalone-{name}")
        bundle, rows = make(folder)
        export_model(str(bundle), folder / "export")
        made[name] = (bundle, folder / "export", rows)
    return made


def rows_of(bundle: Path, rows: Any) -> Any:
    if rows is not None:
        return rows.iloc[:40].to_dict("records")
    from sklearn.datasets import load_diabetes, load_iris

    data = load_diabetes().data if "diabetes" in str(bundle) else load_iris().data
    return data[::4].tolist()


def assert_same_records(got: list[dict], want: list[dict], tolerance: float = 1e-6) -> None:
    assert len(got) == len(want)
    for have, expected in zip(got, want, strict=True):
        assert have.keys() == expected.keys()
        if "probabilities" in expected:
            assert have["prediction"] == expected["prediction"]
            assert list(have["probabilities"]) == list(expected["probabilities"])
            assert have["probabilities"] == pytest.approx(expected["probabilities"], abs=tolerance)
            assert have["confidence"] == pytest.approx(expected["confidence"], abs=tolerance)
        else:
            assert have["prediction"] == pytest.approx(expected["prediction"], rel=tolerance)


@pytest.mark.parametrize("name", list(MAKERS))
def test_the_standalone_predictor_answers_as_servekit_does(exported: dict, name: str) -> None:
    bundle, folder, rows = exported[name]
    rows = rows_of(bundle, rows)
    with servekit.load(bundle) as served:  # the bundle's ONNX variant, or its own ONNX file
        want = served.predict(rows).to_records()
    got = Predictor(folder).predict(rows)
    assert_same_records(got, want)
    if name == "renamed":
        assert {r["prediction"] for r in got} <= set(IRIS_NAMES) and list(got[0]["probabilities"]) == IRIS_NAMES
    if name == "diabetes":
        assert all(set(r) == {"prediction"} and isinstance(r["prediction"], float) for r in got)


def test_every_way_to_give_rows_gives_the_same_answer(exported: dict) -> None:
    _, folder, _ = exported["iris"]
    model = Predictor(folder / "model.onnx")  # the file works as well as the folder
    row = [5.9, 3.0, 5.1, 1.8]
    expected = model.predict([row])
    named = dict(zip(reversed(IRIS_FEATURES), reversed(row), strict=True))  # by name, in any order
    for given in (row, np.asarray(row), np.asarray([row]), [np.asarray(row)], named, [named], [[5.9, 3, 5.1, 1.8]]):
        assert model.predict(given) == expected
    assert expected[0]["prediction"] == "virginica"
    assert model.predict([row, [5.1, 3.5, 1.4, 0.2]])[1]["prediction"] == "setosa"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [1.0, 2.0, 3.0],
            "row 0 has 3 values; the model expects 4 (sepal_length, sepal_width, petal_length, petal_width)",
        ),
        ([[1, 2, 3, 4], [1, 2]], "row 1 has 2 values; the model expects 4"),
        (np.zeros((2, 3)), "each row must have shape [4], got [3]"),
        ([[1, 2, 3, float("nan")]], "row 0, feature 'petal_width': NaN and Infinity are not accepted by this model"),
        ([[1, float("inf"), 3, 4]], "row 0, feature 'sepal_width': NaN and Infinity are not accepted"),
        ([["1", 2, 3, 4]], "row 0, feature 'sepal_length': expected a number, got string '1'"),
        ([[True, 2, 3, 4]], "row 0, feature 'sepal_length': expected a number, got boolean true"),
        ([[1, 2, 3, None]], "row 0, feature 'petal_width': expected a number, got null"),
        ([{"sepal_length": 1, "sepal_width": 2, "petal_length": 3}], "row 0: missing feature(s) petal_width"),
        ([{**dict.fromkeys(IRIS_FEATURES, 1.0), "colour": 1}], "row 0: unknown feature(s) colour; expected"),
        ([], "there are no rows"),
        ("1,2,3,4", "expected a row or a list of rows, got string '1,2,3,4'"),
        (7, "expected a row or a list of rows, got int"),
        ([[[1, 2], 3]], "row 0 has 3 values"),
    ],
)
def test_bad_rows_raise_a_value_error_that_says_where(exported: dict, rows: Any, message: str) -> None:
    model = Predictor(exported["iris"][1])
    with pytest.raises(ValueError) as caught:
        model.predict(rows)
    assert message in str(caught.value)


def test_text_columns_take_strings_only(exported: dict) -> None:
    model = Predictor(exported["frame"][1])
    assert model.predict([[5.0, 3.0, "big"]])[0]["prediction"] in IRIS_NAMES
    assert model.predict({"size": "small", "width": 3.0, "length": 5.0}) == model.predict([5.0, 3.0, "small"])
    with pytest.raises(ValueError, match="row 0, feature 'size': expected a string, got int"):
        model.predict([[5.0, 3.0, 4]])


def test_the_command_line_prints_json_and_exits_2_with_one_line(
    exported: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = exported["iris"][1]
    rows = [[5.9, 3.0, 5.1, 1.8], [5.1, 3.5, 1.4, 0.2]]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "instances.json").write_text(json.dumps({"instances": rows}))
    for file in ("rows.json", "instances.json"):
        assert main([str(tmp_path / file), "--model", str(folder)]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed == {"predictions": Predictor(folder).predict(rows)}
    (tmp_path / "bad.json").write_text("[[1, 2]]")
    (tmp_path / "broken.json").write_text("[[1, 2")
    for file, message in (
        ("bad.json", "error: row 0 has 2 values; the model expects 4"),
        ("broken.json", "error: Expecting"),
        ("missing.json", "error: [Errno 2] No such file or directory"),
    ):
        assert main([str(tmp_path / file), "--model", str(folder)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(message) and captured.err.count("\n") == 1


def test_it_imports_only_onnxruntime_numpy_and_the_standard_library() -> None:
    source = Path(servekit.__file__).parent / "edge" / "standalone.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert "numpy" in imported and "onnxruntime" in imported
    assert imported - {"numpy", "onnxruntime"} <= set(sys.stdlib_module_names) | {"__future__"}
