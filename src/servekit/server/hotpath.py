"""The raw ASGI way in for the prediction routes.

A prediction on a fast model (an ONNX variant answers a row in ~8 µs) costs far less than
FastAPI's per-request machinery: middleware layers, routing, dependency solving, Request and
Response objects. `ServekitApp` answers the JSON-in, JSON-out prediction routes straight from the
ASGI messages, with the same logic (`answer_*` functions shared with the FastAPI endpoints, which
keep documenting them in OpenAPI), the same body limits and media-type checks, the same
problem+json errors and the same `X-Request-ID`. Every other request goes through FastAPI.

Cross-cutting concerns that must apply to predictions (authentication, rate limits, metrics)
therefore hook in here as well as in middleware.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from servekit.errors import Overloaded, ServekitError
from servekit.monitoring.context import CURRENT, RequestContext
from servekit.server.bodies import (
    check_declared_length,
    check_identity_encoding,
    check_json_content_type,
    over_limit,
    parse_json,
)
from servekit.server.headers import cors_headers, header_lines, header_pairs, security_headers
from servekit.server.hotroutes import HotRoute
from servekit.server.middleware import HEADER as REQUEST_ID_HEADER
from servekit.server.middleware import accepted_request_id, new_request_id
from servekit.server.routes._common import JSON_OPTIONS, Answer

__all__ = ["ServekitApp"]

logger = logging.getLogger("servekit.server")

_JSON = b"application/json"
CLIENT_CLOSED = 499
"""The status recorded for a request whose client went away before it was answered."""


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


class ServekitApp(FastAPI):
    """FastAPI, plus a raw ASGI path for the routes registered with `add_hot_routes`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot: list[tuple[Any, HotRoute]] = []
        self._fast: list[tuple[Any, HotRoute]] = []  # routes with `submit`: the HTTP fast path's
        self._bound: tuple[int, Any, Any] | None = None  # (body limit, data plane, monitor), read from `state`
        self._guard: Any | None = None  # API keys and rate limits, when configured
        self._headers: list[tuple[bytes, bytes]] = []  # security headers on every answer
        self._header_block = b""  # the same, as HTTP header lines
        self._cors = False

    def add_hot_routes(self, routes: Iterable[HotRoute | tuple[str, Answer]]) -> None:
        """POST routes to serve from the raw ASGI messages: `HotRoute`s, or (path, answer) pairs
        for JSON-in, JSON-out routes with problem+json errors."""
        for route in routes:
            hot = route if isinstance(route, HotRoute) else HotRoute(*route)
            entry = (compile_path(hot.path)[0], hot)
            self._hot.append(entry)
            if hot.submit is not None:
                self._fast.append(entry)

    def fast_route(self, path: str) -> tuple[HotRoute, dict[str, str]] | None:
        """The route and path parameters the HTTP fast path (`servekit.server.fastpath`) may
        answer for a POST to `path` (without the root path), or `None`: the request then takes
        the ASGI way. Requests that need an API key, a rate limit or CORS headers take it too."""
        if self._bound is None:
            if getattr(self.state, "settings", None) is None:
                return None
            self._bind()
        if self._guard is not None:
            return None
        for regex, route in self._fast:
            match = regex.match(path)
            if match is not None:
                return route, match.groupdict()
        return None

    @property
    def cors(self) -> bool:
        """Whether answers may carry CORS headers (then requests with an Origin take the ASGI way)."""
        return self._cors

    @property
    def bound(self) -> tuple[int, Any, Any, bytes]:
        """(body limit, data plane, monitor, security header lines), once `fast_route` bound them."""
        return (*self._bound, self._header_block)  # type: ignore[return-value]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self._hot:
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            for regex, route in self._hot:
                match = regex.match(path)
                if match is not None:
                    await self._answer(scope, receive, send, route, match.groupdict())
                    return
        await super().__call__(scope, receive, send)

    def _bind(self) -> None:
        """Read, once, what every hot request needs from the app's state."""
        settings = self.state.settings
        self._headers = security_headers(settings)
        self._header_block = header_lines(self._headers)
        self._cors = bool(settings.cors_origins)
        guard = self.state.guard
        self._guard = guard if guard.active else None
        self._bound = (settings.max_body_bytes, self.state.dataplane, self.state.monitor)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, route: HotRoute, params: dict[str, str]
    ) -> None:
        request_id = content_type = length = origin = encoding = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"content-length":
                length = value.decode("latin-1")
            elif key == b"content-encoding":
                encoding = value.decode("latin-1")
            elif key == REQUEST_ID_HEADER:
                request_id = accepted_request_id(value)
            elif key == b"origin":
                origin = value
        request_id = request_id or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        if self._bound is None:
            self._bind()
        limit, plane, monitor = self._bound  # type: ignore[misc]
        extra = self._headers
        if origin is not None and self._cors:
            extra = [*extra, *cors_headers(self.state.settings, origin)]
        ctx = RequestContext(request_id, route.path)
        CURRENT.set(ctx)
        monitor.in_flight += 1
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = list(extra)
        try:
            if self._guard is not None:  # before the body is read: strangers get nothing for free
                await self._guard.admit(scope, route.path)
            if length is not None:
                check_declared_length(length, limit)
            if route.raw:
                raw = await _read_body(receive, limit)
                named = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                out, media_type, added = await route.answer(plane, raw, named, request_id, **params)
                status, media = 200, media_type.encode()
                headers += header_pairs(added)
            else:
                if content_type is not None:
                    check_json_content_type(content_type)
                if encoding is not None:
                    check_identity_encoding(encoding)
                message = await receive()
                if message["type"] == "http.request" and not message.get("more_body", False):
                    raw = message.get("body", b"")  # the usual case: the whole body in one message
                    if len(raw) > limit:
                        raise over_limit(limit)
                else:
                    raw = await _read_body(receive, limit, message)
                body = parse_json(raw)
                payload = await route.answer(plane, body, request_id, **params)
                status, media, out = 200, _JSON, orjson.dumps(payload, option=JSON_OPTIONS)
        except _Disconnected:
            monitor.in_flight -= 1
            monitor.request_done(ctx, "POST", CLIENT_CLOSED, time.perf_counter() - started)
            return
        except Exception as exc:
            status, media, out, added_headers = error_answer(route, scope["path"], exc, request_id)
            headers += added_headers
        headers += [
            (b"content-type", media),
            (b"content-length", str(len(out)).encode()),
            (REQUEST_ID_HEADER, request_id.encode()),
        ]
        try:
            if status != 200:
                # Sent with the answers of the loop's next turn: under load, a burst of writes
                # wakes the client side once instead of once per rejected request.
                await asyncio.sleep(0)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})
        finally:
            monitor.in_flight -= 1
            monitor.request_done(ctx, "POST", status, time.perf_counter() - started)


def error_answer(
    route: HotRoute, path: str, exc: Exception, request_id: str
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(status, media type, body, extra headers) of the error answer to a hot request that
    raised `exc`: the error's own status and public message for a `ServekitError` (logged when
    it is the server's fault), a generic 500 for anything else (logged with its traceback)."""
    if isinstance(exc, ServekitError):
        status = int(exc.status)
        if status >= 500 and not isinstance(exc, Overloaded):
            logger.error("POST %s failed: %s", path, exc.detail)
        headers = header_pairs(exc.headers)
        media, out = route.error_body(path, status, exc.title, exc.public_message, request_id)
        return status, media, out, headers
    logger.error("POST %s raised", path, exc_info=exc)
    detail = "The server failed to answer this request; see the server log"
    media, out = route.error_body(path, 500, "Internal error", detail, request_id)
    return 500, media, out, []


async def _read_body(receive: Receive, limit: int, message: Message | None = None) -> bytes:
    """The whole body, from `message` (the first one, when already received) on."""
    if message is None:
        message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: the whole body in one message
        if len(body) > limit:
            raise over_limit(limit)
        return body
    chunks = [body]
    received = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise over_limit(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
