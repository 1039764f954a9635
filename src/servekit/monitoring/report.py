"""The drift report as one self-contained HTML page: inline CSS, inline SVG plots, no URLs.

`render_report` is a pure function (report in, text out); writing the file is the caller's job.
The plots' geometry is computed here and drawn by the template (`assets/report.html.j2`).
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.monitoring.drift import DriftReport, FeatureDrift, category_table

if TYPE_CHECKING:
    import jinja2
    import pandas as pd

__all__ = ["render_report"]

WIDTH = 640
BAR_AREA = 150
MAX_CATEGORIES_SHOWN = 20
_ASSETS = "assets"
DASH = "\u2013"


def render_report(report: DriftReport, profile: dict[str, Any] | None, current: pd.DataFrame) -> str:
    """The HTML page for `report`, with one reference-vs-live plot per feature."""
    references = (profile or {}).get("features") or {}
    features = []
    for index, result in enumerate(report.features):
        values = current[result.feature] if result.feature in current.columns else None
        features.append(
            {
                "anchor": f"feature-{index}",
                "result": result,
                "cells": _cells(result),
                "plot": _plot(references.get(result.feature), values),
            }
        )
    not_assessable = sum(f.state == "not_assessable" for f in report.features)
    return _template().render(
        css=_asset("report.css"),
        report=report,
        title=f"Drift report: {report.model}" + (f" v{report.version}" if report.version is not None else ""),
        when=report.generated_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        features=features,
        drifted=report.drifted,
        assessed=report.assessed,
        not_assessable=not_assessable,
        settings=report.settings,
    )


@cache
def _template() -> jinja2.Template:
    import jinja2

    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return environment.from_string(_asset("report.html.j2"))


def _asset(name: str) -> str:
    return resources.files("servekit.monitoring").joinpath(_ASSETS, name).read_text(encoding="utf-8")


def _cells(result: FeatureDrift) -> dict[str, str]:
    numeric = result.kind == "numeric"
    return {
        "test": "KS" if numeric else "chi²",
        "statistic": _number(result.ks_statistic if numeric else result.chi2_statistic),
        "pvalue": _pvalue(result.pvalue),
        "threshold": _pvalue(result.threshold),
        "psi": DASH if result.psi is None else f"{result.psi:.3f}",
    }


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.4g}" if value else "0"


def _pvalue(value: float | None) -> str:
    if value is None:
        return DASH
    return "< 1e-16" if value < 1e-16 else f"{value:.2g}"


# -- plots -----------------------------------------------------------------------------------------
def _plot(reference: dict[str, Any] | None, values: pd.Series | None) -> dict[str, Any] | None:
    """Geometry of one feature's plot, or `None` when there is nothing to compare."""
    if reference is None:
        return None
    draw = _categorical_plot if reference.get("kind") == "categorical" else _numeric_plot
    try:
        return draw(reference, values)
    except (KeyError, TypeError, ValueError, AttributeError):  # an invalid profile: its row says so
        return None


def _numeric_plot(reference: dict[str, Any], values: pd.Series | None) -> dict[str, Any] | None:
    """Vertical bars over the reference bins (equal width: each holds ~10% of the reference)."""
    import pandas as pd

    edges = np.asarray(reference.get("bin_edges") or [], dtype=float)
    counts = np.asarray(reference.get("bin_counts") or [], dtype=float)
    if edges.size < 2 or counts.sum() <= 0:
        return None
    ref_share = counts / counts.sum()
    cur_share, note = None, None
    if values is not None:
        live = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        live = live[np.isfinite(live)]
        if live.size:
            cur_share = np.histogram(np.clip(live, edges[0], edges[-1]), bins=edges)[0] / live.size
            outside = [
                f"{share:.1%} of live values are {where} the reference {bound}"
                for share, where, bound in (
                    (float(np.mean(live < edges[0])), "below", "minimum"),
                    (float(np.mean(live > edges[-1])), "above", "maximum"),
                )
                if share > 0
            ]
            if outside:
                note = " and ".join(outside) + "; the outer bars include them."
    bins = len(ref_share)
    left, bottom = 48, 190
    slot = (WIDTH - left - 30) / bins
    scale = max(ref_share.max(), cur_share.max() if cur_share is not None else 0.0) or 1.0
    bars, labels = [], []
    for i in range(bins):
        x = left + i * slot
        span = f"[{_number(edges[i])}, {_number(edges[i + 1])}{']' if i == bins - 1 else ')'}"
        bars.append(_bar(x + slot * 0.1, slot * 0.38, bottom, ref_share[i], scale, "ref", f"reference {span}"))
        if cur_share is not None:
            bars.append(_bar(x + slot * 0.52, slot * 0.38, bottom, cur_share[i], scale, "cur", f"live {span}"))
    for i, edge in enumerate(edges):
        labels.append({"x": round(left + i * slot, 2), "y": bottom + 16, "text": _number(edge), "anchor": "middle"})
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - fraction * BAR_AREA
        labels.append({"x": left - 6, "y": y + 4, "text": f"{fraction * scale:.0%}", "anchor": "end"})
    return {
        "width": WIDTH,
        "height": bottom + 28,
        "bars": bars,
        "labels": labels,
        "axis": {"x1": left, "y1": bottom, "x2": left + bins * slot, "y2": bottom},
        "has_current": cur_share is not None,
        "note": note,
        "caption": "Share of values per reference bin (bins cut at the reference deciles)",
    }


