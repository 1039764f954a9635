"""An optional LRU cache of predictions, keyed by the exact input rows.

One cache per runner, so per model version: a new version starts cold. Off by default; worth it
when the same inputs come back often (dashboards polling, retries) and the model is slow.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from servekit.prediction import Prediction

__all__ = ["PredictionCache"]


class PredictionCache:
    """Least-recently-used predictions of numeric batches (DataFrames are not cached)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, Prediction] = OrderedDict()

    @staticmethod
    def key(batch: Any) -> bytes | None:
        """The cache key of a batch: its shape, dtype and bytes; `None` when it cannot be cached."""
        if not isinstance(batch, np.ndarray):
            return None
        return f"{batch.dtype.str}{batch.shape}".encode() + np.ascontiguousarray(batch).tobytes()

    def get(self, key: bytes) -> Prediction | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: bytes, prediction: Prediction) -> None:
        self._entries[key] = prediction
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
