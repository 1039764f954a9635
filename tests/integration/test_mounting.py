"""The ASGI app from `create_app` mounted under another FastAPI app.

Starlette does not run the lifespan of a mounted sub-application, and servekit loads its models
in its lifespan. The outer app must therefore run the inner app's lifespan inside its own:

    inner = create_app(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner.router.lifespan_context(inner):
            yield

    outer = FastAPI(lifespan=lifespan)
    outer.mount("/ml", inner)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from servekit.server import create_app
from servekit.settings import Settings
from tests.support import iris_bundle, wait_ready

SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(models=[str(iris_bundle(tmp_path_factory.mktemp("mount")))], trust=True)


def outer_app(inner: FastAPI, *, forward_lifespan: bool) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with inner.router.lifespan_context(inner):
            yield

    outer = FastAPI(lifespan=lifespan if forward_lifespan else None)

    @outer.get("/")
    async def home() -> dict[str, str]:
        return {"app": "outer"}

    outer.mount("/ml", inner)
    return outer


def test_mounted_app_serves_under_its_prefix(settings: Settings) -> None:
    outer = outer_app(create_app(settings), forward_lifespan=True)
    # base_url ends in the mount prefix, so `wait_ready` polls /ml/health/ready.
    with TestClient(outer, base_url="http://testserver/ml", raise_server_exceptions=False) as client:
        wait_ready(client, timeout=30)
        assert client.get("http://testserver/ml/health/ready").status_code == 200
        response = client.post("http://testserver/ml/v1/models/iris/predict", json={"features": SETOSA})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["prediction"] == "setosa"
        assert response.json()["request_id"] == response.headers["x-request-id"]
        assert client.post("/predict", json={"features": SETOSA}).json()["prediction"] == "setosa"
        bad = client.post("/v1/models/iris/predict", json={"features": [1, 2]})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["instance"] == "/ml/v1/models/iris/predict"
        assert client.get("http://testserver/").json() == {"app": "outer"}
        assert client.get("/openapi.json").status_code == 200


def test_without_forwarding_the_lifespan_models_never_load(settings: Settings) -> None:
    """Documents the Starlette behaviour that makes the pattern above necessary."""
    outer = outer_app(create_app(settings), forward_lifespan=False)
    with TestClient(outer, raise_server_exceptions=False) as client:
        ready = client.get("/ml/health/ready")
        assert ready.status_code == 503
        assert ready.json()["models"] == {"iris": "loading"}
