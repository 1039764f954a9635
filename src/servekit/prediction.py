"""`Prediction`: what every runtime returns, independent of any transport."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """Outputs of one `predict` call over a batch of rows.

    `outputs` holds one label (classification) or value (regression) per row, shape `(n,)`, or
    `(n, k)` for multi-output regressors. Classifiers also give `probabilities`, shape
    `(n, len(classes))`, columns in the order of `classes`.
    """

    outputs: np.ndarray
    probabilities: np.ndarray | None = None
    classes: Sequence[Any] | None = None
    _part_of: tuple[Prediction, int, int] | None = field(default=None, repr=False, compare=False)
    """(whole, start, stop) for the part of a micro-batch `take` gave: its records come from
    the whole's, converted once for every request of the batch."""
    _records: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.outputs.shape[0])

    def take(self, start: int, stop: int) -> Prediction:
        """Rows `start:stop`, used to split a micro-batch back into its requests."""
        probabilities = None if self.probabilities is None else self.probabilities[start:stop]
        return Prediction(self.outputs[start:stop], probabilities, self.classes, (self, start, stop))

    def detached(self) -> Prediction:
        """The same outputs without the records cached for the response or the link to a whole
        micro-batch (what the monitor keeps while its records wait to be written)."""
        if self._part_of is None and self._records is None:
            return self
        return Prediction(self.outputs, self.probabilities, self.classes)

    @staticmethod
    def concat(parts: Sequence[Prediction]) -> Prediction:
        """Join predictions made by the same model, in order."""
        first = parts[0]
        probabilities = (
            None if first.probabilities is None else np.concatenate([p.probabilities for p in parts])  # type: ignore[misc]
        )
        return Prediction(np.concatenate([p.outputs for p in parts]), probabilities, first.classes)

    def values(self) -> list[Any]:
        """The labels or values as plain Python (non-finite floats become None)."""
        return _to_python(self.outputs)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: `prediction`, and for classifiers `probabilities` and
        `confidence` (the highest probability)."""
        if self._part_of is not None:
            whole, start, stop = self._part_of
            if whole._records is None:
                whole._records = whole.to_records()
            return whole._records[start:stop]
        labels = _to_python(self.outputs)
        if self.probabilities is None or self.classes is None:
            return [{"prediction": label} for label in labels]
        names = _class_names(self.classes)
        records = []
        for label, row in zip(labels, self.probabilities.tolist(), strict=True):
            records.append(
                {
                    "prediction": label,
                    "probabilities": dict(zip(names, row, strict=True)),
                    "confidence": max(row),
                }
            )
        return records


def _class_names(classes: Sequence[Any]) -> list[str]:
    """JSON keys for the classes, cached per classes object (the same list on every request)."""
    key = id(classes)
    cached = _NAMES.get(key)
    if cached is not None and cached[0] is classes:
        return cached[1]
    names = [str(c) for c in _to_python(np.asarray(classes))]
    if len(_NAMES) > _NAMES_KEPT:
        _NAMES.clear()
    _NAMES[key] = (classes, names)
    return names


_NAMES: dict[int, tuple[Any, list[str]]] = {}
_NAMES_KEPT = 256


def _to_python(values: np.ndarray) -> list[Any]:
    """Numpy values as plain JSON-able Python values; non-finite floats become None."""
    out = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return _replace_non_finite(out)
    return out


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, list):
        return [_replace_non_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
