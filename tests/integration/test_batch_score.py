"""`servekit.score` with the local engine: real models, real files, every format in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import servekit
from servekit.batch import score
from servekit.errors import Conflict, InvalidInput, PredictionFailed, UntrustedArtifact
from servekit.packing import pack
from tests.support import IRIS_FEATURES, iris_model

CLASSES = ["setosa", "versicolor", "virginica"]
PROBABILITIES = [f"probability_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only models: an iris forest (file and bundle), the same with its ONNX variant."""
    folder = tmp_path_factory.mktemp("models")
    path, _ = iris_model(folder)
    frame = pd.DataFrame(load_iris().data, columns=IRIS_FEATURES)
    plain = pack(path, output=folder / "iris.bundle", features=IRIS_FEATURES, trust=True, optimize=False)
    onnx = pack(path, output=folder / "onnx.bundle", name="iris", features=IRIS_FEATURES, sample=frame, trust=True)
    assert "onnx" in onnx.manifest.variants, onnx.optimization
    return {"file": path, "bundle": plain.path, "onnx": onnx.path}


def run(model: Path | str, source: Path | str, output: Path, **options: Any) -> Any:
    """`score` for the test's own pickles (the bundle folders are not from the registry)."""
    return score(model, source, output, **{"trust": True, **options})


def iris_input(rows: int = 150) -> pd.DataFrame:
    data = load_iris().data
    frame = pd.DataFrame(np.resize(data, (rows, 4)), columns=IRIS_FEATURES)
    frame.insert(0, "id", np.arange(1000, 1000 + rows))
    frame["note"] = [f"n{i}" for i in range(rows)]  # an extra column, ignored
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")


def expected(bundle: Path, frame: pd.DataFrame, **load: Any) -> pd.DataFrame:
    """What the in-process Predictor (the server's predict path) says about these rows."""
    with servekit.load(bundle, trust=True, **load) as predictor:
        prediction = predictor.predict(frame[IRIS_FEATURES])
    out = pd.DataFrame({"id": frame["id"].to_numpy(), "prediction": prediction.outputs})
    for index, name in enumerate(PROBABILITIES):
        out[name] = prediction.probabilities[:, index]
    return out


def test_csv_to_parquet_row_for_row_with_the_predictor(tmp_path: Path, models: dict[str, Path]) -> None:
    frame = iris_input(500)
    summary = run(models["bundle"], write(frame, tmp_path / "in.csv"), tmp_path / "out.parquet", chunk_size=60)
    assert summary.rows_read == summary.rows_scored == 500 and summary.rows_failed == 0
    assert summary.chunks >= 7 and summary.errors is None and summary.runtime == "joblib"
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["id", "prediction", *PROBABILITIES]
    pd.testing.assert_frame_equal(out, expected(models["bundle"], frame), check_dtype=False)
    assert not (tmp_path / "out.parquet.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.parquet"]


@pytest.mark.parametrize("source", ["csv", "tsv", "parquet", "jsonl"])
@pytest.mark.parametrize("target", ["csv", "tsv", "parquet", "jsonl"])
def test_every_format_in_and_out(tmp_path: Path, models: dict[str, Path], source: str, target: str) -> None:
    frame = iris_input(150)
    summary = run(models["bundle"], write(frame, tmp_path / f"in.{source}"), tmp_path / f"out.{target}")
    assert summary.rows_scored == 150
    out = read(tmp_path / f"out.{target}")
    pd.testing.assert_frame_equal(out, expected(models["bundle"], frame), check_dtype=False, atol=1e-12)


