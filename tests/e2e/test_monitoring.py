"""Monitoring of a real `servekit serve` process: multiprocess metrics and the JSON logs."""

from __future__ import annotations

import time

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_serve import RELOAD_ENV, promote, push_iris
from tests.support import ServerProcess, iris_bundle

ROW = [5.1, 3.5, 1.4, 0.2]
ROUTE = "/v1/models/{name}/predict"


def requests_counted(text: str, **labels: str) -> float:
    found = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "servekit_requests_total" and labels.items() <= sample.labels.items():
                found += sample.value
    return found


def test_two_workers_report_the_total_of_both(tmp_path) -> None:
    bundle = iris_bundle(tmp_path)
    with ServerProcess(["serve", str(bundle), "--trust", "--workers", "2"]) as server:
        server.wait_ready()
        both_ready(server)
        for _ in range(60):  # a new connection each time: the workers share them out
            with server.client() as client:
                assert client.post("/v1/models/iris/predict", json={"features": ROW}).status_code == 200
        time.sleep(0.2)  # the worker that does not answer the scrape records within its drain interval (50 ms)
        with server.client() as client:
            scrapes = [client.get("/metrics").text for _ in range(8)]
        assert server.terminate() == 0
        access = [line for line in json_lines(server.log()) if line.get("route") == ROUTE]
    assert len(access) == 60
    assert len({line["pid"] for line in access}) == 2, "both workers answered"
    for text in scrapes:  # whichever worker answers the scrape reports all 60
        assert requests_counted(text, route=ROUTE, status="200", model="iris") == 60


def test_two_workers_report_a_replaced_version_as_no_longer_loaded(tmp_path, servekit_home) -> None:
    push_iris(tmp_path, servekit_home, 5, 8)
    promote(1)
    with ServerProcess(["serve", "iris@production", "--workers", "2"], env=RELOAD_ENV) as server:
        server.wait_ready()
        both_ready(server)
        promote(2)
        deadline, streak = time.monotonic() + 30, 0
        while streak < 20:  # fresh connections in a row all answered by version 2: both workers reloaded
            assert time.monotonic() < deadline, server.log()[-2000:]
            with server.client() as client:
                streak = streak + 1 if client.get("/v1/models/iris").json()["version"] == 2 else 0
        with server.client() as client:
            scrapes = [client.get("/metrics").text for _ in range(8)]
        assert server.terminate() == 0
        log = server.log()
    for text in scrapes:
        assert loaded(text, version="1") == 0 and loaded(text, version="2") == 1, text
    assert "Removal of labels" not in log and "Traceback" not in log, log[-2000:]


def loaded(text: str, **labels: str) -> float:
    """The highest `servekit_model_loaded` sample matching `labels` (0 when there is none)."""
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "servekit_model_loaded" and labels.items() <= sample.labels.items()
    ]
    return max(values, default=0.0)


def both_ready(server: ServerProcess, timeout: float = 60) -> None:
    """wait_ready sees one worker; wait until 20 new connections in a row find a ready one."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 20:
        assert time.monotonic() < deadline, "a worker never became ready"
        with server.client() as client:
            streak = streak + 1 if client.get("/health/ready").status_code == 200 else 0


def json_lines(log: str) -> list[dict]:
    return [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_one_json_access_line_per_request_with_the_callers_id(tmp_path) -> None:
    bundle = iris_bundle(tmp_path)
    with ServerProcess(["serve", str(bundle), "--trust"]) as server:
        server.wait_ready()
        with server.client() as client:
            ok = client.post("/v1/models/iris/predict", json={"features": ROW}, headers={"X-Request-ID": "trace-1"})
            bad = client.post("/v1/models/iris/predict", json={"features": [1]}, headers={"X-Request-ID": "trace-2"})
        assert (ok.status_code, bad.status_code) == (200, 422)
        assert ok.headers["x-request-id"] == "trace-1"
        assert server.terminate() == 0
        lines = json_lines(server.log())
    by_id = {line.get("request_id"): line for line in lines if line.get("logger") == "servekit.access"}
    assert by_id["trace-1"]["status"] == 200 and by_id["trace-1"]["route"] == ROUTE
    assert by_id["trace-1"]["model"] == "iris" and by_id["trace-1"]["rows"] == 1
    assert by_id["trace-2"]["status"] == 422
    # servekit's and uvicorn's own lines are JSON too.
    assert any(line.get("logger") == "servekit.dataplane" and "ready" in line["message"] for line in lines)
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)


def test_sigterm_flushes_the_prediction_log_exactly_once_per_request(tmp_path) -> None:
    """N predictions, then SIGTERM: exactly N rows, though the flush interval was never reached."""
    import sqlite3

    from servekit.monitoring.predlog import read_log

    home = tmp_path / "home"
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_HOME": str(home), "SERVEKIT_PREDICTION_LOG__FLUSH_INTERVAL_S": "600"}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as server:
        server.wait_ready()
        with server.client() as client:
            for i in range(37):
                rows = [ROW] * (1 + i % 3)
                response = client.post(
                    "/v1/models/iris/predict", json={"instances": rows}, headers={"X-Request-ID": f"r{i}"}
                )
                assert response.status_code == 200
        assert server.terminate() == 0
    logged = list(read_log(f"sqlite:///{home / 'registry.db'}"))
    assert [r.request_id for r in logged] == [f"r{i}" for i in range(37)]
    assert [r.rows for r in logged] == [1 + i % 3 for i in range(37)]
    assert {r.model for r in logged} == {"iris"}
    with sqlite3.connect(home / "registry.db") as db:
        assert db.execute("SELECT sum(records) FROM prediction_log_blocks").fetchone()[0] == 37
