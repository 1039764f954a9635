"""The native /v1 API and the seed-compatible routes, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from servekit.settings import Settings
from tests.support import IRIS_FEATURES, diabetes_model, iris_bundle, iris_model, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("native")
    bundle = iris_bundle(tmp)
    regressor, _ = diabetes_model(tmp)
    settings = Settings(models=[str(bundle), str(regressor)], trust=True)
    with running_app(settings) as client:
        yield client


def test_predict_one_row_matches_the_model(client, tmp_path: Path) -> None:
    _, model = iris_model(tmp_path)
    response = client.post("/v1/models/iris/predict", json={"features": SETOSA})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "iris"
    assert body["predictions"][0]["prediction"] == model.predict([SETOSA])[0] == "setosa"
    probabilities = body["predictions"][0]["probabilities"]
    assert list(probabilities) == ["setosa", "versicolor", "virginica"]
    assert probabilities["setosa"] == pytest.approx(model.predict_proba([SETOSA])[0][0])
    assert body["predictions"][0]["confidence"] == max(probabilities.values())
    assert body["request_id"] == response.headers["x-request-id"]


def test_named_features_and_many_instances(client) -> None:
    named = dict(zip(IRIS_FEATURES, VIRGINICA, strict=True))
    one = client.post("/v1/models/iris/predict", json={"features": named}).json()
    many = client.post("/v1/models/iris/predict", json={"instances": [SETOSA, VIRGINICA]}).json()
    records = client.post("/v1/models/iris/predict", json={"instances": [named, named]}).json()
    assert one["predictions"][0]["prediction"] == "virginica"
    assert [p["prediction"] for p in many["predictions"]] == ["setosa", "virginica"]
    assert [p["prediction"] for p in records["predictions"]] == ["virginica", "virginica"]


def test_regressor_answers_values_only(client) -> None:
    body = client.post("/v1/models/diabetes/predict", json={"instances": [[0.01] * 10, [0.0] * 10]}).json()
    assert set(body["predictions"][0]) == {"prediction"}
    assert isinstance(body["predictions"][0]["prediction"], float)


def test_version_and_alias_routes(client) -> None:
    assert client.post("/v1/models/iris/versions/latest/predict", json={"features": SETOSA}).status_code == 200
    missing = client.post("/v1/models/iris/versions/7/predict", json={"features": SETOSA})
    assert missing.status_code == 404
    assert missing.json()["title"] == "Version not found"


def test_listing_and_metadata(client) -> None:
    models = client.get("/v1/models").json()
    assert {m["name"] for m in models} == {"iris", "diabetes"}
    detail = client.get("/v1/models/iris").json()
    assert detail["state"] == "ready"
    assert [f["name"] for f in detail["signature"]["features"]] == IRIS_FEATURES
    assert detail["classes"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"features": [1, 2, 3]}', 422, "4 values"),
        (b'{"features": [1, 2, "x", 4]}', 422, "feature 'petal_length': expected a number, got string 'x'"),
        (b'{"features": [1, 2, null, 4]}', 422, "missing value"),
        (b'{"features": [1, 2, true, 4]}', 422, "boolean"),
        (b'{"features": {"sepal_length": 1}}', 422, "missing feature(s)"),
        (b'{"features": [[1, 2, 3, 4]]}', 422, "'instances'"),
        (b'{"instances": []}', 422, "empty"),
        (b'{"instances": [[1, 2, 3, 4], [1, 2]]}', 422, "row 1 has 2 values"),
        (b'{"features": [1, 2, 3, 4], "instances": [[1, 2, 3, 4]]}', 422, "exactly one"),
        (b'{"features": [1e999, 2, 3, 4]}', 400, "infinity"),
    ],
)
def test_bad_input_gets_a_precise_problem(client, body: bytes, status: int, detail: str) -> None:
    response = client.post("/v1/models/iris/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert set(problem) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert problem["instance"] == "/v1/models/iris/predict"


def test_unknown_model_and_route(client) -> None:
    response = client.post("/v1/models/nope/predict", json={"features": SETOSA})
    assert response.status_code == 404
    assert "Served models: diabetes, iris" in response.json()["detail"]
    assert client.get("/nowhere").status_code == 404
    assert client.get("/nowhere").headers["content-type"] == "application/problem+json"


def test_wrong_content_type_is_415(client) -> None:
    response = client.post("/v1/models/iris/predict", content=b"a,b", headers={"content-type": "text/csv"})
    assert response.status_code == 415


def test_seed_compatible_routes(client) -> None:
    one = client.post("/predict", json={"features": SETOSA}).json()
    assert set(one) == {"prediction", "probabilities", "confidence"}
    assert one["prediction"] == "setosa"
    assert isinstance(one["probabilities"], list) and len(one["probabilities"]) == 3
    assert client.post("/v1/predict", json={"features": SETOSA}).json() == one
    batch = client.post("/predict/batch", json=[{"features": SETOSA}, {"features": VIRGINICA}]).json()
    assert [b["prediction"] for b in batch] == ["setosa", "virginica"]
    assert client.get("/health").json() == {"status": "healthy", "model_loaded": True}
    info = client.get("/model/info").json()
    assert info["features"] == IRIS_FEATURES and info["framework"] == "scikit-learn"
    assert {"model_version", "training_date", "accuracy", "python_version"} <= set(info)


def test_health_and_docs(client) -> None:
    assert client.get("/health/live").json()["status"] == "alive"
    assert client.get("/health/ready").json() == {"status": "ready", "models": {"iris": "ready", "diabetes": "ready"}}
    spec = client.get("/openapi.json").json()
    assert "NativePredictRequest" in spec["components"]["schemas"]
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("NativePredictRequest")
    assert {"400", "404", "413", "415", "422", "500", "503", "504"} <= set(predict["responses"])
    assert client.get("/docs").status_code == 200


def test_untrusted_pickle_never_becomes_ready(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    from fastapi.testclient import TestClient

    from servekit.server import create_app

    app = create_app(Settings(models=[str(path)]))
    with TestClient(app) as client:
        import time

        deadline = time.monotonic() + 10
        while client.get("/v1/models/iris").json()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        detail = client.get("/v1/models/iris").json()
        assert detail["state"] == "failed"
        assert "--trust" in detail["error"]
        assert client.get("/health/ready").status_code == 503
        assert client.post("/predict", json={"features": SETOSA}).status_code == 503


@pytest.mark.parametrize(
    ("route", "body", "status", "detail"),
    [
        ("/predict", b"{oops", 400, "not valid JSON"),
        ("/predict", b'{"instances": [[1, 2, 3, 4]]}', 422, '{"features": [...]}'),
        ("/predict", b'{"features": [1, 2, 3]}', 422, "4 values"),
        ("/predict", b'{"features": [[1, 2, 3, 4]]}', 422, "one row"),
        ("/predict", b'{"features": ["a", 2, 3, 4]}', 422, "expected a number"),
        ("/v1/predict", b'{"features": {"sepal_length": 1}}', 422, "missing feature(s)"),
        ("/predict/batch", b"[]", 422, "empty"),
        ("/predict/batch", b'{"features": [1, 2, 3, 4]}', 422, "list of"),
        ("/predict/batch", b'[{"features": [1, 2, 3, 4]}, {"x": 1}]', 422, "item 1"),
        ("/predict/batch", b'[{"features": [1, 2, 3, 4]}, {"features": [1, 2]}]', 422, "row 1 has 2 values"),
    ],
)
def test_seed_routes_reject_bad_input(client, route: str, body: bytes, status: int, detail: str) -> None:
    response = client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]


def test_row_limit_is_413(tmp_path: Path) -> None:
    settings = Settings(models=[str(iris_bundle(tmp_path))], trust=True, max_rows=3)
    with running_app(settings) as client:
        assert client.post("/v1/models/iris/predict", json={"instances": [SETOSA] * 3}).status_code == 200
        response = client.post("/v1/models/iris/predict", json={"instances": [SETOSA] * 4})
        assert response.status_code == 413
        assert "at most 3" in response.json()["detail"]
