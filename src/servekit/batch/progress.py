"""Progress of a scoring job: a rich bar on a terminal, plain periodic lines otherwise.

Progress is measured in input bytes (known before reading), shown as rows, rows/s and ETA.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

__all__ = ["PLAIN_INTERVAL", "ProgressReporter", "make_progress"]

PLAIN_INTERVAL = 10.0
"""Seconds between two plain progress lines when the output is not a terminal."""


class ProgressReporter(Protocol):
    """What the job tells about its progress."""

    def start(self, total: int, done: int, rows: int) -> None: ...

    def advance(self, weight: int, rows: int) -> None: ...

    def finish(self) -> None: ...


def make_progress(enabled: bool, *, console: Any = None, interval: float = PLAIN_INTERVAL) -> ProgressReporter:
    """A rich bar when `console` (default: stderr) is a terminal, else plain lines; or nothing."""
    if not enabled:
        return _Silent()
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    if console.is_terminal:
        return _Bar(console)
    return _Lines(console, interval)


class _Silent:
    def start(self, total: int, done: int, rows: int) -> None:
        return None

    def advance(self, weight: int, rows: int) -> None:
        return None

    def finish(self) -> None:
        return None


class _Counter:
    """Rows and bytes of this session, for the rate and the ETA."""

    def start(self, total: int, done: int, rows: int) -> None:
        self.total, self.done, self.rows = max(total, 1), done, rows
        self.began, self.first_done, self.first_rows = time.monotonic(), done, rows

    def advance(self, weight: int, rows: int) -> None:
        self.done += weight
        self.rows += rows

    def rate(self) -> float:
        elapsed = time.monotonic() - self.began
        return (self.rows - self.first_rows) / elapsed if elapsed > 0 else 0.0

    def eta(self) -> str:
        elapsed = time.monotonic() - self.began
        moved = self.done - self.first_done
        if moved <= 0 or elapsed <= 0:
            return "?"
        return _clock((self.total - self.done) * elapsed / moved)


class _Lines(_Counter):
    def __init__(self, console: Any, interval: float) -> None:
        self.console = console
        self.interval = interval

    def start(self, total: int, done: int, rows: int) -> None:
        super().start(total, done, rows)
        self.last = time.monotonic()

    def advance(self, weight: int, rows: int) -> None:
        super().advance(weight, rows)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.console.print(
                f"scoring: {self.rows:,} rows, {100 * self.done / self.total:.0f}%, "
                f"{self.rate():,.0f} rows/s, ETA {self.eta()}",
                highlight=False,
                soft_wrap=True,
            )

    def finish(self) -> None:
        return None


class _Bar(_Counter):
    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>12,} rows"),
            TextColumn("{task.fields[rate]:>10,.0f} rows/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def start(self, total: int, done: int, rows: int) -> None:
        super().start(total, done, rows)
        self.progress.start()
        self.task = self.progress.add_task("scoring", total=self.total, completed=done, rows=rows, rate=0.0)

    def advance(self, weight: int, rows: int) -> None:
        super().advance(weight, rows)
        self.progress.update(self.task, completed=self.done, rows=self.rows, rate=self.rate())

    def finish(self) -> None:
        self.progress.stop()


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
