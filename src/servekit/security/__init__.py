"""API keys with scopes, and per-key rate limiting.

Names are imported on first use, so the rate limiter does not pull in SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Authenticator",
    "Forbidden",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "RateLimited",
    "StaticKey",
    "TokenBucketLimiter",
    "Unauthorized",
    "require",
    "static_keys",
]

_LAZY = {name: "servekit.security.keys" for name in __all__} | {
    "RateLimited": "servekit.security.ratelimit",
    "TokenBucketLimiter": "servekit.security.ratelimit",
}

if TYPE_CHECKING:
    from servekit.security.keys import (
        Authenticator,
        Forbidden,
        KeyRecord,
        KeyStore,
        Principal,
        StaticKey,
        Unauthorized,
        require,
        static_keys,
    )
    from servekit.security.ratelimit import RateLimited, TokenBucketLimiter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servekit.security' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
