"""Hostile requests against a real `servekit serve`: every case of `tests.hostile_corpus` gets
its exact 4xx status, an error body in its protocol's shape with a message that says what is
wrong (and nothing of the server's internals), and the server stays live afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.hostile_corpus import (
    CASES,
    DIABETES_ROW,
    HUGE,
    IRIS_ROW,
    LEAK_MARKERS,
    Hostile,
    error_shape,
    serve_corpus_models,
)
from tests.support import ServerProcess, iris_bundle

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole corpus. Its circuit breaker is set out of reach so that cases
    that crash a model today (finding 1) cannot turn the cases after them into 503s; the
    breaker itself is tested by `test_hostile_rows_do_not_take_the_model_down`."""
    env = {"SERVEKIT_RUNNER__CIRCUIT_FAILURES": "1000000"}
    with serve_corpus_models(tmp_path_factory.mktemp("hostile"), env) as process:
        yield process.wait_ready()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


def _param(case: Hostile) -> Any:
    return pytest.param(case, id=case.name)


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_hostile_request_gets_a_clear_4xx(client: httpx.Client, case: Hostile) -> None:
    response = client.request(case.method, case.path, content=case.content(), headers=case.headers)
    message = error_message(response, error_shape(case.path))
    assert response.status_code == case.status, f"{response.status_code}: {message}"
    assert case.phrase.lower() in message.lower(), message
    leaked = [marker for marker in LEAK_MARKERS if marker in message]
    assert not leaked, f"internals {leaked} in {message!r}"
    if case.allow is not None:
        assert response.headers.get("allow") == case.allow
    assert client.get("/health/live").status_code == 200


def test_a_hostile_row_fails_only_its_own_request(server: ServerProcess) -> None:
    """Concurrent requests are stacked into one predict call: one request's bad row must not fail
    the others stacked with it."""

    async def post_rounds() -> list[tuple[bool, int]]:
        answers: list[tuple[bool, int]] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            for _ in range(10):
                hostile = [i % 10 == 0 for i in range(40)]
                rows = [[HUGE, 3.5, 1.4, 0.2] if bad else IRIS_ROW for bad in hostile]
                sent = [client.post("/v1/models/iris/predict", json={"features": row}) for row in rows]
                answers += [(bad, r.status_code) for bad, r in zip(hostile, await asyncio.gather(*sent), strict=True)]
        return answers

    answers = asyncio.run(post_rounds())
    assert {status for bad, status in answers if not bad} == {200}
    assert {status for bad, status in answers if bad} == {422}


def test_server_is_healthy_after_the_corpus(client: httpx.Client) -> None:
    """Runs after the corpus (pytest keeps file order): ready, and every model still answers."""
    assert client.get("/health/ready").status_code == 200
    assert client.post("/v1/models/iris/predict", json={"features": IRIS_ROW}).status_code == 200
    assert client.post("/v1/models/diabetes/predict", json={"features": DIABETES_ROW}).status_code == 200
    flowers = client.post("/v1/models/flowers/versions/production/predict", json={"features": IRIS_ROW})
    assert flowers.json()["version"] == 1


def test_hostile_rows_do_not_take_the_model_down(tmp_path: Path) -> None:
    """A client that sends a few rows the model cannot compute must not open the model's circuit
    (503 for everyone, /health/ready failing) — with the default breaker settings."""
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_HOME": str(tmp_path / "home")}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as server, server.wait_ready().client() as client:
        for _ in range(6):  # the breaker opens after 5 consecutive failures by default
            hostile = client.post("/v1/models/iris/predict", json={"features": [HUGE, 3.5, 1.4, 0.2]})
            assert hostile.status_code == 422, hostile.text
        assert client.post("/v1/models/iris/predict", json={"features": IRIS_ROW}).status_code == 200
        assert client.get("/health/ready").status_code == 200


def error_message(response: httpx.Response, shape: str) -> str:
    """The error message, after checking the body has the shape of its protocol's errors."""
    assert response.status_code >= 400, response.text[:300]
    assert response.headers["content-type"].startswith(
        "application/problem+json" if shape == "problem" else "application/json"
    ), response.headers["content-type"]
    body = orjson.loads(response.content)
    assert isinstance(body, dict), body
    if shape == "problem":
        assert set(body) >= PROBLEM_FIELDS, body
        assert body["status"] == response.status_code
        message = body["detail"]
    elif shape == "mlflow":
        assert set(body) == {"error_code", "message"}, body
        message = body["message"]
    else:
        assert set(body) == {"error"}, body
        message = body["error"]
    assert isinstance(message, str) and message.strip(), body
    return message
