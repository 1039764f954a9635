"""Helpers the protocol routes share."""

from __future__ import annotations

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
