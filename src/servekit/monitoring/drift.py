"""Data drift: the bundle's reference profile (`servekit.profile`) against a window of live inputs.

Numeric features: a two-sample Kolmogorov-Smirnov test. The profile keeps the reference's exact
empirical CDF at its 101 percentiles, so the statistic is taken at those points only, where both
CDFs are known exactly: a lower bound of the full two-sample statistic (at most ~1% of the mass
between two points is missed). Its p-value is the Kolmogorov distribution's tail at the
two-sample effective size `n*m/(n+m)`, as the reference is a finite sample too (asymptotic, which
errs slightly towards "ok"). Older profiles without the percentile grid are compared at their
decile bin edges. Categorical features: a chi-squared test of homogeneity of the live and the
reference category counts (one column per category, also for unseen ones; rare columns pooled).
Both: the PSI over the reference bins or categories, which is also each feature's `score`.

Decision rule: a feature drifts when its p-value is below `ks_pvalue` (numeric) or `chi2_pvalue`
(categorical) divided by the number of features tested together (Bonferroni: the chance that a
report names any feature by chance stays below the threshold), and its PSI is at least `psi` (the
shift is big enough to matter). Anything that cannot be tested is "not_assessable", with a reason.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from servekit.monitoring.drift_settings import DEFAULT_WINDOW_SIZE, DriftSettings
from servekit.monitoring.tails import chi2_sf, kolmogorov_sf

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DriftReport",
    "DriftSettings",
    "DriftWindow",
    "FeatureDrift",
    "assess",
    "assess_feature",
]

MIN_EXPECTED = 5.0
"""Columns of the chi-squared table expected to hold fewer rows than this are pooled."""
PSEUDO_COUNT = 0.5
"""Added to every bin before taking PSI's logarithms, so an empty bin has a finite share."""
OTHER = "(other)"
OTHER_CUT = 20
"""See `category_table`: the least reference count a category needs to keep its own column when
the profile lumped its rarest categories into `other`."""

Kind = Literal["numeric", "categorical"]
State = Literal["ok", "drift", "not_assessable"]


@dataclass
class FeatureDrift:
    """The drift assessment of one feature."""

    feature: str
    kind: Kind
    state: State
    reason: str | None = None
    """Why the feature is not assessable (or what made it drift)."""
    n_current: int = 0
    """Usable live values (missing ones excluded)."""
    n_missing: int = 0
    n_reference: int = 0
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    chi2_statistic: float | None = None
    chi2_pvalue: float | None = None
    psi: float | None = None
    threshold: float | None = None
    """The p-value threshold applied (after the Bonferroni division)."""

    @property
    def pvalue(self) -> float | None:
        return self.ks_pvalue if self.kind == "numeric" else self.chi2_pvalue

    @property
    def score(self) -> float:
        """One number for a Prometheus gauge: the PSI (NaN when not assessable)."""
        return float(self.psi) if self.psi is not None else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become `None`."""
        data = {
            "feature": self.feature,
            "kind": self.kind,
            "state": self.state,
            "reason": self.reason,
            "n_current": self.n_current,
            "n_missing": self.n_missing,
            "n_reference": self.n_reference,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "chi2_statistic": self.chi2_statistic,
            "chi2_pvalue": self.chi2_pvalue,
            "psi": self.psi,
            "threshold": self.threshold,
            "score": self.score,
        }
        return {k: _finite_or_none(v) for k, v in data.items()}


@dataclass
class DriftReport:
    """Every feature's assessment for one model version and one window of inputs."""

    model: str
    version: int | None
    rows: int
    """Rows of live input assessed."""
    features: list[FeatureDrift]
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    settings: DriftSettings = field(default_factory=DriftSettings)

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.state == "drift"]

    @property
    def assessed(self) -> int:
        return sum(f.state != "not_assessable" for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "generated_at": self.generated_at.isoformat(),
            "drift": bool(self.drifted),
            "drifted": self.drifted,
            "assessed": self.assessed,
            "thresholds": {
                "ks_pvalue": self.settings.ks_pvalue,
                "chi2_pvalue": self.settings.chi2_pvalue,
                "psi": self.settings.psi,
                "min_rows": self.settings.min_rows,
            },
            "features": [f.to_dict() for f in self.features],
        }


