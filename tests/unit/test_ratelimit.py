"""The token-bucket rate limiter, driven by an injected clock."""

from __future__ import annotations

import math
import time

import pytest

from servekit.errors import InvalidInput, ServekitError
from servekit.security.ratelimit import RateLimited, TokenBucketLimiter, retry_after


def test_burst_then_refill_at_the_rate() -> None:
    limiter = TokenBucketLimiter(rate_per_s=2, burst=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5)
    assert limiter.take("a", now=0.25) == pytest.approx(0.25)  # a refusal takes nothing
    assert limiter.take("a", now=0.5) == 0.0  # one token came back after 1/rate s
    assert limiter.take("a", now=0.5) == pytest.approx(0.5)
    assert limiter.take("a", now=1.5) == 0.0
    assert limiter.take("a", now=1.5) == 0.0  # 1 s refilled two tokens
    assert limiter.take("a", now=1.5) > 0


def test_refill_stops_at_the_burst() -> None:
    limiter = TokenBucketLimiter(rate_per_s=10, burst=4)
    limiter.take("a", now=0.0)
    allowed = sum(limiter.take("a", now=1000.0) == 0.0 for _ in range(10))
    assert allowed == 4


def test_sustained_traffic_gets_burst_plus_rate() -> None:
    limiter = TokenBucketLimiter(rate_per_s=5, burst=10)
    allowed = sum(limiter.take("a", now=ms / 1000) == 0.0 for ms in range(10_000))  # 1000 requests/s for 10 s
    assert allowed in (10 + 50 - 1, 10 + 50)  # the last token may land just after the window


def test_keys_have_separate_buckets() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1, burst=1)
    assert limiter.take("a", now=0.0) == 0.0
    assert limiter.take("a", now=0.0) == pytest.approx(1.0)
    assert limiter.take("b", now=0.0) == 0.0
    assert len(limiter) == 2


@pytest.mark.parametrize(("rate", "expected_wait", "header"), [(0.1, 10.0, 10), (0.3, 1 / 0.3, 4), (4, 0.25, 1)])
def test_retry_after_is_the_wait_rounded_up(rate: float, expected_wait: float, header: int) -> None:
    limiter = TokenBucketLimiter(rate_per_s=rate, burst=1)
    limiter.limit("a", now=0.0)
    assert limiter.take("a", now=0.0) == pytest.approx(expected_wait)
    with pytest.raises(RateLimited) as info:
        limiter.limit("a", now=0.0)
    error = info.value
    assert isinstance(error, ServekitError)
    assert error.status == 429 and error.title == "Too many requests"
    assert error.retry_after == header == math.ceil(expected_wait)
    assert error.headers == {"Retry-After": str(header)}
    assert error.public_message == error.detail and f"Retry in {header} s" in error.detail


def test_retry_after_is_never_zero() -> None:
    assert retry_after(1e-9) == 1 and retry_after(1.0) == 1 and retry_after(1.01) == 2


def test_the_least_recently_used_bucket_is_dropped_beyond_max_keys() -> None:
    limiter = TokenBucketLimiter(rate_per_s=0.001, burst=1, max_keys=3)
    for key in "abc":
        limiter.take(key, now=0.0)  # each bucket is now empty
    limiter.take("a", now=1.0)  # a is used again: b is the least recent
    limiter.take("d", now=1.0)
    assert len(limiter) == 3
    assert limiter.take("b", now=1.0) == 0.0  # b was dropped: a new, full bucket
    assert limiter.take("a", now=1.0) > 0  # a kept its empty bucket
    for i in range(1000):
        limiter.take(f"flood-{i}", now=2.0)
    assert len(limiter) == 3


def test_a_clock_stepping_back_refills_nothing() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1, burst=1)
    assert limiter.take("a", now=100.0) == 0.0
    assert limiter.take("a", now=50.0) == pytest.approx(1.0)
    assert limiter.take("a", now=100.5) == pytest.approx(0.5)
    assert limiter.take("a", now=101.0) == 0.0


def test_the_injected_clock_is_used_without_now() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(rate_per_s=1, burst=1, clock=lambda: now[0])
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.take("a") == 0.0


def test_default_clock_is_monotonic_time() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1000, burst=1)
    assert limiter.take("a") == 0.0
    assert 0 < limiter.take("a") <= 0.001
    time.sleep(0.002)
    assert limiter.take("a") == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_s": 0, "burst": 1},
        {"rate_per_s": -1, "burst": 1},
        {"rate_per_s": math.inf, "burst": 1},
        {"rate_per_s": math.nan, "burst": 1},
        {"rate_per_s": 1, "burst": 0.5},
        {"rate_per_s": 1, "burst": math.nan},
        {"rate_per_s": 1, "burst": 1, "max_keys": 0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidInput):
        TokenBucketLimiter(**kwargs)


def test_take_is_fast() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1e9, burst=1e9)
    rounds = 50_000
    start = time.perf_counter()
    for i in range(rounds):
        limiter.take(f"key-{i % 100}")
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per take"  # ~1 µs on a laptop; loose for CI
