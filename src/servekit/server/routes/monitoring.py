"""Operators' routes: Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from servekit.errors import NotFound
from servekit.monitoring.metrics import exposition

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