# -- assessment ------------------------------------------------------------------------------------
def assess(
    profile: dict[str, Any] | None,
    current: pd.DataFrame | ArrayColumns,
    settings: DriftSettings | None = None,
    *,
    model: str = "",
    version: int | None = None,
    features: list[str] | None = None,
) -> DriftReport:
    """Assess every feature of `features` (default: the profile's, else the frame's columns).

    The p-value threshold is divided by the number of features that can be tested, so the
    report as a whole raises a false alarm with at most the configured probability.
    """
    settings = settings or DriftSettings()
    references = (profile or {}).get("features") or {}
    names = list(features) if features is not None else list(references) or [str(c) for c in current.columns]
    measured = []
    for name in names:
        # an empty window has no columns to speak of: its features have 0 rows, not none
        values = current[name] if name in current.columns else ([] if len(current) == 0 else None)
        measured.append(_measure(name, references.get(name), values, settings))
    tested = sum(f.state != "not_assessable" for f in measured)
    for result in measured:
        _decide(result, settings, n_tests=tested)
    return DriftReport(model=model, version=version, rows=len(current), features=measured, settings=settings)


def assess_feature(
    reference: dict[str, Any] | None,
    values: Any,
    settings: DriftSettings | None = None,
    *,
    feature: str = "",
    n_tests: int = 1,
) -> FeatureDrift:
    """Assess one feature's live `values` against its reference profile entry.

    `n_tests` is the number of features tested together (the p-value threshold is divided by it).
    """
    settings = settings or DriftSettings()
    result = _measure(feature, reference, values, settings)
    _decide(result, settings, n_tests=n_tests)
    return result


def _decide(result: FeatureDrift, settings: DriftSettings, *, n_tests: int) -> None:
    if result.state == "not_assessable":
        return
    alpha = settings.ks_pvalue if result.kind == "numeric" else settings.chi2_pvalue
    result.threshold = alpha / max(n_tests, 1)
    pvalue = result.pvalue
    significant = pvalue is not None and pvalue < result.threshold
    large = result.psi is not None and result.psi >= settings.psi
    result.state = "drift" if significant and large else "ok"


def _measure(name: str, reference: dict[str, Any] | None, values: Any, settings: DriftSettings) -> FeatureDrift:
    """Statistics of one feature; the state is "ok" (undecided) or "not_assessable"."""
    if values is None or _numbers(values):  # a numeric window column: numpy only, no pandas import
        series = values
    else:
        import pandas as pd

        series = values if isinstance(values, pd.Series) else pd.Series(values)
    if reference is None:
        kind: Kind = "numeric" if series is not None and _is_numeric(series) else "categorical"
        return _not_assessable(name, kind, "not in the reference profile", series)
    kind = "categorical" if reference.get("kind") == "categorical" else "numeric"
    try:
        problem = _reference_problem(kind, reference)
    except (KeyError, TypeError, ValueError, AttributeError):  # a hand-edited or foreign profile
        problem = "the reference profile of this feature is invalid"
    if problem is None and series is None:
        problem = "not in the current data"
    if problem is not None:
        result = _not_assessable(name, kind, problem, series)
    else:
        try:
            measure = _numeric if kind == "numeric" else _categorical
            result = measure(name, reference, series, settings)
        except (TypeError, ValueError, OverflowError) as exc:  # live values of an unexpected type
            result = _not_assessable(name, kind, f"cannot be compared: {type(exc).__name__}: {exc}", series)
    result.n_reference = _reference_rows(reference)
    return result


def _reference_problem(kind: Kind, reference: dict[str, Any]) -> str | None:
    """Why this reference cannot be tested against, if it cannot (raises if it is malformed)."""
    if kind == "numeric":
        edges = np.asarray(reference.get("bin_edges") or [], dtype=float)
        counts = np.asarray(reference.get("bin_counts") or [], dtype=float)
        if edges.size == 0 or counts.sum() <= 0:
            return "all values missing in the reference"
        if edges.size == 1:
            return "constant in the reference"
        cdf = reference.get("cdf") or {}
        sizes = {len(cdf.get(key) or []) for key in ("x", "lt", "le")} if cdf else set()
        if counts.shape != (edges.size - 1,) or np.any(np.diff(edges) <= 0) or len(sizes) > 1:
            return "the reference profile of this feature is invalid"
        return None
    frequencies = {str(k): int(v) for k, v in (reference.get("frequencies") or {}).items()}
    other = int(reference.get("other") or 0)
    if not frequencies and not other:
        return "all values missing in the reference"
    return "constant in the reference" if len(frequencies) + (other > 0) < 2 else None


