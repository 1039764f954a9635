"""`/metrics` and the access log, in-process: what a Prometheus scrape sees after real requests."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servekit.settings import Settings
from tests.support import diabetes_model, iris_bundle, running_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
NATIVE = "/v1/models/{name}/predict"


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(
        value for (n, found), value in samples.items() if n == name and set(labels.items()) <= set(dict(found).items())
    )


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("metrics")
    bundle = iris_bundle(tmp, name="flowers")
    regressor, _ = diabetes_model(tmp)
    settings = Settings(
        models=[str(bundle), str(regressor)],
        trust=True,
        home=tmp / "home",
        latency_budgets_ms={"default": 10_000, "/predict": 0.000001},
        prediction_log={"enabled": False},
    )
    with running_app(settings) as client:
        stream = io.StringIO()
        client.app.state.monitor.stream = stream
        yield client, stream


def test_requests_are_counted_by_model_route_and_status(served) -> None:
    client, _ = served
    before = scrape(client)
    for _ in range(7):
        assert client.post("/v1/models/flowers/predict", json={"instances": [SETOSA, VIRGINICA]}).status_code == 200
    assert client.post("/v1/models/flowers/predict", json={"features": [1, 2]}).status_code == 422
    after = scrape(client)
    ok = {"model": "flowers", "route": NATIVE, "protocol": "native", "status": "200"}
    assert delta(before, after, "servekit_requests_total", **ok) == 7
    histogram_count = "servekit_request_duration_seconds_count"
    assert delta(before, after, histogram_count, **ok) == 7
    bad = {**ok, "status": "422"}
    assert delta(before, after, "servekit_requests_total", **bad) == 1
    # 14 rows predicted: half setosa, half virginica.
    for label in ("setosa", "virginica"):
        key = {"model": "flowers", "class": label}
        assert delta(before, after, "servekit_predictions_total", **key) == 7
    calls = delta(before, after, "servekit_batch_size_count", model="flowers")
    rows = delta(before, after, "servekit_batch_size_sum", model="flowers")
    assert calls >= 1 and rows == 14  # every predicted row went through a predict call
    assert delta(before, after, "servekit_predict_duration_seconds_count", model="flowers") == calls


def test_regressors_get_a_value_histogram_and_routes_without_model_are_counted(served) -> None:
    client, _ = served
    before = scrape(client)
    response = client.post("/v1/models/diabetes/predict", json={"instances": [[0.01] * 10, [0.05] * 10]})
    assert response.status_code == 200
    client.get("/health/live")
    after = scrape(client)
    values = [p["prediction"] for p in response.json()["predictions"]]
    count = "servekit_prediction_value_count"
    assert delta(before, after, count, model="diabetes") == 2
    # Buckets are cumulative; regressors' buckets include negatives, so there is no _sum sample.
    for bound in (10.0, 100.0, 1000.0):
        below = sum(v <= bound for v in values)
        bucket = delta(before, after, "servekit_prediction_value_bucket", model="diabetes", le=str(bound))
        assert bucket == below, bound
    live = {"route": "/health/live", "protocol": "health", "status": "200", "model": ""}
    assert delta(before, after, "servekit_requests_total", **live) == 1


def test_unknown_paths_share_one_label(served) -> None:
    client, _ = served
    before = scrape(client)
    for path in ("/nope/1", "/nope/2", "/nope/3"):
        assert client.get(path).status_code == 404
    after = scrape(client)
    key = {"route": "<unmatched>", "status": "404"}
    assert delta(before, after, "servekit_requests_total", **key) == 3
    assert not any("/nope/" in str(labels) for _, labels in after)


def test_requests_over_their_route_budget_are_counted(served) -> None:
    client, _ = served
    before = scrape(client)
    assert client.post("/predict", json={"features": SETOSA}).status_code == 200
    assert client.post("/v1/models/flowers/predict", json={"features": SETOSA}).status_code == 200
    after = scrape(client)
    name = "servekit_requests_over_budget_total"
    assert delta(before, after, name, route="/predict") == 1  # budget ~0 ms
    assert delta(before, after, name, route=NATIVE) == 0  # budget 10 s


def test_loaded_versions_and_live_gauges(served) -> None:
    client, _ = served
    samples = scrape(client)
    assert total(samples, "servekit_model_loaded", model="flowers") == 1
    assert total(samples, "servekit_model_load_duration_seconds_count", model="flowers") >= 1
    assert total(samples, "servekit_circuit_state", model="flowers") == 0
    assert ("servekit_queue_depth", (("model", "flowers"), ("version", ""))) in samples
    assert ("servekit_requests_in_flight", ()) in samples
    assert total(samples, "process_resident_memory_bytes") > 0


def test_access_log_has_one_json_line_per_request_with_the_callers_id(served) -> None:
    client, stream = served
    rows = {"instances": [SETOSA, SETOSA, VIRGINICA]}
    response = client.post("/v1/models/flowers/predict", json=rows, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    client.get("/metrics")  # drains the monitor
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "abc-123"]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["logger"] == "servekit.access"
    assert (entry["method"], entry["route"], entry["status"], entry["model"], entry["rows"]) == (
        "POST",
        NATIVE,
        200,
        "flowers",
        3,
    )
    assert entry["latency_ms"] > 0 and entry["ts"].endswith("Z")


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    settings = Settings(
        models=[str(bundle)], trust=True, metrics=False, access_log=False, prediction_log={"enabled": False}
    )
    with running_app(settings) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert "metrics are turned off" in response.json()["detail"]
        assert client.post("/v1/models/iris/predict", json={"features": SETOSA}).status_code == 200


def test_an_open_circuit_shows_in_readiness_metrics_and_answers(tmp_path: Path) -> None:
    regressor, _ = diabetes_model(tmp_path)
    settings = Settings(
        models=[str(regressor)],
        trust=True,
        runner={"circuit_failures": 2, "circuit_reset_s": 0.3},
        prediction_log={"enabled": False},
    )
    with running_app(settings) as client:
        runtime = client.app.state.dataplane.models["diabetes"].runner.predictor.runtime
        real = runtime.predict

        def broken(batch: Any) -> Any:
            raise RuntimeError("weights are gone")

        runtime.predict = broken
        row = {"features": [0.01] * 10}
        for _ in range(2):
            failed = client.post("/v1/models/diabetes/predict", json=row)
            assert failed.status_code == 500
            assert "weights" not in failed.text  # no internals to the client
        refused = client.post("/v1/models/diabetes/predict", json=row)
        assert refused.status_code == 503
        assert refused.json()["title"] == "Model unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["models"] == {"diabetes": "unavailable"}
        assert total(scrape(client), "servekit_circuit_state", model="diabetes") == 1
        runtime.predict = real  # the model recovers
        time.sleep(0.35)
        assert client.post("/v1/models/diabetes/predict", json=row).status_code == 200  # the probe
        assert client.get("/health/ready").status_code == 200
        assert total(scrape(client), "servekit_circuit_state", model="diabetes") == 0
