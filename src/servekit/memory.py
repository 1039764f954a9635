"""Giving memory back to the operating system after bulk work.

Many-row requests allocate and free tens of megabytes (parsed JSON, input arrays, the prediction
log's pending blocks). glibc's allocator keeps what was freed in its heaps for reuse, so a server
that once took a burst of big requests keeps that resident size for good. `MemoryReleaser`
decides when a `malloc_trim` is worth it (after enough rows, once the bulk work is done) and
`release_free_memory` does it; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable
from functools import cache

__all__ = ["MemoryReleaser", "release_free_memory"]

logger = logging.getLogger("servekit.memory")

RELEASE_AFTER_ROWS = 50_000
"""Rows of many-row requests predicted since the last release that make another one worth its
cost (0.3 to 8 ms, and the pages the next burst faults in again)."""
CHECK_EVERY_S = 1.0


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the operating system; False where that is not
    possible (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class MemoryReleaser:
    """When to release: `RELEASE_AFTER_ROWS` rows since the last release, and no bulk backlog
    left (`busy()` false: what is still queued would be freed right after)."""

    def __init__(self, busy: Callable[[], bool] = lambda: False, *, after_rows: int = RELEASE_AFTER_ROWS) -> None:
        self.rows = 0
        """Rows predicted since the last release."""
        self.releases = 0
        self._busy = busy
        self._after_rows = after_rows
        self._checked = 0.0

    def due(self, now: float | None = None) -> bool:
        """Checked at most every `CHECK_EVERY_S`; true when a release is worth it now (and then
        the row count starts again: call `release` next)."""
        now = time.monotonic() if now is None else now
        if now - self._checked < CHECK_EVERY_S:
            return False
        self._checked = now
        if self.rows < self._after_rows or self._busy():
            return False
        self.rows = 0
        return True

    def release(self) -> bool:
        """Release now (blocking, a few ms: run it off the event loop)."""
        started = time.perf_counter()
        done = release_free_memory()
        if done:
            self.releases += 1
            logger.debug("returned free memory to the OS (%.1f ms)", (time.perf_counter() - started) * 1000)
        return done
