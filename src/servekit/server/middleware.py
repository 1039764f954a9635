"""Pure ASGI middleware: a request id on every request and response (`X-Request-ID`), and the
request's monitoring record (metrics, access log) for every route the hot path does not answer."""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servekit.monitoring.context import CURRENT, RequestContext
from servekit.server.headers import DOCS_PATHS, security_headers

__all__ = ["HEADER", "RequestIdMiddleware", "accepted_request_id", "new_request_id"]

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = b"x-request-id"


def accepted_request_id(value: bytes) -> str | None:
    """The caller's X-Request-ID when it is sane (1-128 safe characters), else `None`."""
    text = value.decode("latin-1")
    return text if _VALID_ID.match(text) else None


def new_request_id() -> str:
    """A 32-hex-character id, unique across processes: a random prefix drawn once per process
    and a counter (no system call per request)."""
    return f"{_PREFIX}{next(_COUNTER):016x}"


_PREFIX = os.urandom(8).hex()
UNMATCHED = "<unmatched>"
"""The route label of requests no route matched (a label per path would be unbounded)."""
_COUNTER = itertools.count(1)


class RequestIdMiddleware:
    """Accept the caller's `X-Request-ID` when it is sane, else make one; echo it back. With a
    monitor, tell it about every request: route template, status, time taken."""

    def __init__(self, app: ASGIApp, monitor: Any | None = None, settings: Any | None = None) -> None:
        self.app = app
        self.monitor = monitor
        self.settings = settings
        self._headers = security_headers(settings) if settings is not None else []
        self._page_headers = security_headers(settings, page=True) if settings is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for key, value in scope["headers"]:
            if key == HEADER:
                request_id = accepted_request_id(value)
                break
        request_id = request_id or new_request_id()
        extra = self._page_headers if scope["path"] in DOCS_PATHS else self._headers
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()
        monitor = self.monitor
        ctx = RequestContext(request_id, UNMATCHED)
        ctx.status = 500  # until the app starts a response

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, encoded), *extra]
                ctx.status = message["status"]
            await send(message)

        if monitor is None:
            await self.app(scope, receive, send_with_id)
            return
        CURRENT.set(ctx)
        monitor.in_flight += 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            monitor.in_flight -= 1
            route = scope.get("route")
            ctx.route = getattr(route, "path", None) or UNMATCHED
            monitor.request_done(ctx, scope["method"], ctx.status, time.perf_counter() - started)
