"""The short way in for prediction routes answers exactly as FastAPI's routing would."""

from __future__ import annotations

import pytest

from servekit.server.fastpath import FastRoutes
from servekit.settings import Settings
from tests.support import iris_bundle, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths that went through the fast path."""
    seen: list[str] = []
    original = FastRoutes._dispatch

    async def dispatch(self, scope, receive, send, endpoint, params):
        seen.append(scope["path"])
        await original(self, scope, receive, send, endpoint, params)

    monkeypatch.setattr(FastRoutes, "_dispatch", dispatch)
    return seen


def test_prediction_routes_take_the_fast_path(tmp_path, counted: list[str]) -> None:
    settings = Settings(models=[str(iris_bundle(tmp_path))], trust=True)
    with running_app(settings) as client:
        ok = client.post("/v1/models/iris/predict", json={"features": SETOSA}, headers={"X-Request-ID": "abc-1"})
        assert ok.status_code == 200 and ok.json()["request_id"] == "abc-1" == ok.headers["x-request-id"]
        assert client.post("/v1/models/iris/versions/latest/predict", json={"features": SETOSA}).status_code == 200
        assert client.post("/predict", json={"features": SETOSA}).json()["prediction"] == "setosa"
        bad = client.post("/v1/models/iris/predict", json={"features": [1, 2]})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["instance"] == "/v1/models/iris/predict" and "request_id" in bad.json()
        missing = client.post("/v1/models/nope/predict", json={"features": SETOSA})
        assert missing.status_code == 404 and missing.json()["title"] == "Model not found"
        client.get("/v1/models/iris")  # not a hot route
    assert counted == [
        "/v1/models/iris/predict",
        "/v1/models/iris/versions/latest/predict",
        "/predict",
        "/v1/models/iris/predict",
        "/v1/models/nope/predict",
    ]


def test_wrong_method_on_a_hot_path_falls_through_to_fastapi(tmp_path, counted: list[str]) -> None:
    settings = Settings(models=[str(iris_bundle(tmp_path))], trust=True)
    with running_app(settings) as client:
        response = client.get("/v1/models/iris/predict")
        assert response.status_code == 405
    assert counted == []
