"""Freed memory goes back to the operating system after bulk work."""

from __future__ import annotations

import asyncio
import platform
import time

import pytest

from servekit.memory import CHECK_EVERY_S, MemoryReleaser, release_free_memory
from servekit.monitoring.context import RequestContext
from servekit.monitoring.monitor import Monitor
from servekit.settings import Settings

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_freed_heap_memory_is_returned_to_the_os() -> None:
    blocks = [bytes(64 * 1024) for _ in range(1600)]  # ~100 MB of heap chunks under the mmap threshold
    last = blocks[-1]  # the top chunk stays in use: the heap cannot simply shrink from its end
    grown = resident_mb()
    del blocks
    assert resident_mb() > grown - 20  # freed, but glibc keeps the pages
    assert release_free_memory() is True
    assert resident_mb() < grown - 60
    assert len(last) == 64 * 1024


def test_a_release_is_due_after_enough_rows_once_the_backlog_is_gone() -> None:
    backlog = [True]
    releaser = MemoryReleaser(lambda: backlog[0], after_rows=1000)
    releaser.rows = 999
    assert not releaser.due(now=100.0)
    releaser.rows = 1000
    assert not releaser.due(now=100.5)  # checked at most every CHECK_EVERY_S
    assert not releaser.due(now=100.0 + CHECK_EVERY_S)  # rows enough, but the backlog still holds memory
    backlog[0] = False
    assert releaser.due(now=100.0 + 2 * CHECK_EVERY_S)
    assert releaser.rows == 0  # counting starts again
    assert not releaser.due(now=100.0 + 3 * CHECK_EVERY_S)


def monitor_after(traffic: list[tuple[int, int]], *, wait_s: float) -> Monitor:
    """A running monitor told of `traffic` ((requests, rows each), in order), then given up to
    `wait_s` for a release; stopped."""

    async def main() -> Monitor:
        monitor = Monitor(Settings(access_log=False, metrics=False))
        await monitor.start()
        for requests, rows in traffic:
            for i in range(requests):
                ctx = RequestContext(f"r{i}", "/v1/models/{name}/predict")
                ctx.rows = rows
                monitor.request_done(ctx, "POST", 200, 0.001)
        deadline = time.monotonic() + wait_s
        while not monitor.memory.releases and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor

    return asyncio.run(main())


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_the_monitor_releases_memory_after_many_row_requests() -> None:
    monitor = monitor_after([(60, 1000), (5000, 1)], wait_s=3 * CHECK_EVERY_S)
    assert monitor.memory.releases == 1
    assert monitor.memory.rows == 0  # counting starts again after a release


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_single_row_traffic_never_triggers_a_release() -> None:
    monitor = monitor_after([(60_000, 1)], wait_s=1.5 * CHECK_EVERY_S)
    assert monitor.memory.releases == 0
    assert monitor.memory.rows == 0
