"""servekit's Prometheus metrics (prometheus-client) and their exposition at `/metrics`.

With several server workers (`servekit serve --workers N`), `servekit serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before the workers start: every worker writes its
values there and whichever worker answers `/metrics` reports the totals of all of them. The
variable must be set before `prometheus_client` is first imported, which is why the metrics are
created on first use and not at import.

Every name is listed, with its labels, in docs/monitoring.md.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["Metrics", "exposition", "metrics", "multiprocess_dir", "retire"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREDICT_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Regression outputs have no known scale: symmetric decades from 0.01 to 1e6.
_DECADES = tuple(10.0**k for k in range(-2, 7))
VALUE_BUCKETS = (*(-d for d in reversed(_DECADES)), 0.0, *_DECADES)

MODEL = ("model", "version")


def multiprocess_dir() -> str | None:
    """The folder shared by the workers of one server, when there are several."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class Metrics:
    """Every metric servekit exports (see docs/monitoring.md for meanings and labels)."""

    registry: Any
    requests: Any
    request_duration: Any
    requests_over_budget: Any
    in_flight: Any
    queue_depth: Any
    batch_size: Any
    predict_duration: Any
    predictions: Any
    prediction_values: Any
    cache_hits: Any
    cache_misses: Any
    circuit_state: Any
    model_loaded: Any
    model_load_duration: Any
    drift_score: Any
    drift_detected: Any
    prediction_log_rows: Any
    prediction_log_pending: Any
    monitor_events_dropped: Any


@cache
def metrics() -> Metrics:
    """The metrics of this process, created on first use."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_dir() is None:
        from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR, GCCollector

        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
            registry.register(collector)
        GCCollector(registry=registry)

    def counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
        return Counter(name, doc, labels, registry=registry)

    def gauge(name: str, doc: str, labels: tuple[str, ...], mode: str) -> Any:
        return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

    def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
        return Histogram(name, doc, labels, registry=registry, buckets=buckets)

    http = ("model", "version", "route", "protocol", "status")
    return Metrics(
        registry=registry,
        requests=counter("servekit_requests", "HTTP requests answered", http),
        request_duration=histogram(
            "servekit_request_duration_seconds", "Time to answer an HTTP request", http, REQUEST_BUCKETS
        ),
        requests_over_budget=counter(
            "servekit_requests_over_budget", "Requests slower than their route's latency budget", ("route", "protocol")
        ),
        in_flight=gauge("servekit_requests_in_flight", "HTTP requests being answered", (), "livesum"),
        queue_depth=gauge("servekit_queue_depth", "Requests waiting for a model's runner", MODEL, "livesum"),
        batch_size=histogram("servekit_batch_size", "Rows per predict call (micro-batched)", MODEL, BATCH_BUCKETS),
        predict_duration=histogram(
            "servekit_predict_duration_seconds", "Time of one predict call", (*MODEL, "runtime"), PREDICT_BUCKETS
        ),
        predictions=counter("servekit_predictions", "Predicted rows by class (classifiers)", (*MODEL, "class")),
        prediction_values=histogram("servekit_prediction_value", "Predicted values (regressors)", MODEL, VALUE_BUCKETS),
        cache_hits=counter("servekit_cache_hits", "Predictions answered from the cache", MODEL),
        cache_misses=counter("servekit_cache_misses", "Cacheable predictions not in the cache", MODEL),
        circuit_state=gauge(
            "servekit_circuit_state", "Circuit breaker: 0 closed, 1 open, 2 half-open (probing)", MODEL, "livemax"
        ),
        model_loaded=gauge(
            "servekit_model_loaded", "1 for each model version being served", (*MODEL, "runtime", "variant"), "livemax"
        ),
        model_load_duration=histogram(
            "servekit_model_load_duration_seconds", "Time to load a model version", MODEL, LOAD_BUCKETS
        ),
        drift_score=gauge(
            "servekit_drift_score",
            "Population stability index of a feature, live vs reference",
            (*MODEL, "feature"),
            "livemax",
        ),
        drift_detected=gauge(
            "servekit_drift_detected", "1 when the feature's drift test fires, else 0", (*MODEL, "feature"), "livemax"
        ),
        prediction_log_rows=counter(
            "servekit_prediction_log_rows", "Prediction-log rows by outcome (written or lost)", ("outcome",)
        ),
        prediction_log_pending=gauge(
            "servekit_prediction_log_pending", "Prediction-log rows waiting to be written", (), "livesum"
        ),
        monitor_events_dropped=counter(
            "servekit_monitor_events_dropped", "Monitoring events dropped because the monitor fell behind", ()
        ),
    )


def retire(gauge: Any, *labels: str) -> None:
    """Drop a gauge's series for a model version that stopped serving. With several workers
    prometheus-client cannot drop a series from a worker's file (it warns, and the last value
    would keep being reported): there the series is set to 0 instead."""
    if multiprocess_dir() is None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(0)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The metrics page and its content type (all workers' totals in multiprocess mode)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = metrics().registry
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
