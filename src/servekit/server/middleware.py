"""Pure ASGI middleware: a request id on every request and response (`X-Request-ID`)."""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
_COUNTER = itertools.count(1)


class RequestIdMiddleware:
    """Accept the caller's `X-Request-ID` when it is sane, else make one; echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, encoded)]
            await send(message)

        await self.app(scope, receive, send_with_id)
