"""The MLflow scoring protocol against a real `servekit serve` process, with MLflow's own client
and with payloads shaped as MLflow's documentation shows them."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from servekit import __version__
from servekit.server import create_app
from servekit.settings import Settings
from tests.support import IRIS_FEATURES, ServerProcess, diabetes_model, iris_bundle, iris_model, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    bundle = iris_bundle(tmp_path_factory.mktemp("mlflow"))
    with ServerProcess(["serve", str(bundle), "--trust"]) as process:
        yield process.wait_ready()


@pytest.fixture(scope="module")
def http(server: ServerProcess):
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Any]:
    """The iris data and the same model the server serves (same seed), to compare answers."""
    from sklearn.datasets import load_iris

    _, model = iris_model(tmp_path_factory.mktemp("iris"))
    return load_iris().data, model


def test_mlflow_client_scores_a_dataframe(server: ServerProcess, iris) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    X, model = iris
    client = ScoringServerClient("127.0.0.1", server.port)
    client.wait_server_ready(timeout=30, scoring_server_proc=server.process)
    rows = X[::10]
    response = client.invoke(pd.DataFrame(rows, columns=IRIS_FEATURES))
    assert response.get_predictions(predictions_format="ndarray").tolist() == model.predict(rows).tolist()
    # A frame built from an array (columns 0..3) is taken in feature order, as MLflow serves it.
    assert client.invoke(pd.DataFrame(rows)).get_predictions()[0].tolist() == model.predict(rows).tolist()
    with_params = client.invoke(pd.DataFrame(rows[:2], columns=IRIS_FEATURES), params={"threshold": 0.5})
    assert with_params["predictions"] == model.predict(rows[:2]).tolist()
    assert client.get_version() == __version__


def test_mlflow_client_reports_a_refused_frame(server: ServerProcess) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    client = ScoringServerClient("127.0.0.1", server.port)
    with pytest.raises(Exception, match=r"error code 400.*unknown feature\(s\) petal") as raised:
        client.invoke(pd.DataFrame([SETOSA], columns=["sepal_length", "sepal_width", "petal", "petal_width"]))
    assert "stack_trace" not in str(raised.value)


NAMED = dict(zip(IRIS_FEATURES, SETOSA, strict=True))
SHUFFLED = ["petal_width", "sepal_length", "petal_length", "sepal_width"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param({"dataframe_split": {"columns": IRIS_FEATURES, "data": [SETOSA, VIRGINICA]}}, None, id="split"),
        pytest.param(
            {"dataframe_split": {"index": [7, 8], "columns": IRIS_FEATURES, "data": [SETOSA, VIRGINICA]}},
            None,
            id="split-with-index",
        ),
        pytest.param(
            {"dataframe_split": {"columns": SHUFFLED, "data": [[NAMED[c] for c in SHUFFLED], [2.3, 6.7, 5.2, 3.0]]}},
            None,
            id="split-any-column-order",
        ),
        pytest.param({"dataframe_split": {"data": [SETOSA, VIRGINICA]}}, None, id="split-without-columns"),
        pytest.param(
            {"dataframe_records": [NAMED, dict(zip(IRIS_FEATURES, VIRGINICA, strict=True))]}, None, id="records"
        ),
        pytest.param({"instances": [SETOSA, VIRGINICA]}, None, id="instances-rows"),
        pytest.param(
            {"instances": [NAMED, dict(zip(IRIS_FEATURES, VIRGINICA, strict=True))]}, None, id="instances-records"
        ),
        pytest.param({"inputs": [SETOSA, VIRGINICA]}, None, id="inputs-rows"),
        pytest.param(
            {"inputs": {name: [a, b] for name, a, b in zip(IRIS_FEATURES, SETOSA, VIRGINICA, strict=True)}},
            None,
            id="inputs-columns",
        ),
        pytest.param({"inputs": NAMED}, ["setosa"], id="inputs-one-record"),
        pytest.param(
            {"dataframe_split": {"columns": IRIS_FEATURES, "data": [SETOSA, VIRGINICA]}, "params": {"k": 1}},
            None,
            id="with-params",
        ),
    ],
)
def test_documented_json_payloads(http, payload: dict[str, Any], expected: list[str] | None) -> None:
    response = http.post("/invocations", json=payload)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": expected or ["setosa", "virginica"]}


def test_content_type_with_charset_and_trailing_semicolon(http) -> None:
    body = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
    for content_type in ("application/json; charset=utf-8", "application/json;", "Application/JSON"):
        response = http.post("/invocations", content=body, headers={"content-type": content_type})
        assert response.json() == {"predictions": ["setosa"]}, content_type


def test_csv_from_pandas(http, iris) -> None:
    X, model = iris
    frame = pd.DataFrame(X[::7], columns=IRIS_FEATURES)
    response = http.post("/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == model.predict(X[::7]).tolist()
    shuffled = frame[SHUFFLED].to_csv(index=False).encode("utf-8-sig")  # Excel writes a BOM
    response = http.post("/invocations", content=shuffled, headers={"content-type": "text/csv; charset=utf-8"})
    assert response.json()["predictions"] == model.predict(X[::7]).tolist()


def test_hand_written_csv(http) -> None:
    text = '"petal_width", sepal_length ,petal_length,sepal_width\r\n0.2, 5.1,1.4,3.5\r\n\r\n2.3,6.7,5.2,3\r\n'
    response = http.post("/invocations", content=text, headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": ["setosa", "virginica"]}


def test_parquet_from_pandas(http) -> None:
    buffer = io.BytesIO()
    pd.DataFrame([SETOSA, VIRGINICA], columns=IRIS_FEATURES).to_parquet(buffer)
    response = http.post(
        "/invocations", content=buffer.getvalue(), headers={"content-type": "application/vnd.apache.parquet"}
    )
    assert response.json() == {"predictions": ["setosa", "virginica"]}


CSV = {"content-type": "text/csv"}
HEADER = ",".join(IRIS_FEATURES)


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        pytest.param(b"{not json", JSON, 400, "not valid JSON", id="malformed-json"),
        pytest.param(b"", JSON, 400, "empty", id="empty-body"),
        pytest.param(b"[[5.1, 3.5, 1.4, 0.2]]", JSON, 400, "JSON object", id="list-body"),
        pytest.param(b'{"data": [[5.1, 3.5, 1.4, 0.2]]}', JSON, 400, "it has none", id="no-input-field"),
        pytest.param(
            b'{"instances": [[5.1, 3.5, 1.4, 0.2]], "inputs": [[5.1, 3.5, 1.4, 0.2]]}',
            JSON,
            400,
            "it has instances, inputs",
            id="two-input-fields",
        ),
        pytest.param(
            b'{"dataframe_split": {"columns": ["a", "sepal_width", "petal_length", "petal_width"], '
            b'"data": [[1, 2, 3, 4]]}}',
            JSON,
            400,
            "missing feature(s) sepal_length; unknown feature(s) a",
            id="wrong-columns",
        ),
        pytest.param(
            b'{"dataframe_split": {"columns": ["sepal_length", "sepal_length", "petal_length", "petal_width"], '
            b'"data": [[1, 2, 3, 4]]}}',
            JSON,
            400,
            "'sepal_length' appear more than once",
            id="duplicate-columns",
        ),
        pytest.param(b'{"dataframe_split": [[1, 2, 3, 4]]}', JSON, 400, "'data'", id="split-not-object"),
        pytest.param(
            b'{"dataframe_split": {"data": [[1, 2, 3, 4]], "index": [0, 1]}}', JSON, 400, "index", id="split-index"
        ),
        pytest.param(b'{"dataframe_records": {"a": 1}}', JSON, 400, "list of records", id="records-not-list"),
        pytest.param(b'{"instances": [[1, 2, "x", 4]]}', JSON, 400, "expected a number, got string 'x'", id="string"),
        pytest.param(b'{"instances": [[1, 2, true, 4]]}', JSON, 400, "boolean", id="boolean"),
        pytest.param(b'{"instances": [[1, 2, null, 4]]}', JSON, 400, "missing value", id="null"),
        pytest.param(b'{"instances": [[1, 2, 3]]}', JSON, 400, "4 values", id="short-row"),
        pytest.param(b'{"instances": []}', JSON, 400, "no rows", id="empty-instances"),
        pytest.param(b'{"dataframe_split": {"columns": [], "data": []}}', JSON, 400, "no rows", id="empty-split"),
        pytest.param(b'{"inputs": {"sepal_length": [1, 2], "sepal_width": [1]}}', JSON, 400, "lengths", id="ragged"),
        pytest.param(b'{"inputs": "5.1,3.5"}', JSON, 400, "list of rows", id="inputs-string"),
        pytest.param(f"{HEADER}\n5.1,3.5,abc,0.2\n".encode(), CSV, 400, "got string 'abc'", id="csv-text"),
        pytest.param(f"{HEADER}\n5.1,3.5,,0.2\n".encode(), CSV, 400, "missing value", id="csv-empty-cell"),
        pytest.param(f"{HEADER}\n5.1,3.5,True,0.2\n".encode(), CSV, 400, "got string 'True'", id="csv-boolean"),
        pytest.param(f"{HEADER}\n5.1,3.5,1.4,0.2,9\n".encode(), CSV, 400, "row 0 has 5 values", id="csv-long"),
        pytest.param(f"{HEADER}\n5.1,3.5,1.4\n".encode(), CSV, 400, "row 0 has 3 values for 4", id="csv-short"),
        pytest.param(f"{HEADER}\n".encode(), CSV, 400, "no rows", id="csv-header-only"),
        pytest.param(b"", CSV, 400, "CSV body is empty", id="csv-empty"),
        pytest.param(b"5.1,3.5,1.4,0.2\n", CSV, 400, "unknown feature(s) 5.1", id="csv-no-header"),
        pytest.param(b"\xff\xfe", CSV, 400, "not UTF-8", id="csv-binary"),
        pytest.param(f"{HEADER}\ninf,3.5,1.4,0.2\n".encode(), CSV, 400, "Infinity", id="csv-infinity"),
        pytest.param(b"a=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "not accepted", id="form"),
        pytest.param(b"<x/>", {"content-type": "application/xml"}, 415, "text/csv", id="xml"),
        pytest.param(b"{}", {"content-type": "application/json; charset=latin-1"}, 415, "UTF-8", id="latin-1"),
        pytest.param(b"{}", {"content-type": "application/json; format=pandas-split"}, 415, "format", id="param"),
        pytest.param(b"junk", {"content-type": "application/vnd.apache.parquet"}, 400, "Parquet", id="parquet"),
    ],
)
def test_bad_requests_get_mlflow_error_bodies(
    http, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = http.post("/invocations", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"error_code", "message"}
    assert error["error_code"] == "BAD_REQUEST"
    assert message in error["message"]


def test_ping_version_and_wrong_method(http) -> None:
    ping = http.get("/ping")
    assert (ping.status_code, ping.text) == (200, "\n")
    assert http.get("/version").text == __version__
    wrong = http.get("/invocations")
    assert wrong.status_code == 405
    assert wrong.json() == {"error_code": "BAD_REQUEST", "message": "Method Not Allowed"}


def test_body_over_the_limit_is_413_in_mlflow_shape(tmp_path: Path) -> None:
    settings = Settings(models=[str(iris_bundle(tmp_path))], trust=True, max_body_bytes=1024)
    with running_app(settings) as client:
        rows = [SETOSA] * 100
        response = client.post("/invocations", json={"instances": rows})
    assert response.status_code == 413
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert "1024" in response.json()["message"]


def test_regressor_answers_values(tmp_path: Path) -> None:
    path, model = diabetes_model(tmp_path)
    from sklearn.datasets import load_diabetes

    X = load_diabetes().data[:3]
    with running_app(Settings(models=[str(path)], trust=True)) as client:
        split = {"dataframe_split": {"columns": [f"x{i}" for i in range(10)], "data": X.tolist()}}
        predictions = client.post("/invocations", json=split).json()["predictions"]
        assert predictions == pytest.approx(model.predict(X).tolist())
        assert all(isinstance(p, float) for p in predictions)
        csv = pd.DataFrame(X).to_csv(index=False)  # columns 0..9: taken in order
        response = client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
        assert response.json()["predictions"] == pytest.approx(model.predict(X).tolist())


def test_not_ready_is_503_temporarily_unavailable(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    app = create_app(Settings(models=[str(path)]))  # untrusted pickle: never loads
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 10
        while client.get("/v1/models/iris").json()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/ping").status_code == 503
        response = client.post("/invocations", json={"instances": [SETOSA]})
        assert response.status_code == 503
        error = response.json()
        assert error["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "stack_trace" not in error
