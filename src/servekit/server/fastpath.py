"""A short way in for the prediction routes.

FastAPI's routing, dependency solving and exception middleware cost more per request than a
fast model's prediction. This middleware sends requests for the routes marked `@hot` straight
to the same endpoint functions FastAPI registered (so behaviour and OpenAPI stay one), renders
errors with the app's own handlers, and lets every other request through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastRoutes", "hot"]

Endpoint = Callable[..., Awaitable[Response]]


def hot(endpoint: Endpoint) -> Endpoint:
    """Mark an endpoint as worth the short way in (it takes `request` and path parameters only)."""
    endpoint.__servekit_hot__ = True  # type: ignore[attr-defined]
    return endpoint


class FastRoutes:
    """Dispatch `@hot` routes without FastAPI's per-request machinery."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routers: list[APIRouter]) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._routes = _hot_routes(routers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            candidates = self._routes.get(scope["method"])
            if candidates:
                path = scope["path"]
                root = scope.get("root_path", "")
                if root and path.startswith(root):
                    path = path[len(root) :]
                for regex, endpoint in candidates:
                    match = regex.match(path)
                    if match is not None:
                        await self._dispatch(scope, receive, send, endpoint, match.groupdict())
                        return
        await self.app(scope, receive, send)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, params: dict[str, str]
    ) -> None:
        scope["app"] = self.fastapi_app
        request = Request(scope, receive)
        try:
            response = await endpoint(request=request, **params)
        except Exception as exc:
            response = await self._handle(request, exc)
        await response(scope, receive, send)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        handlers = self.fastapi_app.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc


def _hot_routes(routers: list[APIRouter]) -> dict[str, list[tuple[Any, Endpoint]]]:
    """`@hot` routes of the routers, by method, with their compiled path patterns."""
    table: dict[str, list[tuple[Any, Endpoint]]] = {}
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and getattr(route.endpoint, "__servekit_hot__", False):
                for method in route.methods:
                    table.setdefault(method, []).append((route.path_regex, route.endpoint))
    return table
