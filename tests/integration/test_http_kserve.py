"""KServe v1: `POST /v1/models/{name}:predict`, in-process, beside the native /v1 routes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servekit.settings import Settings
from tests.support import IRIS_FEATURES, diabetes_model, iris_bundle, iris_model, running_app

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("kserve")
    regressor, _ = diabetes_model(tmp)
    with running_app(Settings(models=[str(iris_bundle(tmp)), str(regressor)], trust=True)) as client:
        yield client


def test_instances_give_labels(client, tmp_path: Path) -> None:
    _, model = iris_model(tmp_path)
    response = client.post("/v1/models/iris:predict", json={"instances": ROWS})
    assert response.status_code == 200
    assert response.json() == {"predictions": model.predict(ROWS).tolist()}
    named = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in ROWS]
    assert client.post("/v1/models/iris:predict", json={"inputs": named}).json() == response.json()


def test_regressor_gives_values(client, tmp_path: Path) -> None:
    _, model = diabetes_model(tmp_path)
    rows = np.full((2, 10), 0.02).tolist()
    predictions = client.post("/v1/models/diabetes:predict", json={"instances": rows}).json()["predictions"]
    np.testing.assert_allclose(predictions, model.predict(rows))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[[1, 2, 3, 4]]", 422, "either 'instances' or 'inputs'"),
        (b'{"instances": [], "inputs": []}', 422, "either 'instances' or 'inputs'"),
        (b'{"instances": []}', 422, "'instances' must be a non-empty list"),
        (b'{"instances": [5.1, 3.5, 1.4, 0.2]}', 422, "instances[0] must be a row"),
        (b'{"instances": [[1, 2, 3]]}', 422, "each row must have 4 values"),
        (b'{"inputs": [[1, 2, "x", 4]]}', 422, "feature 'petal_length': expected a number, got string 'x'"),
    ],
)
def test_bad_input_gets_an_error_object(client, body: bytes, status: int, message: str) -> None:
    response = client.post("/v1/models/iris:predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_unknown_model_and_media_type(client) -> None:
    unknown = client.post("/v1/models/nope:predict", json={"instances": ROWS})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no model named 'nope' is served here. Served models: diabetes, iris"}
    csv = client.post("/v1/models/iris:predict", content=b"1,2,3,4", headers={"content-type": "text/csv"})
    assert csv.status_code == 415 and set(csv.json()) == {"error"}


def test_native_routes_beside_it_keep_their_shape(client) -> None:
    assert client.get("/v1/models/iris").json()["name"] == "iris"
    native = client.post("/v1/models/nope/predict", json={"features": ROWS[0]})
    assert native.status_code == 404
    assert native.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/models/iris/predict", json={"features": ROWS[0]}).json()["predictions"][0]["prediction"]


def test_not_ready_model_is_503_without_internals(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    from fastapi.testclient import TestClient

    from servekit.server import create_app

    with TestClient(create_app(Settings(models=[str(path)]))) as client:  # untrusted pickle: never ready
        response = client.post("/v1/models/iris:predict", json={"instances": ROWS})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error.startswith("model 'iris' "), error  # still loading, or failed to load
        assert "joblib" not in error and str(tmp_path) not in error  # the reason stays server-side


def test_documented_with_unique_operation_ids(client) -> None:
    spec = client.get("/openapi.json").json()
    assert "post" in spec["paths"]["/v1/models/{name}:predict"]
    assert "/v2/models/{model}/infer" in spec["paths"]
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