def _reference_rows(reference: dict[str, Any]) -> int:
    try:
        return max(0, int(reference.get("count") or 0) - int(reference.get("missing") or 0))
    except (TypeError, ValueError):
        return 0


def _numbers(values: Any) -> bool:
    """A NumPy array of numbers (or booleans): assessed without pandas."""
    return isinstance(values, np.ndarray) and values.dtype.kind in "fiub"


def _is_numeric(series: Any) -> bool:
    if _numbers(series):
        return True
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series))


def _missing(series: Any) -> int:
    if _numbers(series):
        return int(np.isnan(series).sum()) if series.dtype.kind == "f" else 0
    return int(series.isna().sum())


def _not_assessable(name: str, kind: Kind, reason: str, series: Any) -> FeatureDrift:
    n_missing = _missing(series) if series is not None else 0
    n_current = len(series) - n_missing if series is not None else 0
    return FeatureDrift(name, kind, "not_assessable", reason, n_current=n_current, n_missing=n_missing)


def _too_few(
    name: str, kind: Kind, total: int, usable: int, settings: DriftSettings, *, missing: str = "missing"
) -> FeatureDrift | None:
    if total < settings.min_rows:
        reason = f"only {total} rows, need {settings.min_rows}"
    elif usable == 0:
        reason = f"all values {missing}"
    elif usable < settings.min_rows:
        reason = f"only {usable} non-missing values, need {settings.min_rows}"
    else:
        return None
    return FeatureDrift(name, kind, "not_assessable", reason, n_current=usable, n_missing=total - usable)


# -- numeric ---------------------------------------------------------------------------------------
def _numeric(name: str, reference: dict[str, Any], series: Any, settings: DriftSettings) -> FeatureDrift:
    edges = np.asarray(reference["bin_edges"], dtype=float)
    ref_counts = np.asarray(reference["bin_counts"], dtype=float)
    missing = "missing"
    if _numbers(series):
        values = np.asarray(series, dtype=float)
    else:
        import pandas as pd

        if not pd.api.types.is_float_dtype(series):  # strings, objects: what is not a number is missing
            numbers = pd.to_numeric(series, errors="coerce")
            missing = "missing" if numbers.notna().sum() == series.notna().sum() else "missing or not numbers"
            series = numbers
        values = series.to_numpy(dtype=float, na_value=np.nan)
    finite = np.sort(values[np.isfinite(values)])
    too_few = _too_few(name, "numeric", values.size, finite.size, settings, missing=missing)
    if too_few is not None:
        return too_few
    n_ref = int(ref_counts.sum())
    statistic = _ks_statistic(reference, finite)
    pvalue = _ks_pvalue(statistic, finite.size, n_ref)
    clipped = np.clip(finite, edges[0], edges[-1])  # out-of-range values count in the outer bins
    current_counts = np.histogram(clipped, bins=edges)[0]
    return FeatureDrift(
        name,
        "numeric",
        "ok",
        n_current=int(finite.size),
        n_missing=int(values.size - finite.size),
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        psi=_psi(ref_counts, current_counts),
    )


