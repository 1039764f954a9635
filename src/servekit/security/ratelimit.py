"""Per-key rate limiting with token buckets (429 + `Retry-After` when a bucket is empty).

Each key (an API key's id, or a client address) has a bucket of `burst` tokens that refills at
`rate_per_s`; a request takes one token. Buckets live in a dict bounded to `max_keys` in
least-recently-used order: the bucket dropped when it is full is the one idle longest, which has
almost always refilled, and a refilled bucket is the same as a new one. Every operation is O(1).
No lock: the server calls it from its one event loop; one thread at a time is safe too.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from servekit.errors import InvalidInput, RateLimited

__all__ = ["DEFAULT_MAX_KEYS", "RateLimited", "TokenBucketLimiter"]

DEFAULT_MAX_KEYS = 100_000


class TokenBucketLimiter:
    """Allows `burst` requests at once per key, then `rate_per_s` per second."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate_per_s")

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        max_keys: int = DEFAULT_MAX_KEYS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_s > 0 or not math.isfinite(rate_per_s):
            raise InvalidInput(f"the rate limit must be a positive number of requests per second, got {rate_per_s}")
        if not burst >= 1 or not math.isfinite(burst):
            raise InvalidInput(f"the rate limit's burst must be at least 1 request, got {burst}")
        if max_keys < 1:
            raise InvalidInput(f"the rate limiter must keep at least one bucket, got max_keys={max_keys}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        # key -> [tokens, time of the last update]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"TokenBucketLimiter(rate_per_s={self.rate_per_s}, burst={self.burst:g}, keys={len(self._buckets)})"

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token from `key`'s bucket: 0.0 if allowed, else the seconds until one is there.

        A refused request takes nothing, so a client that waits the time returned gets through.
        """
        if now is None:
            now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = [self.burst, now]
            buckets[key] = bucket
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:  # a clock that steps back refills nothing
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate_per_s)
                bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate_per_s

    def limit(self, key: str, now: float | None = None) -> None:
        """`take`, raising `RateLimited` (with `retry_after = ceil(wait)`) when refused."""
        wait = self.take(key, now)
        if wait > 0:
            raise RateLimited(
                f"too many requests: the limit is {self.rate_per_s:g} per second, in bursts of up to {self.burst:g}",
                hint=f"Retry in {retry_after(wait)} s",
                retry_after=retry_after(wait),
            )


def retry_after(wait: float) -> int:
    """Whole seconds for a `Retry-After` header: never 0 for a refused request."""
    return max(1, math.ceil(wait))
