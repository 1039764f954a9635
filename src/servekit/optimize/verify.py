"""Numerical equivalence of a candidate variant and the original model on the same rows.

Classifiers: every label identical and every probability within `tolerance` (absolute).
Regressors: every value within `tolerance`, absolute below 1 and relative above (values of a few
hundred are past what float32 holds to 1e-5 absolute). Non-finite outputs must match exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from servekit.prediction import Prediction

__all__ = ["Comparison", "compare"]


@dataclass(frozen=True)
class Comparison:
    """How far a candidate's predictions are from the original's."""

    rows: int
    max_abs_diff: float
    """Over probabilities for classifiers, values for regressors; `inf` when shapes differ."""
    label_agreement: float | None
    """Share of rows with the same label (classifiers), else `None`."""
    problem: str | None
    """Why the two differ in kind (shape, classes), before any tolerance applies."""
    max_scaled_diff: float | None = None
    """Regressors: max of |a - b| / max(1, |a|), what the tolerance applies to."""

    def verified(self, tolerance: float) -> bool:
        measured = self.max_abs_diff if self.max_scaled_diff is None else self.max_scaled_diff
        return self.problem is None and self.label_agreement in (None, 1.0) and measured <= tolerance

    def explain(self, tolerance: float) -> str:
        """Why `verified(tolerance)` is false, in a few words."""
        if self.problem is not None:
            return self.problem
        if self.label_agreement is not None and self.label_agreement < 1.0:
            changed = round((1 - self.label_agreement) * self.rows)
            return f"{changed} of {self.rows} labels differ (max diff {self.max_abs_diff:.2g})"
        if self.max_scaled_diff is not None:
            return f"max relative diff {self.max_scaled_diff:.2g} > tolerance {tolerance:g} on {self.rows} rows"
        return f"max diff {self.max_abs_diff:.2g} > tolerance {tolerance:g} on {self.rows} rows"


def compare(original: Prediction, candidate: Prediction) -> Comparison:
    """Compare two predictions over the same rows."""
    rows = len(original)
    if len(candidate) != rows:
        return Comparison(rows, math.inf, None, f"{len(candidate)} predictions for {rows} rows")
    if original.probabilities is None:
        if candidate.probabilities is not None:
            return Comparison(rows, math.inf, None, "the variant classifies, the original does not")
        scale = np.maximum(1.0, np.abs(np.asarray(original.outputs, dtype="float64")))
        scaled = _max_diff(original.outputs / scale, np.reshape(candidate.outputs, np.shape(scale)) / scale)
        return Comparison(rows, _max_diff(original.outputs, candidate.outputs), None, None, scaled)
    if candidate.probabilities is None:
        return Comparison(rows, math.inf, 0.0, "the variant gives no probabilities")
    if list(_plain(original.classes)) != list(_plain(candidate.classes)):
        return Comparison(
            rows, math.inf, 0.0, f"classes differ: {_plain(original.classes)} vs {_plain(candidate.classes)}"
        )
    pairs = zip(_plain(original.outputs), _plain(candidate.outputs), strict=True)
    agreement = float(np.mean([a == b for a, b in pairs]))
    return Comparison(rows, _max_diff(original.probabilities, candidate.probabilities), agreement, None)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    if a.size and b.size and a.shape != b.shape and a.size == b.size:
        b = b.reshape(a.shape)  # (n, 1) vs (n,) for single-output regressors
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    same_special = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    with np.errstate(invalid="ignore"):
        diff = np.where(same_special, 0.0, np.abs(a - b))
    return float(np.nanmax(np.where(np.isnan(diff), math.inf, diff)))


def _plain(values: object) -> list[object]:
    return [] if values is None else np.asarray(values).tolist()
