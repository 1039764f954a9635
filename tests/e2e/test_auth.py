"""API keys and rate limits on a real server: who gets in, with which scope, how often — on the hot
path, on FastAPI routes and on other protocols' routes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_serve import servekit
from tests.support import ServerProcess, iris_bundle

ROW = {"features": [5.1, 3.5, 1.4, 0.2]}
PREDICT_KEY = "predict-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
OIP_BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("auth")
    bundle = iris_bundle(tmp)
    env = {
        "SERVEKIT_HOME": str(tmp / "home"),
        "SERVEKIT_API_KEYS": f"{PREDICT_KEY},{ADMIN_KEY}:admin",
        "SERVEKIT_METRICS_REQUIRE_KEY": "true",
    }
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as process:
        process.wait_ready()  # /health/ready needs no key
        yield process


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/models/iris/predict", ROW),  # hot path
        ("POST", "/predict", ROW),  # hot path, seed shape
        ("GET", "/v1/models", None),  # FastAPI
        ("GET", "/v1/models/iris/drift", None),
        ("POST", "/v2/models/iris/infer", OIP_BODY),  # OIP
        ("POST", "/invocations", {"inputs": [[5.1, 3.5, 1.4, 0.2]]}),  # MLflow
    ],
)
def test_no_key_or_a_wrong_key_is_refused_everywhere(server, method: str, path: str, body: dict | None) -> None:
    with server.client() as client:
        for headers in ({}, bearer("not-a-key-at-all-0000"), {"X-API-Key": "sk_abcdefgh_nope"}):
            refused = client.request(method, path, json=body, headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "x-request-id" in refused.headers
        allowed = client.request(method, path, json=body, headers=bearer(PREDICT_KEY))
        assert allowed.status_code == 200, allowed.text
        also = client.request(method, path, json=body, headers={"X-API-Key": PREDICT_KEY})
        assert also.status_code == 200


def test_each_protocol_keeps_its_error_shape(server) -> None:
    with server.client() as client:
        native = client.post("/v1/models/iris/predict", json=ROW)
        oip = client.post("/v2/models/iris/infer", json=OIP_BODY)
    assert native.headers["content-type"] == "application/problem+json"
    assert native.json()["title"] == "Unauthorized"
    assert "error" in oip.json()


def test_scopes(server) -> None:
    with server.client() as client:
        wrong_scope = client.post("/v1/models/iris/predict", json=ROW, headers=bearer(ADMIN_KEY))
        assert wrong_scope.status_code == 403
        assert "lacks the 'predict' scope" in wrong_scope.json()["detail"]
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(PREDICT_KEY)).status_code == 403
        assert client.get("/metrics", headers=bearer(ADMIN_KEY)).status_code == 200


def test_health_and_docs_stay_open(server) -> None:
    with server.client() as client:
        for path in ("/health/live", "/health/ready", "/health", "/v2/health/ready", "/ping", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 200, path


def test_keys_never_reach_the_log(server) -> None:
    with server.client() as client:
        client.post("/v1/models/iris/predict", json=ROW, headers=bearer(PREDICT_KEY))
        client.post("/v1/models/iris/predict", json=ROW, headers=bearer(PREDICT_KEY + "x"))
    log = server.log()
    assert PREDICT_KEY not in log and ADMIN_KEY not in log


def test_stored_keys_turn_auth_on_and_a_revoked_key_stops_working(tmp_path: Path, servekit_home: Path) -> None:
    created = servekit("keys", "create", "dashboard", "--json")
    assert created.returncode == 0, created.stderr
    import json

    key = json.loads(created.stdout)["key"]
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_API_KEY_CACHE_S": "0.5"}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as process:
        process.wait_ready()
        with process.client() as client:
            assert client.post("/v1/models/iris/predict", json=ROW).status_code == 401
            assert client.post("/v1/models/iris/predict", json=ROW, headers=bearer(key)).status_code == 200
            assert servekit("keys", "revoke", "dashboard").returncode == 0
            deadline = time.monotonic() + 10
            while client.post("/v1/models/iris/predict", json=ROW, headers=bearer(key)).status_code == 200:
                assert time.monotonic() < deadline, "the revoked key still works"
                time.sleep(0.2)
            assert client.post("/v1/models/iris/predict", json=ROW, headers=bearer(key)).status_code == 401


def test_rate_limit_per_key_with_retry_after_and_counted(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    other = "second-key-0123456789abcdef"
    env = {
        "SERVEKIT_HOME": str(tmp_path / "home"),
        "SERVEKIT_API_KEYS": f"{PREDICT_KEY},{other}",
        "SERVEKIT_RATE_LIMIT__RATE_PER_S": "0.5",
        "SERVEKIT_RATE_LIMIT__BURST": "5",
    }
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as process:
        process.wait_ready()
        with process.client() as client:
            answers = [client.post("/predict", json=ROW, headers=bearer(PREDICT_KEY)) for _ in range(8)]
            statuses = [a.status_code for a in answers]
            assert statuses == [200] * 5 + [429] * 3, statuses
            limited = answers[-1]
            assert 1 <= int(limited.headers["retry-after"]) <= 2
            assert limited.json()["title"] == "Too many requests"
            assert client.post("/predict", json=ROW, headers=bearer(other)).status_code == 200  # its own bucket
            metrics = client.get("/metrics").text
    assert 'route="/predict"' in metrics
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("servekit_requests_total{") and 'status="429"' in line and 'route="/predict"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) == 3


def test_rate_limit_per_client_address_without_auth(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_RATE_LIMIT__RATE_PER_S": "0.5", "SERVEKIT_RATE_LIMIT__BURST": "3"}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as process:
        process.wait_ready()
        with process.client() as client:
            statuses = [client.post("/v1/models/iris/predict", json=ROW).status_code for _ in range(5)]
            assert client.get("/health/ready").status_code == 200  # probes are never limited
    assert statuses == [200, 200, 200, 429, 429]
