"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from servekit.server.routes._common import dataplane, json_response
from servekit.server.schemas import Status

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Status, summary="The process is up")
async def live() -> Response:
    return json_response({"status": "alive"})


@router.get(
    "/ready",
    response_model=Status,
    responses={503: {"model": Status, "description": "A model is still loading or failed to load"}},
    summary="Every configured model is loaded",
)
async def ready(request: Request) -> Response:
    plane = dataplane(request)
    states = {name: m.status for name, m in plane.models.items()}
    if plane.ready:
        return json_response({"status": "ready", "models": states})
    return json_response({"status": "not ready", "models": states}, status=503)
