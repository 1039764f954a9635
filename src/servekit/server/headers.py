"""Response headers every answer carries: security headers, and CORS when origins are configured."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from servekit.settings import Settings

__all__ = ["DOCS_PATHS", "cors_headers", "header_lines", "header_pairs", "security_headers"]

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
"""Pages that load the documentation UI's scripts and styles: they get no Content-Security-Policy."""

CORS_EXPOSED = "x-request-id, retry-after, www-authenticate"
CORS_ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "inference-header-content-length",
)


def security_headers(settings: Settings, *, page: bool = False) -> list[tuple[bytes, bytes]]:
    """Headers that keep browsers from sniffing, framing or caching API answers (`page`: an HTML
    documentation page, which may load its own scripts)."""
    if not settings.security_headers:
        return []
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]
    if not page:
        headers.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"))
    if settings.ssl_certfile is not None:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


def cors_headers(settings: Settings, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    """CORS headers for a simple (non-preflight) request from `origin`, if it is allowed."""
    origins = settings.cors_origins
    if not origins or origin is None:
        return []
    if "*" in origins:
        allowed = b"*"
    elif origin.decode("latin-1") in origins:
        allowed = origin
    else:
        return []
    headers = [(b"access-control-allow-origin", allowed), (b"access-control-expose-headers", CORS_EXPOSED.encode())]
    if allowed != b"*":
        headers.append((b"vary", b"Origin"))
    return headers


def header_pairs(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """Headers as ASGI gives them: lower-case names and values, in bytes."""
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """ASGI-style header pairs as HTTP/1.1 header lines."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)
