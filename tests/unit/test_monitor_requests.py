"""Request metrics recorded from a drained slice: counts, durations and latency budgets per group."""

from __future__ import annotations

from typing import Any

from servekit.monitoring.context import RequestContext
from servekit.monitoring.monitor import Monitor
from servekit.settings import Settings

NATIVE = "/v1/models/{name}/predict"


def request(model: str, route: str) -> RequestContext:
    ctx = RequestContext("id", route)
    ctx.model, ctx.version, ctx.rows = model, "1", 1
    return ctx


def test_requests_are_counted_per_model_route_and_status_with_durations_and_budgets() -> None:
    monitor = Monitor(Settings(access_log=False, latency_budgets_ms={"default": 100, "/predict": 5}))
    assert monitor.metrics is not None
    registry = monitor.metrics.registry
    model = "drained-model"  # the registry is the process's: labels of its own keep the counts apart

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def snapshot() -> dict[str, Any]:
        native = {"model": model, "version": "1", "route": NATIVE, "protocol": "native"}
        seed = {"model": model, "version": "1", "route": "/predict", "protocol": "seed"}
        return {
            "native 200": value("servekit_requests_total", **native, status="200"),
            "native 422": value("servekit_requests_total", **native, status="422"),
            "seed 200": value("servekit_requests_total", **seed, status="200"),
            "native 200 count": value("servekit_request_duration_seconds_count", **native, status="200"),
            "native 200 sum": value("servekit_request_duration_seconds_sum", **native, status="200"),
            "seed 200 sum": value("servekit_request_duration_seconds_sum", **seed, status="200"),
            "native over": value("servekit_requests_over_budget_total", route=NATIVE, protocol="native"),
            "seed over": value("servekit_requests_over_budget_total", route="/predict", protocol="seed"),
        }

    before = snapshot()
    answered = [
        (NATIVE, 200, 0.001),
        (NATIVE, 200, 0.2),  # over the default budget (100 ms)
        (NATIVE, 422, 0.0005),
        ("/predict", 200, 0.004),
        (NATIVE, 200, 0.003),
        ("/predict", 200, 0.006),  # over its route's budget (5 ms)
        ("/predict", 200, 0.007),  # too
        ("/predict", 200, 0.005),  # at the budget: not over it
    ]
    for route, status, seconds in answered:
        monitor.request_done(request(model, route), "POST", status, seconds)
    assert monitor.drain() == len(answered)
    after = snapshot()
    change = {key: round(after[key] - before[key], 9) for key in before}
    assert change == {
        "native 200": 3,
        "native 422": 1,
        "seed 200": 4,
        "native 200 count": 3,
        "native 200 sum": 0.204,
        "seed 200 sum": 0.022,
        "native over": 1,
        "seed over": 2,
    }