def test_a_folder_or_a_glob_of_files_in_order(tmp_path: Path, models: dict[str, Path]) -> None:
    frame = iris_input(300)
    folder = tmp_path / "parts"
    folder.mkdir()
    write(frame.iloc[:100], folder / "a.csv")
    write(frame.iloc[100:250], folder / "b.parquet")
    write(frame.iloc[250:], folder / "c.jsonl")
    (folder / "_SUCCESS").write_text("")
    run(models["bundle"], folder, tmp_path / "folder.parquet", chunk_size=40)
    run(models["bundle"], str(folder / "*.*"), tmp_path / "glob.parquet", chunk_size=40)
    want = expected(models["bundle"], frame)
    for name in ("folder.parquet", "glob.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / name), want, check_dtype=False)


def test_bad_rows_go_to_the_errors_file_and_the_rest_is_scored(tmp_path: Path, models: dict[str, Path]) -> None:
    source = tmp_path / "in.csv"
    write(iris_input(100), source)
    with source.open("a") as handle:  # rows 100-103
        handle.write("2000,5.1,,1.4,0.2,x\n2001,5.1,wide,1.4,inf,x\n2002,5.1,3.5\n2003,5.0,3.0,1.5,0.2,x\n")
    summary = run(models["bundle"], source, tmp_path / "out.csv", chunk_size=30, keep=["note"])
    assert (summary.rows_read, summary.rows_scored, summary.rows_failed, summary.problems) == (104, 101, 3, 4)
    assert summary.errors == tmp_path / "out.csv.errors.csv"
    errors = pd.read_csv(summary.errors, keep_default_na=False, dtype=str)
    assert list(errors.columns) == ["row", "id", "file", "column", "reason"]
    assert errors[["row", "id", "column", "reason"]].values.tolist() == [
        ["100", "2000", "sepal_width", "missing value (null) is not accepted by this model"],
        ["101", "2001", "sepal_width", "expected a number, got string 'wide'"],
        ["101", "2001", "petal_width", "NaN and Infinity are not accepted by this model"],
        ["102", "", "", "the row has 3 fields; the header has 6"],
    ]
    assert set(errors["file"]) == {str(source)}
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "note", "prediction", *PROBABILITIES]
    assert out["id"].tolist() == [*range(1000, 1100), 2003]
    elsewhere = tmp_path / "reports" / "bad.csv"
    again = run(models["bundle"], source, tmp_path / "again.csv", chunk_size=30, errors=elsewhere)
    assert again.errors == elsewhere and elsewhere.read_text() == summary.errors.read_text()


def test_fail_fast_stops_at_the_first_bad_row(tmp_path: Path, models: dict[str, Path]) -> None:
    frame = iris_input(100)
    frame.loc[70, "petal_length"] = np.nan
    with pytest.raises(InvalidInput, match=r"row 70 of the input \(in.parquet\), column 'petal_length': missing"):
        run(models["bundle"], write(frame, tmp_path / "in.parquet"), tmp_path / "out.csv", fail_fast=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_text_features_and_rows_the_model_fails_on(tmp_path: Path) -> None:
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame.columns = IRIS_FEATURES
    frame["color"] = np.asarray(["red", "green", "blue"])[np.arange(150) % 3]
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="error"), ["color"])], remainder="passthrough")
    model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(frame, data.target)
    joblib.dump(model, tmp_path / "tabular.joblib")
    rows = frame.copy()
    rows.loc[[7, 90], "color"] = "purple"  # unknown to the encoder: the model raises on these rows
    summary = run(tmp_path / "tabular.joblib", write(rows, tmp_path / "in.csv"), tmp_path / "out.parquet")
    assert summary.rows_scored == 148 and summary.rows_failed == 2
    errors = pd.read_csv(summary.errors)
    assert errors["row"].tolist() == [7, 90]
    assert errors["reason"].str.startswith("the model raised ValueError: Found unknown categories").all()
    good = rows.drop(index=[7, 90])
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_array_equal(out["prediction"], model.predict(good))
    np.testing.assert_allclose(out[["probability_0", "probability_1", "probability_2"]], model.predict_proba(good))
    rows["color"] = "purple"  # every row: the model, not the data, is the problem
    with pytest.raises(PredictionFailed, match="the model failed on more than 100 rows of one chunk"):
        run(tmp_path / "tabular.joblib", write(rows, tmp_path / "all.csv"), tmp_path / "all.parquet")


