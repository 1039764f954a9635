"""Map exceptions to responses: problem+json (RFC 9457) on native routes, each protocol's own
error shape on its routes. 5xx bodies never carry internals."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from servekit.errors import Overloaded, ServekitError

__all__ = ["PROBLEM_MEDIA_TYPE", "install_error_handlers", "problem_body", "problem_response"]

logger = logging.getLogger("servekit.server")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://servekit.dev/problems/"
ErrorShaper = Callable[[Request, int, str, str], Response]
_SLUG = re.compile(r"[^a-z0-9]+")


def problem_response(
    request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """An `application/problem+json` response."""
    request_id = request.scope.get("state", {}).get("request_id")
    body = problem_body(request.url.path, status, title, detail, request_id)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


@lru_cache(maxsize=64)
def problem_type(title: str) -> str:
    """The problem's `type` URI, from its title (a handful of titles: computed once each)."""
    return PROBLEM_TYPE_BASE + _SLUG.sub("-", title.lower()).strip("-")


def problem_body(instance: str, status: int, title: str, detail: str, request_id: str | None = None) -> bytes:
    """The JSON of a problem document."""
    body = {
        "type": problem_type(title),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def _shaper_for(request: Request) -> Callable[..., Response]:
    """The error shape of the protocol the request's path belongs to."""
    shapers: list[tuple[str, ErrorShaper]] = request.app.state.error_shapers
    path = request.url.path
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]  # mounted under a prefix: match the app's own paths
    for prefix, shaper in shapers:
        if path.startswith(prefix):
            return shaper
    return problem_response


def _respond(request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    response = _shaper_for(request)(request, status, title, detail)
    if headers:
        response.headers.update(headers)
    return response


async def _servekit_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServekitError)
    status = int(exc.status)
    if status >= 500 and not isinstance(exc, Overloaded):
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return _respond(request, status, exc.title, exc.public_message, exc.headers or None)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    detail = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
    return _respond(request, 422, "Invalid input", detail)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}; see /docs for the API"
    return _respond(request, exc.status_code, title, detail, dict(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s raised", request.method, request.url.path)
    return _respond(request, 500, "Internal error", "The server failed to answer this request; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """One table of handlers; Starlette picks the most specific by the exception's MRO."""
    app.state.error_shapers = []
    app.add_exception_handler(ServekitError, _servekit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def add_error_shape(app: FastAPI, prefix: str, shaper: ErrorShaper) -> None:
    """Routes under `prefix` answer errors with `shaper(request, status, title, detail)`."""
    app.state.error_shapers.append((prefix, shaper))
