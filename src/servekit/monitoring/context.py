"""What the monitoring layer knows about the request being answered.

The HTTP layer (the hot path or the ASGI middleware) opens a `RequestContext` and puts it in a
context variable; the data plane fills in the model, version and rows it served. Neither side
passes it through the protocol code in between.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["CURRENT", "RequestContext"]


class RequestContext:
    """One request as monitoring sees it."""

    __slots__ = ("grouped", "model", "request_id", "route", "rows", "status", "version")

    def __init__(self, request_id: str, route: str) -> None:
        self.request_id = request_id
        self.route = route
        self.model = ""
        self.version = ""
        self.rows = 0
        self.status = 0
        self.grouped = 0
        """Predictions the runner reported with their whole micro-batch (the data plane then does
        not report them one by one)."""


CURRENT: ContextVar[RequestContext | None] = ContextVar("servekit_request", default=None)
