"""What a protocol module declares for the raw hot path (`servekit.server.hotpath`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from servekit.server.problems import PROBLEM_MEDIA_TYPE, problem_body

__all__ = ["ErrorBody", "HotRoute", "problem_error_body"]

ErrorBody = Callable[[str, int, str, str, "str | None"], tuple[bytes, bytes]]
"""`(instance, status, title, public detail, request id) -> (media type, body)`."""


def problem_error_body(
    instance: str, status: int, title: str, detail: str, request_id: str | None
) -> tuple[bytes, bytes]:
    """The native error shape: application/problem+json."""
    return PROBLEM_MEDIA_TYPE.encode(), problem_body(instance, status, title, detail, request_id)


@dataclass(frozen=True)
class HotRoute:
    """A POST route answered from the raw ASGI messages.

    JSON routes (`raw=False`): `answer(plane, parsed_json, request_id, **path_params)` returns
    what to send as JSON. Raw routes: `answer(plane, body_bytes, headers, request_id, **params)`
    returns `(content, media_type, extra_headers)`; `headers` maps lower-case names to values.
    A JSON route may also give `submit`, its answer in two synchronous halves
    (`servekit.server.routes._common.Submit`): the HTTP fast path then answers it without a task.
    """

    path: str
    answer: Callable[..., Awaitable[Any]]
    raw: bool = False
    error_body: ErrorBody = problem_error_body
    submit: Callable[..., tuple[Awaitable[Any], Callable[[Any], Any]]] | None = None
