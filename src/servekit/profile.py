"""Reference profile of training data, stored in the manifest and compared with live inputs
by the drift monitor: per-feature quantile bins for numbers, frequencies for categories.

A numeric feature also records its empirical CDF on a grid of percentiles (`cdf`: the values
at the 0th, 1st, ..., 100th percentile, each with how many reference values are below it and at
or below it), so the KS test of `servekit.monitoring.drift` compares against exact points of the
reference distribution. Profiles written before `cdf` existed are still assessed, from their
bin edges (see `servekit.monitoring.drift`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.errors import InvalidInput
from servekit.signature import Signature

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CDF_POINTS", "PROFILE_BINS", "build_profile", "read_table"]

PROFILE_BINS = 10
CDF_POINTS = 101
"""Percentiles 0, 1, ..., 100 at which the reference CDF is recorded (fewer when values repeat)."""
MAX_CATEGORIES = 100
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV, Parquet or JSON-lines file as a DataFrame, chosen by extension."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".jsonl", ".ndjson"}:
            return pd.read_json(path, lines=True)
        if suffix in {".csv", ".txt", ".tsv"}:
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from None
    raise InvalidInput(f"cannot read {path.name}: unknown table format {suffix!r}", hint="Use .csv, .parquet or .jsonl")


def build_profile(frame: pd.DataFrame, signature: Signature) -> dict[str, Any]:
    """Profile every signature feature of `frame` (columns already named as the signature)."""
    features: dict[str, Any] = {}
    for feature in signature.features:
        column = frame[feature.name]
        features[feature.name] = (
            _numeric_profile(column.to_numpy(dtype="float64", na_value=np.nan))
            if feature.numeric
            else _categorical_profile(column)
        )
    return {"rows": len(frame), "features": features}


def _numeric_profile(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    profile: dict[str, Any] = {"kind": "numeric", "count": int(values.size), "missing": int(values.size - finite.size)}
    if finite.size == 0:
        return profile
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, PROFILE_BINS + 1)))
    counts = np.histogram(finite, bins=edges)[0] if edges.size > 1 else np.array([finite.size])
    profile.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantiles={str(q): float(v) for q, v in zip(_QUANTILES, np.quantile(finite, _QUANTILES), strict=True)},
        bin_edges=edges.tolist(),
        bin_counts=counts.tolist(),
        cdf=_cdf(finite),
    )
    return profile


def _cdf(finite: np.ndarray) -> dict[str, list]:
    """The empirical CDF at the percentile grid: values actually observed (`method="lower"`),
    each with the count of values strictly below (`lt`) and at or below (`le`) it."""
    ordered = np.sort(finite)
    points = np.unique(np.quantile(ordered, np.linspace(0, 1, CDF_POINTS), method="lower"))
    return {
        "x": points.tolist(),
        "lt": np.searchsorted(ordered, points, side="left").tolist(),
        "le": np.searchsorted(ordered, points, side="right").tolist(),
    }


def _categorical_profile(column: pd.Series) -> dict[str, Any]:
    counts = column.dropna().astype(str).value_counts()
    shown = counts.head(MAX_CATEGORIES)
    return {
        "kind": "categorical",
        "count": len(column),
        "missing": int(column.isna().sum()),
        "frequencies": {str(k): int(v) for k, v in shown.items()},
        "other": int(counts.iloc[MAX_CATEGORIES:].sum()),
    }
