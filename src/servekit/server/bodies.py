"""Read request bodies fast and safely: size limits, media types and JSON parsing with orjson."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request

from servekit.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "check_declared_length",
    "check_identity_encoding",
    "check_json_content_type",
    "parse_json",
    "read_body",
    "read_json",
]

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


def check_identity_encoding(header: str | None) -> None:
    """415 for a compressed body on a route that does not decompress (only OIP's infer does)."""
    if header is not None and header.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {header.strip()[:20]!r} is not supported here", hint="Send the body uncompressed"
        )


def parse_json(body: bytes) -> Any:
    """The JSON body, refusing objects that repeat a key (JSON parsers disagree on which one wins,
    so a gateway and the model could read different values)."""
    if not body:
        raise MalformedRequest("the request body is empty; send a JSON object")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    colons = body.count(b":")
    if colons > 1 and _count_keys(value) != colons:
        _check_unique_keys(body)  # a key was lost, or a string holds a colon: look closely
    return value


def _count_keys(value: Any) -> int:
    """Keys of the objects in `value`, skipping lists that do not start with an object or list.

    Every key owns exactly one colon of the body, so when this equals the body's colon count no
    key was dropped as a duplicate. Skipped parts only make the count smaller, which sends the body
    to the exact check: never a duplicate missed, and a body of numbers costs no walk."""
    count, stack = 0, [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            count += len(item)
            children = item.values()
        elif kind is list and item and type(item[0]) in _NESTED:
            children = item
        else:
            continue
        for child in children:  # a loop, not a generator: this runs for every JSON body
            kind = type(child)
            if kind is dict or (kind is list and child):
                push(child)
    return count


_NESTED = (dict, list)


def _check_unique_keys(body: bytes) -> None:
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except RecursionError:  # orjson reads 1024 levels, the standard library fewer
        raise MalformedRequest("the body nests too deeply to be read") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedRequest(f"the key {key[:40]!r} appears more than once in an object; give each key once")
            seen.add(key)
    return found


async def read_json(request: Request, limit: int) -> Any:
    """The body parsed as JSON, with the checks above."""
    check_json_type(request)
    check_identity_encoding(request.headers.get("content-encoding"))
    return parse_json(await read_body(request, limit))
