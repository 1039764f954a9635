"""Operators' routes: Prometheus metrics and data drift."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from servekit.errors import NotFound
from servekit.monitoring.metrics import exposition
from servekit.server.routes._common import dataplane, json_response
from servekit.server.schemas import DriftAnswer, error_responses

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"}},
)
async def prometheus_metrics(request: Request) -> Response:
    monitor = request.app.state.monitor
    if monitor.metrics is None:
        raise NotFound("metrics are turned off on this server", hint="Set SERVEKIT_METRICS=true to serve them")
    monitor.drain()  # include every request answered before this one
    monitor.refresh()
    body, content_type = exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get(
    "/v1/models/{name}/drift",
    response_model=DriftAnswer,
    responses=error_responses(404, 503),
    summary="Drift of live inputs against the reference profile",
    tags=["models"],
)
async def model_drift(name: str, request: Request) -> Response:
    """Each feature of the served version's recent inputs (a sliding window) compared with the
    training data's profile: KS test (numeric), chi-squared (categorical), PSI (both)."""
    runner = dataplane(request).runner(name)
    monitor = request.app.state.monitor
    monitor.drain()  # the window includes every request answered before this one
    return json_response(await monitor.drift.report(runner))
