"""Helpers the protocol routes share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from servekit.dataplane import DataPlane

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


def body_limit(request: Request) -> int:
    return request.app.state.settings.max_body_bytes


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=JSON_OPTIONS), status_code=status, media_type="application/json", headers=headers
    )


Answer = Callable[..., Awaitable[Any]]
"""`answer(plane, body, request_id, **path_params) -> JSON-able`: a JSON-in, JSON-out route's logic,
shared by its FastAPI endpoint and the raw hot path (`servekit.server.hotpath`)."""

Submit = Callable[..., tuple[Awaitable[Any], Callable[[Any], Any]]]
"""`submit(plane, body, request_id, **path_params) -> (awaitable, finish)` (raw routes:
`submit(plane, body_bytes, headers, request_id, **path_params)`): an `Answer` in two
synchronous halves around its one wait, so that a caller without a task of its own (the HTTP
fast path, `servekit.server.fastpath`) can wait with a callback: `finish(await awaitable)` is
the JSON-able answer."""


def answer_from(submit: Submit) -> Answer:
    """The `Answer` made of a `Submit`'s two halves (for raw routes too: the arguments pass through)."""

    async def answer(*args: Any, **params: Any) -> Any:
        awaitable, finish = submit(*args, **params)
        return finish(await awaitable)

    answer.__name__ = answer.__qualname__ = submit.__name__.replace("submit", "answer", 1)
    return answer


async def answer_json(request: Request, answer: Answer, **params: Any) -> Response:
    """Run `answer` for a FastAPI request: read the JSON body within limits, answer JSON."""
    from servekit.server.bodies import read_json

    body = await read_json(request, body_limit(request))
    return json_response(await answer(dataplane(request), body, request_id(request), **params))