def _reference_cdf(reference: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points where the reference CDF is known exactly: `(x_lt, P(X < x_lt), x_le, P(X <= x_le))`.

    From the percentile grid when the profile has one, else from the bin edges: `np.histogram`
    bins are `[a, b)`, so the cumulative counts are exact left limits at every edge but the last,
    and everything is at or below the last edge (the maximum).
    """
    edges = np.asarray(reference["bin_edges"], dtype=float)
    counts = np.asarray(reference["bin_counts"], dtype=float)
    total = counts.sum()
    cdf = reference.get("cdf")
    if cdf and cdf.get("x"):
        x = np.asarray(cdf["x"], dtype=float)
        return x, np.asarray(cdf["lt"], dtype=float) / total, x, np.asarray(cdf["le"], dtype=float) / total
    below = np.concatenate(([0.0], np.cumsum(counts)[:-1])) / total
    return edges[:-1], below, edges[-1:], np.array([1.0])


def _ks_statistic(reference: dict[str, Any], ordered: np.ndarray) -> float:
    """Largest gap between the live and the reference CDF at the points where both are exact."""
    x_lt, p_lt, x_le, p_le = _reference_cdf(reference)
    n = ordered.size
    below = np.searchsorted(ordered, x_lt, side="left") / n
    at_or_below = np.searchsorted(ordered, x_le, side="right") / n
    return float(max(np.abs(below - p_lt).max(initial=0.0), np.abs(at_or_below - p_le).max(initial=0.0)))


def _ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Two-sample p-value from the Kolmogorov distribution at `sqrt(n*m/(n+m)) * D`: its asymptotic
    tail, which for finite samples is slightly larger than the exact one (errs towards "ok")."""
    return min(1.0, max(0.0, kolmogorov_sf(math.sqrt(n * m / (n + m)) * statistic)))


# -- categorical -----------------------------------------------------------------------------------
def _categorical(name: str, reference: dict[str, Any], series: Any, settings: DriftSettings) -> FeatureDrift:
    import pandas as pd

    if not isinstance(series, pd.Series):
        series = pd.Series(series)
    frequencies = {str(k): int(v) for k, v in (reference.get("frequencies") or {}).items()}
    other = int(reference.get("other") or 0)
    present = series.dropna()
    too_few = _too_few(name, "categorical", len(series), len(present), settings)
    if too_few is not None:
        return too_few
    _, ref_counts, cur_counts = category_table(frequencies, other, present)
    pooled_ref, pooled_cur = _pool(ref_counts, cur_counts)
    if pooled_ref.size < 2:
        return _not_assessable(name, "categorical", "no category is frequent enough to test", series)
    statistic, pvalue = _chi2(pooled_ref, pooled_cur)
    return FeatureDrift(
        name,
        "categorical",
        "ok",
        n_current=len(present),
        n_missing=len(series) - len(present),
        chi2_statistic=statistic,
        chi2_pvalue=pvalue,
        psi=_psi(pooled_ref, pooled_cur),
    )


def category_strings(values: pd.Series, known: dict[str, int]) -> pd.Series:
    """Categories as the profile writes them (`str`). Whole floats (integers read from a CSV with
    gaps) are also tried without `.0`; the spelling that matches more `known` categories wins."""
    import pandas as pd

    text = values.astype(str)
    if not pd.api.types.is_float_dtype(values):
        return text
    array = values.to_numpy(dtype=float)
    if np.isfinite(array).all() and (np.mod(array, 1) == 0).all():
        whole = pd.Series(array.astype("int64"), index=values.index).astype(str)
        if whole.isin(known).sum() > text.isin(known).sum():
            return whole
    return text


def category_table(
    frequencies: dict[str, int], other: int, present: pd.Series
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, reference counts and live counts, one column per category.

    Without an `(other)` bucket in the profile, every live category the reference lacks gets
    its own column (reference count 0): the columns never depend on which categories the
    reference sample happened to contain. A profile that kept only its most frequent categories
    has chosen them by their reference counts, which overstates the ones near the cut; so then
    only categories counted at least `max(3 * smallest kept count, 20)` times keep a column, and
    the rest, with the categories the reference lacks, form `(other)`.
    """
    counted = category_strings(present, frequencies).value_counts()
    live = dict(zip(counted.index.astype(str), counted.to_numpy().tolist(), strict=True))
    if other:
        cut = max(3 * min(frequencies.values(), default=0), OTHER_CUT)
        other += sum(v for v in frequencies.values() if v < cut)
        frequencies = {k: v for k, v in frequencies.items() if v >= cut}
    labels = list(frequencies)
    ref = [frequencies[k] for k in labels]
    cur = [live.pop(k, 0) for k in labels]
    if other:
        labels.append(OTHER)
        ref.append(other)
        cur.append(sum(live.values()))
    else:  # what is left in `live` the reference never saw
        labels.extend(live)
        ref.extend([0] * len(live))
        cur.extend(live.values())
    return labels, np.asarray(ref, dtype=float), np.asarray(cur, dtype=float)


def _chi2(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Chi-squared test of homogeneity of two count vectors (pooled: no empty column)."""
    table = np.vstack([ref, cur])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, chi2_sf(ref.size - 1, statistic)


def _pool(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the columns whose smaller expected cell is under `MIN_EXPECTED` into one; if that
    column is still too small, into the smallest other column (the approximation needs it)."""
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    smaller_share = min(ref.sum(), cur.sum()) / (ref.sum() + cur.sum())
    small = (ref + cur) * smaller_share < MIN_EXPECTED
    if small.any() and (~small).any():
        ref = np.append(ref[~small], ref[small].sum())
        cur = np.append(cur[~small], cur[small].sum())
        if (ref[-1] + cur[-1]) * smaller_share < MIN_EXPECTED and ref.size > 1:
            smallest = int(np.argmin((ref + cur)[:-1]))
            ref[smallest] += ref[-1]
            cur[smallest] += cur[-1]
            ref, cur = ref[:-1], cur[:-1]
    elif small.all():
        ref, cur = ref.sum(keepdims=True), cur.sum(keepdims=True)
    return ref, cur


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index over the same bins, with `PSEUDO_COUNT` added to every bin."""
    ref = np.asarray(ref_counts, dtype=float) + PSEUDO_COUNT
    cur = np.asarray(cur_counts, dtype=float) + PSEUDO_COUNT
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return float(value) if isinstance(value, np.floating) else value


# -- the live window -------------------------------------------------------------------------------
class DriftWindow:
    """The last `size` live input rows of one model, safe to fill from a background thread.

    `add` keeps each batch as one chunk (a copy) and drops whole chunks once the newer ones
    hold `size` rows, so it costs no per-row work; `frame` trims to exactly `size` rows.
    """

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE) -> None:
        if size < 1:
            raise ValueError("a drift window holds at least one row")
        self.size = size
        self.seen = 0
        """Rows ever added."""
        self._chunks: deque[Any] = deque()
        self._held = 0
        self._lock = threading.Lock()

    def add(self, batch: Any) -> None:
        """Append a batch: a 2-D array (columns in signature order) or a DataFrame (named columns)."""
        chunk = _chunk(batch)
        n = len(chunk)
        if n == 0:
            return
        if n > self.size:
            chunk = chunk.iloc[n - self.size :] if hasattr(chunk, "iloc") else chunk[n - self.size :]
        with self._lock:
            self._chunks.append(chunk)
            self._held += len(chunk)
            self.seen += n
            while self._held - len(self._chunks[0]) >= self.size:
                self._held -= len(self._chunks.popleft())

    @property
    def rows(self) -> int:
        """Rows currently in the window (at most `size`)."""
        with self._lock:
            return min(self._held, self.size)

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._held = 0

    def columns(self, feature_names: list[str]) -> ArrayColumns | None:
        """The window as named numeric columns, without pandas, when every chunk is a numeric
        array as wide as `feature_names`; else `None` (use `frame`)."""
        with self._lock:
            chunks = list(self._chunks)
        width = len(feature_names)
        if not chunks or not all(
            isinstance(c, np.ndarray) and c.ndim == 2 and c.shape[1] == width and c.dtype.kind in "fiub" for c in chunks
        ):
            return None
        matrix = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        return ArrayColumns(matrix[max(0, len(matrix) - self.size) :], list(feature_names))

    def frame(self, feature_names: list[str]) -> pd.DataFrame:
        """The window as a DataFrame, oldest row first; array chunks get `feature_names` as columns
        (an array of another width keeps numbered columns, so its features count as missing)."""
        import pandas as pd

        with self._lock:
            chunks = list(self._chunks)
        names = list(feature_names)
        parts = [
            chunk
            if isinstance(chunk, pd.DataFrame)
            else pd.DataFrame(chunk, columns=names if chunk.shape[1] == len(names) else None)
            for chunk in chunks
        ]
        if not parts:
            return pd.DataFrame({name: pd.Series(dtype=float) for name in names})
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return frame.iloc[max(0, len(frame) - self.size) :].reset_index(drop=True)


class ArrayColumns:
    """Rows of numbers with named columns: what `assess` needs of a DataFrame (`columns`, `len`,
    a column by name), for windows of numeric arrays, which then never import pandas."""

    def __init__(self, matrix: np.ndarray, names: list[str]) -> None:
        self.matrix = matrix
        self.columns = names
        self._index = {name: i for i, name in enumerate(names)}

    def __len__(self) -> int:
        return len(self.matrix)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.matrix[:, self._index[name]]


def _chunk(batch: Any) -> Any:
    if hasattr(batch, "iloc"):
        return batch.copy()
    array = np.array(batch, copy=True)
    if array.ndim == 1:
        return array.reshape(1, -1)
    return array.reshape(len(array), -1) if array.ndim > 2 else array
