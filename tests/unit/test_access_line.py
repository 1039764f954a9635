"""The access log's JSON line: its timestamp and latency, which are formatted by hand for speed."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson

from servekit.monitoring.context import RequestContext
from servekit.monitoring.monitor import Monitor, _iso
from servekit.settings import Settings


def expected_iso(at: float) -> str:
    moment = datetime.fromtimestamp(int(at * 1000) / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_the_timestamp_is_utc_with_milliseconds_also_across_seconds_and_repeats() -> None:
    rng = random.Random(7)
    start = 1_790_000_000.0
    moments = sorted(start + rng.uniform(0, 5) for _ in range(2000))  # many share a millisecond
    moments += [start + 0.9995, start + 1.0, start + 1.0004, start + 59.999, start + 60.0, start + 0.0001]
    for at in moments:
        assert _iso(at) == expected_iso(at), at


def test_an_access_line_is_json_with_the_latency_to_the_microsecond() -> None:
    monitor = Monitor(Settings())
    ctx = RequestContext("abc-123", "/v1/models/{name}/predict")
    ctx.model, ctx.version, ctx.rows = "iris", "2", 3
    line = orjson.loads(monitor._access_line(ctx, "POST", 200, 0.0012345678, 1_790_000_000.25))
    assert line["ts"] == "2026-09-21T14:13:20.250Z"
    assert line["latency_ms"] == 1.235
    assert (line["request_id"], line["route"], line["status"], line["model"], line["version"], line["rows"]) == (
        "abc-123",
        "/v1/models/{name}/predict",
        200,
        "iris",
        "2",
        3,
    )
