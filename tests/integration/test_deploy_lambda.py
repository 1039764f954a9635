"""servekit behind Mangum, invoked in-process with API Gateway REST (payload 1.0), HTTP API (2.0)
and function URL events shaped as AWS documents them (tests/fixtures/lambda)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servekit.integrations import aws_lambda
from servekit.integrations.aws_lambda import LambdaApp
from servekit.settings import Settings
from tests.support import iris_bundle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "lambda"
KINDS = ("apigw-rest-v1", "apigw-http-v2", "function-url")
ROW = [5.1, 3.5, 1.4, 0.2]


def event(kind: str, method: str, path: str, body: Any = None, *, b64: bool = False, content_type: str | None = None):
    """The fixture of `kind`, re-aimed at one request."""
    data = copy.deepcopy(json.loads((FIXTURES / f"{kind}.json").read_text()))
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    path, _, query = path.partition("?")
    text = None if raw is None else (base64.b64encode(raw).decode() if b64 else raw.decode())
    data["body"], data["isBase64Encoded"] = text, b64
    if kind == "apigw-rest-v1":
        data["path"], data["httpMethod"] = path, method
        data["requestContext"].update(httpMethod=method, path=f"/prod{path}")
        data["pathParameters"] = {"proxy": path.lstrip("/")}
        params = dict(p.split("=", 1) for p in query.split("&")) if query else None
        data["queryStringParameters"] = params
        data["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()} if params else None
        headers, multi = data["headers"], data["multiValueHeaders"]
        if content_type:
            headers["Content-Type"], multi["Content-Type"] = content_type, [content_type]
    else:
        data["rawPath"], data["rawQueryString"] = path, query
        data["requestContext"]["http"].update(method=method, path=path)
        headers = data["headers"]
        headers.pop("content-length", None)
        if content_type:
            headers["content-type"] = content_type
    return data


def body_of(response: dict[str, Any]) -> bytes:
    raw = response.get("body") or ""
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def json_of(response: dict[str, Any]) -> Any:
    return json.loads(body_of(response))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iris_bundle(tmp_path_factory.mktemp("lambda"))


@pytest.fixture(scope="module")
def app(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaApp]:
    home = tmp_path_factory.mktemp("home")
    lambda_app = LambdaApp(Settings(models=[str(bundle)], trust=True, home=home))
    yield lambda_app
    lambda_app.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("b64", [False, True])
def test_a_prediction_through_every_event_format(app: LambdaApp, kind: str, b64: bool) -> None:
    response = app(event(kind, "POST", "/v1/models/iris/predict", {"features": ROW}, b64=b64), None)
    assert response["statusCode"] == 200, response
    assert response["isBase64Encoded"] is False  # JSON goes back as text
    answer = json.loads(response["body"])
    assert answer["model"] == "iris" and answer["predictions"][0]["prediction"] == "setosa"
    assert response["headers"]["x-request-id"] == answer["request_id"]


@pytest.mark.parametrize("kind", KINDS)
def test_errors_come_back_as_problem_documents(app: LambdaApp, kind: str) -> None:
    invalid = app(event(kind, "POST", "/v1/models/iris/predict", {"features": [1, 2]}, b64=True), None)
    assert invalid["statusCode"] == 422 and invalid["isBase64Encoded"] is False
    assert invalid["headers"]["content-type"] == "application/problem+json"
    problem = json.loads(invalid["body"])
    assert problem["status"] == 422 and "4 values" in problem["detail"]
    assert problem["instance"] == "/v1/models/iris/predict"
    malformed = app(event(kind, "POST", "/v1/models/iris/predict", b"{not json"), None)
    assert malformed["statusCode"] == 400 and json_of(malformed)["status"] == 400
    unknown = app(event(kind, "POST", "/v1/models/nope/predict", {"features": ROW}), None)
    assert unknown["statusCode"] == 404 and "nope" in json_of(unknown)["detail"]
    assert app(event(kind, "GET", "/no/such/route"), None)["statusCode"] == 404


@pytest.mark.parametrize("kind", KINDS)
def test_every_protocol_answers_behind_lambda(app: LambdaApp, kind: str) -> None:
    def call(method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
        response = app(event(kind, method, path, body, **options), None)
        assert response["statusCode"] == 200, (path, response)
        return response

    assert json_of(call("GET", "/health/live")) == {"status": "alive"}
    assert json_of(call("GET", "/health/ready"))["status"] == "ready"
    assert json_of(call("GET", "/v1/models/iris"))["name"] == "iris"
    assert json_of(call("POST", "/predict", {"features": ROW}))["prediction"] == "setosa"
    assert json_of(call("GET", "/health"))["model_loaded"] is True
    oip = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    outputs = json_of(call("POST", "/v2/models/iris/infer", oip))["outputs"]
    assert outputs[0]["data"][0] == "setosa"
    call("GET", "/v2/health/ready")
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    mlflow = {"dataframe_split": {"columns": columns, "data": [ROW]}}
    assert json_of(call("POST", "/invocations", mlflow))["predictions"][0] == "setosa"
    table = b"sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"
    csv = call("POST", "/invocations", table, content_type="text/csv", b64=True)
    assert json_of(csv)["predictions"] == ["setosa"]
    assert json_of(call("POST", "/v1/models/iris:predict", {"instances": [ROW]}))["predictions"][0] == "setosa"
    metrics = call("GET", "/metrics")
    assert metrics["isBase64Encoded"] is False and "servekit" in metrics["body"]
    assert "text/html" in call("GET", "/docs")["headers"]["content-type"]
    assert json_of(call("GET", "/v1/models?limit=5"))


def test_the_model_loads_once_per_container(app: LambdaApp) -> None:
    model = app.app.state.dataplane.models["iris"]
    runner, loaded_at = model.runner, model.loaded_at
    for kind in KINDS:
        assert app(event(kind, "POST", "/v1/models/iris/predict", {"features": ROW}), None)["statusCode"] == 200
    assert model.runner is runner and model.loaded_at == loaded_at
    assert app.cold_start_s < 30


def test_the_handler_builds_the_app_from_the_environment_once(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVEKIT_MODELS", json.dumps([str(bundle)]))
    monkeypatch.setenv("SERVEKIT_TRUST", "true")
    monkeypatch.setenv("SERVEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(aws_lambda, "_app", None)
    first = aws_lambda.handler(event("apigw-http-v2", "POST", "/v1/models/iris/predict", {"features": ROW}), None)
    built = aws_lambda._app
    assert built is not None
    try:
        second = aws_lambda.handler(event("apigw-rest-v1", "POST", "/v1/models/iris/predict", {"features": ROW}), None)
        assert aws_lambda._app is built
        assert json.loads(first["body"])["predictions"] == json.loads(second["body"])["predictions"]
    finally:
        built.close()


def test_a_model_that_cannot_load_answers_503_not_a_crash(bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in bundle.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "iris.joblib").write_bytes(b"tampered")
    lambda_app = LambdaApp(Settings(models=[str(broken)], trust=True, home=tmp_path / "home"))
    try:
        response = lambda_app(event("function-url", "POST", "/v1/models/iris/predict", {"features": ROW}), None)
        assert response["statusCode"] == 503, response
        assert "failed to load" in json.loads(response["body"])["detail"]
        ready = lambda_app(event("function-url", "GET", "/health/ready"), None)
        assert ready["statusCode"] == 503 and json.loads(ready["body"])["models"]["iris"] == "failed"
    finally:
        lambda_app.close()


def test_cold_start_in_a_fresh_process(bundle: Path, tmp_path: Path) -> None:
    """Import, build, load and answer the first event, as a new Lambda container does."""
    script = f"""
import json, sys, time
started = time.perf_counter()
from servekit.integrations.aws_lambda import handler
event = json.load(open({str(FIXTURES / "apigw-http-v2.json")!r}))
response = handler(event, None)
print(json.dumps({{"status": response["statusCode"], "seconds": time.perf_counter() - started}}))
"""
    env = {
        **os.environ,
        "SERVEKIT_MODELS": json.dumps([str(bundle)]),
        "SERVEKIT_TRUST": "true",
        "SERVEKIT_HOME": str(tmp_path / "home"),
        "SERVEKIT_LOG_LEVEL": "warning",
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\nLambda cold start (imports + model load + first event): {outcome['seconds']:.2f} s")
    assert outcome["status"] == 200 and outcome["seconds"] < 60
