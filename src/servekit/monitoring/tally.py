"""`Tally`: the metric updates of one batch of monitoring events, applied in bulk.

Thousands of requests a second each touching four or five Prometheus children one call at a time
would cost more than the prediction itself; grouped per child, a drained batch becomes one `inc`
per counter child and one vectorised bucket count per histogram child.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Tally", "observe_many"]

_VECTOR_FROM = 16  # fewer values than this: plain `observe` calls are cheaper than numpy


class Tally:
    """Counter increments and histogram observations, grouped per (metric, labels)."""

    __slots__ = ("counts", "observations")

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, tuple[str, ...]], float] = {}
        self.observations: dict[tuple[Any, tuple[str, ...]], list[float]] = {}

    def count(self, metric: Any, labels: tuple[str, ...], amount: float = 1) -> None:
        key = (metric, labels)
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe(self, metric: Any, labels: tuple[str, ...], value: float) -> None:
        key = (metric, labels)
        found = self.observations.get(key)
        if found is None:
            self.observations[key] = [value]
        else:
            found.append(value)

    def observe_all(self, metric: Any, labels: tuple[str, ...], values: list[float]) -> None:
        self.observations.setdefault((metric, labels), []).extend(values)

    def apply(self, child: Any) -> None:
        """Record everything; `child(metric, labels)` gives the labelled child to update."""
        for (metric, labels), amount in self.counts.items():
            child(metric, labels).inc(amount)
        for (metric, labels), values in self.observations.items():
            observe_many(child(metric, labels), values)


def observe_many(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v)` for every value, with one bucket count per bucket for many values."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if len(values) < _VECTOR_FROM or buckets is None or bounds is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    # A value lands in the first bucket whose upper bound is >= it (prometheus-client's rule).
    index = np.searchsorted(np.asarray(bounds, dtype=float), np.asarray(values, dtype=float), side="left")
    counts = np.bincount(index, minlength=len(bounds))
    for position in np.flatnonzero(counts[: len(bounds)]):
        buckets[position].inc(int(counts[position]))
    total.inc(float(np.sum(values)))