def _bar(x: float, width: float, bottom: float, share: float, scale: float, kind: str, what: str) -> dict[str, Any]:
    """A vertical bar standing on `bottom`, `share / scale` of the plot's height."""
    height = float(share) / scale * BAR_AREA
    return {
        "x": round(x, 2),
        "y": round(bottom - height, 2),
        "w": round(width, 2),
        "h": round(height, 2),
        "cls": kind,
        "title": f"{what}: {share:.1%}",
    }


def _categorical_plot(reference: dict[str, Any], values: pd.Series | None) -> dict[str, Any] | None:
    """Horizontal bar pairs per category: the most frequent ones, the rest summed."""
    frequencies = {str(k): int(v) for k, v in (reference.get("frequencies") or {}).items()}
    other = int(reference.get("other") or 0)
    if not frequencies and not other:
        return None
    import pandas as pd

    present = values.dropna() if values is not None else pd.Series([], dtype=object)
    labels, ref, cur = category_table(frequencies, other, present)
    order = np.argsort(-(ref / max(ref.sum(), 1) + cur / max(cur.sum(), 1)), kind="stable")
    shown = order[:MAX_CATEGORIES_SHOWN]
    rows = [(labels[i], ref[i], cur[i]) for i in shown]
    if len(order) > len(shown):
        rest = order[MAX_CATEGORIES_SHOWN:]
        rows.append((f"{len(rest)} more categories", ref[rest].sum(), cur[rest].sum()))
    ref_total, cur_total = max(float(ref.sum()), 1.0), float(cur.sum())
    has_current = cur_total > 0
    left, row_height = 180, 26
    area = WIDTH - left - 80
    shares = [(label, r / ref_total, c / cur_total if has_current else 0.0) for label, r, c in rows]
    scale = max(max(r, c) for _, r, c in shares) or 1.0
    bars, texts = [], []
    for i, (label, ref_share, cur_share) in enumerate(shares):
        y = 10 + i * row_height
        bars.append(_hbar(left, y, ref_share, area / scale, "ref", f"reference {label}"))
        text = f"{ref_share:.0%}"
        if has_current:
            bars.append(_hbar(left, y + 11, cur_share, area / scale, "cur", f"live {label}"))
            text = f"{ref_share:.0%} → {cur_share:.0%}"
        shown_label = label if len(label) <= 24 else label[:23] + "…"
        texts.append({"x": left - 8, "y": y + 15, "text": shown_label, "anchor": "end"})
        texts.append({"x": WIDTH - 4, "y": y + 15, "text": text, "anchor": "end"})
    return {
        "width": WIDTH,
        "height": 14 + len(rows) * row_height,
        "bars": bars,
        "labels": texts,
        "axis": {"x1": left, "y1": 4, "x2": left, "y2": 10 + len(rows) * row_height},
        "has_current": has_current,
        "note": None,
        "caption": "Share of rows per category",
    }


def _hbar(left: float, y: float, share: float, full: float, kind: str, what: str) -> dict[str, Any]:
    """A horizontal bar from `left`; `full` is the length of a 100% bar on this plot's scale."""
    return {"x": left, "y": y, "w": round(share * full, 2), "h": 10, "cls": kind, "title": f"{what}: {share:.1%}"}
