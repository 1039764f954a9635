"""Read request bodies fast and safely: size limits, media types and JSON parsing with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from servekit.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = ["check_declared_length", "check_json_content_type", "parse_json", "read_body", "read_json"]

JSON_TYPES = ("application/json", "application/problem+json", "text/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing before reading it all when it is over `limit` bytes."""
    check_declared_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise over_limit(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def check_declared_length(declared: str | None, limit: int) -> None:
    """413 when the Content-Length header announces more than `limit` bytes."""
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise MalformedRequest("the Content-Length header is not a number") from None
    if size > limit:
        raise PayloadTooLarge(f"the body is {size} bytes; this server accepts at most {limit}")


def over_limit(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is over {limit} bytes, the most this server accepts")


def check_json_type(request: Request) -> None:
    """415 unless the Content-Type is JSON or absent (curl -d sends form type: accepted too)."""
    check_json_content_type(request.headers.get("content-type", ""))


def check_json_content_type(header: str) -> None:
    """The check of `check_json_type`, on the raw header value."""
    if header == "application/json":  # the usual case, without string work
        return
    content_type = header.split(";")[0].strip().lower()
    if content_type and content_type not in JSON_TYPES and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted here; send application/json")


def parse_json(body: bytes) -> Any:
    if not body:
        raise MalformedRequest("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON, with the checks above."""
    check_json_type(request)
    return parse_json(await read_body(request, limit))
