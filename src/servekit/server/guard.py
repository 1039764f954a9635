"""`Guard`: who may call what, and how often — API keys with scopes, and per-key rate limits.

Health probes and the API documentation stay open; `/metrics` is open unless
`metrics_require_key` is set (then it needs the `admin` scope); every other route needs a key with
the `predict` scope once authentication is on. Rate limits count per key, or per client address
when authentication is off. The hot path calls `admit` itself; every other route gets it as an
app-wide FastAPI dependency, so refusals take each protocol's own error shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from servekit.errors import RegistryError, ServekitError
from servekit.security.keys import ADMIN, PREDICT, Authenticator, KeyStore, require, static_keys
from servekit.security.ratelimit import TokenBucketLimiter
from servekit.settings import Settings

__all__ = ["OPEN_PATHS", "Guard", "guard_dependency"]

logger = logging.getLogger("servekit.server")

OPEN_PATHS = frozenset(
    {
        "/health",
        "/health/live",
        "/health/ready",
        "/v2/health/live",
        "/v2/health/ready",
        "/ping",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)


class Guard:
    """Authentication and rate limiting for one app, built from its settings."""

    def __init__(self, settings: Settings, *, database_url: str | None = None) -> None:
        self.settings = settings
        self.auth = _authenticator(settings, database_url)
        options = settings.rate_limit
        self.limiter = TokenBucketLimiter(options.rate_per_s, options.burst) if options.rate_per_s is not None else None
        self.active = self.auth is not None or self.limiter is not None

    def scope_for(self, path: str) -> str | None:
        """The scope a path needs, or `None` for open paths."""
        if path in OPEN_PATHS:
            return None
        if path == "/metrics":
            return ADMIN if self.settings.metrics_require_key else None
        return PREDICT

    async def admit(self, scope: dict[str, Any], path: str) -> None:
        """Raise `Unauthorized`, `Forbidden` or `RateLimited` unless this request may go on."""
        needed = self.scope_for(path)
        if needed is None:
            return
        client = None
        if self.auth is not None:
            principal = await self.auth.check_async(scope["headers"])
            require(principal, needed)
            client = principal.id
        if self.limiter is not None:
            if client is None:
                address = scope.get("client")
                client = address[0] if address else "unknown"
            self.limiter.limit(client)


def _authenticator(settings: Settings, database_url: str | None) -> Authenticator | None:
    """Keys from the settings and the registry's key store; `None` when authentication is off."""
    configured = static_keys(settings.api_keys) if settings.api_keys else []
    if settings.auth is False:
        return None
    store = KeyStore(database_url) if database_url is not None else None
    if settings.auth is None and not configured:  # auto: on when keys exist
        try:
            has_stored = store is not None and any(record.active for record in store.list())
        except ServekitError:
            raise
        except Exception as exc:  # an unreadable key store must not silently leave the API open
            raise RegistryError(f"cannot read the API keys: {exc}") from None
        if not has_stored:
            if store is not None:
                store.close()
            return None
    return Authenticator(configured, store, cache_ttl_s=settings.api_key_cache_s)


async def guard_dependency(request: Request) -> None:
    """App-wide FastAPI dependency: the guard for every route FastAPI answers."""
    guard: Guard = request.app.state.guard
    if guard.active:
        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        await guard.admit(request.scope, path)