def test_a_model_without_feature_names_takes_the_columns_in_order(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X, y)
    joblib.dump(model, tmp_path / "diabetes.joblib")
    frame = pd.DataFrame(X[:50], columns=[f"m{i}" for i in range(10)])
    frame.insert(0, "ID", range(50))
    score(tmp_path / "diabetes.joblib", write(frame, tmp_path / "in.csv"), tmp_path / "out.jsonl", trust=True)
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert list(out.columns) == ["ID", "prediction"]
    np.testing.assert_allclose(out["prediction"], model.predict(X[:50]), rtol=1e-12)


def test_the_onnx_variant_answers_as_in_the_server(tmp_path: Path, models: dict[str, Path]) -> None:
    frame = iris_input(150)
    source = write(frame, tmp_path / "in.csv")
    summary = run(models["onnx"], source, tmp_path / "onnx.parquet")
    assert (summary.runtime, summary.variant) == ("onnx", "onnx")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "onnx.parquet"), expected(models["onnx"], frame), check_dtype=False
    )
    original = run(models["onnx"], source, tmp_path / "original.parquet", optimized=False, trust=True)
    assert (original.runtime, original.variant) == ("joblib", None)


def test_registry_refs_and_the_trust_policy(tmp_path: Path, models: dict[str, Path]) -> None:
    from servekit.bundle import Bundle
    from servekit.registry import Registry

    home = tmp_path / "home"
    with Registry(home) as registry:
        registry.push(Bundle.read(models["bundle"]), name="flowers")
        registry.promote("flowers", 1, "production")
    source = write(iris_input(20), tmp_path / "in.csv")
    summary = score("flowers@production", source, tmp_path / "out.csv", home=home)  # no trust needed
    assert summary.model == "flowers:1" and summary.rows_scored == 20
    with pytest.raises(UntrustedArtifact, match=r"iris\.joblib is a joblib file"):
        score(models["file"], source, tmp_path / "untrusted.csv")
    assert not (tmp_path / "untrusted.csv").exists()


def test_an_existing_output_is_kept_unless_forced(tmp_path: Path, models: dict[str, Path]) -> None:
    source = write(iris_input(20), tmp_path / "in.csv")
    (tmp_path / "out.csv").write_text("precious")
    with pytest.raises(Conflict, match="already exists"):
        run(models["bundle"], source, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == "precious"
    run(models["bundle"], source, tmp_path / "out.csv", force=True)
    assert len(pd.read_csv(tmp_path / "out.csv")) == 20


class _Interrupt:
    """A progress reporter that stops the run after `pieces` completed pieces, like Ctrl-C."""

    def __init__(self, pieces: int) -> None:
        self.left = pieces

    def start(self, total: int, done: int, rows: int) -> None:
        self.started = (done, rows)

    def advance(self, weight: int, rows: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt

    def finish(self) -> None:
        return None


def test_an_interrupted_run_resumes_without_losing_or_repeating_rows(tmp_path: Path, models: dict[str, Path]) -> None:
    frame = iris_input(400)
    frame.loc[[5, 333], "sepal_length"] = np.nan
    source = write(frame, tmp_path / "in.csv")
    whole = run(models["bundle"], source, tmp_path / "whole.parquet", chunk_size=50)
    with pytest.raises(KeyboardInterrupt):
        run(models["bundle"], source, tmp_path / "out.parquet", chunk_size=50, progress=_Interrupt(3))
    assert not (tmp_path / "out.parquet").exists() and (tmp_path / "out.parquet.partial").is_dir()
    with pytest.raises(Conflict, match="holds an interrupted run"):
        run(models["bundle"], source, tmp_path / "out.parquet", chunk_size=50)
    with pytest.raises(Conflict, match="the chunk size changed"):
        run(models["bundle"], source, tmp_path / "out.parquet", chunk_size=40, resume=True)
    reporter = _Interrupt(0)
    resumed = run(models["bundle"], source, tmp_path / "out.parquet", chunk_size=50, resume=True, progress=reporter)
    assert reporter.started[1] == resumed.resumed_rows > 0
    assert (resumed.rows_read, resumed.rows_scored, resumed.rows_failed) == (400, 398, 2)
    assert pq.read_table(tmp_path / "out.parquet").equals(pq.read_table(tmp_path / "whole.parquet"))
    assert resumed.errors is not None and whole.errors is not None
    assert resumed.errors.read_text() == whole.errors.read_text()
