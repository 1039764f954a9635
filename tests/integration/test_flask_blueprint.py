"""`servekit.integrations.flask.blueprint`: one model inside a Flask app, answering exactly as
the native ASGI route does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from flask import Flask

import servekit
from servekit.errors import UntrustedArtifact
from servekit.integrations.flask import blueprint
from servekit.settings import Settings
from tests.support import IRIS_FEATURES, iris_bundle, iris_model, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
JSON = {"content-type": "application/json"}
PREDICT = "/iris/predict"
NATIVE = "/v1/models/iris/predict"


def explode_on_large_values(X: Any) -> Any:
    """A transformer step that fails at predict time for values over 100 (a model bug)."""
    if np.asarray(X).max() > 100:
        raise ValueError("secret internals")
    return X


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iris_bundle(tmp_path_factory.mktemp("flask"))


@pytest.fixture(scope="module")
def flask_client(bundle: Path):
    app = Flask(__name__)
    app.register_blueprint(blueprint(bundle, trust=True, url_prefix="/iris"))
    return app.test_client()


@pytest.fixture(scope="module")
def asgi_client(bundle: Path):
    with running_app(Settings(models=[str(bundle)], trust=True)) as client:
        yield client


def test_predict_matches_the_asgi_route(flask_client, asgi_client, tmp_path: Path) -> None:
    _, model = iris_model(tmp_path)
    response = flask_client.post(PREDICT, json={"features": SETOSA}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["request_id"] == response.headers["X-Request-ID"] == "abc-123"
    native = asgi_client.post(NATIVE, json={"features": SETOSA}).json()
    assert {k: v for k, v in body.items() if k != "request_id"} == {
        k: v for k, v in native.items() if k != "request_id"
    }
    assert body["predictions"][0]["prediction"] == model.predict([SETOSA])[0] == "setosa"
    assert body["predictions"][0]["probabilities"]["setosa"] == pytest.approx(model.predict_proba([SETOSA])[0][0])


def test_named_features_and_instances(flask_client) -> None:
    named = dict(zip(IRIS_FEATURES, VIRGINICA, strict=True))
    one = flask_client.post(PREDICT, json={"features": named}).get_json()
    many = flask_client.post(PREDICT, json={"instances": [SETOSA, VIRGINICA]}).get_json()
    records = flask_client.post(PREDICT, json={"instances": [named, named]}).get_json()
    assert one["predictions"][0]["prediction"] == "virginica"
    assert [p["prediction"] for p in many["predictions"]] == ["setosa", "virginica"]
    assert [p["prediction"] for p in records["predictions"]] == ["virginica", "virginica"]
    assert len({one["request_id"], many["request_id"]}) == 2


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(b"{not json", JSON, id="malformed"),
        pytest.param(b"", JSON, id="empty"),
        pytest.param(b"[1, 2]", JSON, id="not-object"),
        pytest.param(b'{"features": [1, 2, 3]}', JSON, id="short"),
        pytest.param(b'{"features": [1, 2, "x", 4]}', JSON, id="string"),
        pytest.param(b'{"features": [1, 2, null, 4]}', JSON, id="null"),
        pytest.param(b'{"features": [1, 2, true, 4]}', JSON, id="boolean"),
        pytest.param(b'{"features": {"sepal_length": 1}}', JSON, id="missing-name"),
        pytest.param(b'{"features": [[1, 2, 3, 4]]}', JSON, id="nested"),
        pytest.param(b'{"instances": []}', JSON, id="no-instances"),
        pytest.param(b'{"instances": [[1, 2, 3, 4], [1, 2]]}', JSON, id="ragged"),
        pytest.param(b'{"features": [1, 2, 3, 4], "instances": [[1, 2, 3, 4]]}', JSON, id="both"),
        pytest.param(b'{"features": [1e999, 2, 3, 4]}', JSON, id="infinity"),
        pytest.param(b"a,b", {"content-type": "text/csv"}, id="csv"),
    ],
)
def test_bad_input_answers_like_the_asgi_route(flask_client, asgi_client, body: bytes, headers: dict) -> None:
    response = flask_client.post(PREDICT, data=body, headers=headers)
    native = asgi_client.post(NATIVE, content=body, headers=headers)
    assert 400 <= response.status_code < 500
    assert response.status_code == native.status_code
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    expected = native.json()
    assert set(problem) == set(expected) == {"type", "title", "status", "detail", "instance", "request_id"}
    for key in ("type", "title", "status", "detail"):
        assert problem[key] == expected[key]
    assert problem["instance"] == PREDICT
    assert problem["request_id"] == response.headers["X-Request-ID"]


def test_body_limit_from_flask_config(bundle: Path) -> None:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 200
    app.register_blueprint(blueprint(bundle, trust=True))
    response = app.test_client().post("/predict", json={"instances": [SETOSA] * 20})
    assert response.status_code == 413
    problem = response.get_json()
    assert problem["title"] == "Payload too large"
    assert "at most 200" in problem["detail"]
    assert app.test_client().post("/predict", json={"instances": [SETOSA]}).status_code == 200


def test_row_limit_and_a_loaded_predictor(bundle: Path) -> None:
    app = Flask(__name__)
    predictor = servekit.load(bundle, trust=True)
    app.register_blueprint(blueprint(predictor, name="small", max_rows=2), url_prefix="/small")
    client = app.test_client()
    assert client.post("/small/predict", json={"instances": [SETOSA, VIRGINICA]}).status_code == 200
    response = client.post("/small/predict", json={"instances": [SETOSA] * 3})
    assert response.status_code == 413
    assert "at most 2" in response.get_json()["detail"]


def test_model_and_health(flask_client, asgi_client) -> None:
    detail = flask_client.get("/iris/model").get_json()
    native = asgi_client.get("/v1/models/iris").json()
    for key in ("name", "version", "state", "format", "task", "signature", "classes", "metadata"):
        assert detail[key] == native[key], key
    assert [f["name"] for f in detail["signature"]["features"]] == IRIS_FEATURES
    assert flask_client.get("/iris/health").get_json() == {"status": "ready", "models": {"iris": "ready"}}


def test_unknown_route_and_wrong_method_under_the_prefix(flask_client) -> None:
    missing = flask_client.get("/iris/nowhere")
    assert missing.status_code == 404
    assert missing.content_type == "application/problem+json"
    assert missing.get_json()["instance"] == "/iris/nowhere"
    wrong = flask_client.get("/iris/predict")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert wrong.get_json()["title"] == "Method Not Allowed"


def test_model_failure_shows_no_internals(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(FunctionTransformer(explode_on_large_values), LogisticRegression(max_iter=500)).fit(X, y)
    joblib.dump(model, tmp_path / "fragile.joblib")
    app = Flask(__name__)
    app.register_blueprint(blueprint(tmp_path / "fragile.joblib", trust=True))
    client = app.test_client()
    assert client.post("/predict", json={"features": SETOSA}).status_code == 200
    response = client.post("/predict", json={"features": [500, 1, 1, 1]})
    assert response.status_code == 500
    problem = response.get_json()
    assert problem["title"] == problem["detail"] == "Prediction failed"
    assert "secret" not in response.get_data(as_text=True)


def test_untrusted_pickle_is_refused_when_the_blueprint_is_made(tmp_path: Path) -> None:
    path, _ = iris_model(tmp_path)
    with pytest.raises(UntrustedArtifact, match="nobody vouched for it"):
        blueprint(path)
