"""The raw hot path answers exactly as the FastAPI endpoints of the same routes do."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from servekit.server.hotpath import ServekitApp
from servekit.settings import Settings
from tests.support import iris_bundle, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
CASES = [
    ("/v1/models/iris/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', {}),
    ("/v1/models/iris/predict", b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}', {}),
    ("/v1/models/iris/versions/latest/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', {}),
    ("/v1/models/iris/versions/9/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', {}),
    ("/v1/models/nope/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', {}),
    ("/v1/models/iris/predict", b'{"features": [5.1, "x", 1.4, 0.2]}', {}),
    ("/v1/models/iris/predict", b"{oops", {}),
    ("/v1/models/iris/predict", b"", {}),
    ("/v1/models/iris/predict", b"a,b", {"content-type": "text/csv"}),
    ("/v1/models/iris/predict", b'{"instances": [[1, 2, 3, 4]]}' + b" " * 5000, {}),
    ("/v1/models/iris/predict", b'{"instances": ' + b"[[1, 2, 3, 4]," * 6 + b"[1, 2, 3, 4]]}", {}),
    ("/predict", b'{"features": [5.1, 3.5, 1.4, 0.2]}', {}),
    ("/v1/predict", b'{"features": [1, 2]}', {}),
    ("/predict/batch", b'[{"features": [5.1, 3.5, 1.4, 0.2]}, {"features": [6.7, 3.0, 5.2, 2.3]}]', {}),
    ("/predict/batch", b"[]", {}),
    (
        "/v2/models/iris/infer",
        b'{"id": "1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}',
        {},
    ),
    (
        "/v2/models/iris/versions/latest/infer",
        b'{"id": "2", "inputs": [{"name": "x", "shape": [2, 4], '
        b'"datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}], '
        b'"outputs": [{"name": "label", "parameters": {"binary_data": true}}]}',
        {},
    ),
    (
        "/v2/models/iris/infer",
        b'{"id": "3", "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [5.1, 3.5, 1.4]}]}',
        {},
    ),
    ("/v2/models/nope/infer", b'{"inputs": []}', {}),
    ("/v2/models/iris/infer", b"{oops", {}),
    ("/v2/models/iris/infer", b'{"id": "4", "inputs": []}' + b"\0" * 8, {"inference-header-content-length": "999"}),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(models=[str(iris_bundle(tmp_path_factory.mktemp("hot")))], trust=True, max_body_bytes=4096)
    with running_app(Settings.model_validate({**settings.model_dump(), "max_rows": 5})) as client:
        yield client


def _answer(client, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, object]:
    response = client.post(path, content=body, headers={"content-type": "application/json", **headers})
    if not response.headers["content-type"].endswith("json"):
        return response.status_code, response.headers["content-type"], response.content
    data = response.json()
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict):
            assert item.pop("request_id", response.headers["x-request-id"]) == response.headers["x-request-id"]
    return response.status_code, response.headers["content-type"], data


@pytest.mark.parametrize(("path", "body", "headers"), CASES)
def test_hot_path_and_fastapi_answer_the_same(client, path: str, body: bytes, headers: dict[str, str]) -> None:
    app: ServekitApp = client.app
    hot = _answer(client, path, body, headers)
    saved, app._hot = app._hot, []
    try:
        slow = _answer(client, path, body, headers)
    finally:
        app._hot = saved
    assert hot == slow


def test_prediction_routes_take_the_hot_path(client, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = ServekitApp._answer

    async def answer(self, scope, receive, send, handler, params):
        seen.append(scope["path"])
        await original(self, scope, receive, send, handler, params)

    monkeypatch.setattr(ServekitApp, "_answer", answer)
    assert client.post("/v1/models/iris/predict", json={"features": SETOSA}).status_code == 200
    assert client.post("/predict", json={"features": SETOSA}).status_code == 200
    infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}]}
    assert client.post("/v2/models/iris/infer", json=infer).status_code == 200
    assert client.get("/v1/models/iris").status_code == 200  # not a hot route
    assert client.get("/v1/models/iris/predict").status_code == 405  # wrong method: FastAPI answers
    assert seen == ["/v1/models/iris/predict", "/predict", "/v2/models/iris/infer"]


def test_request_id_is_echoed_or_made(client) -> None:
    given = client.post("/predict", json={"features": SETOSA}, headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = client.post("/v1/models/iris/predict", json={"features": SETOSA}, headers={"X-Request-ID": "bad id!"})
    assert made.headers["x-request-id"] != "bad id!" and len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]


def test_body_over_the_limit_is_413_even_without_content_length(client) -> None:
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/models/iris/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "4096" in response.json()["detail"]
    gz = gzip.compress(b'{"features": [5.1, 3.5, 1.4, 0.2]}')
    assert client.post("/predict", content=gz, headers={"content-type": "application/json"}).status_code == 400


def test_mounted_app_uses_the_hot_path(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from servekit.server import create_app

    inner = create_app(Settings(models=[str(iris_bundle(tmp_path))], trust=True))
    outer = FastAPI(lifespan=lambda _: inner.router.lifespan_context(inner))
    outer.mount("/ml", inner)
    with TestClient(outer) as client:
        deadline = time.monotonic() + 30
        while client.get("/ml/health/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ok = client.post("/ml/v1/models/iris/predict", json={"features": SETOSA})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["prediction"] == "setosa"
        bad = client.post("/ml/v1/models/iris/predict", json={"features": [1]})
        assert bad.status_code == 422 and bad.json()["instance"] == "/ml/v1/models/iris/predict"
