"""The drift tests' tail probabilities against scipy.special, and the reason they exist: a drift
check in a serving process does not import scipy."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import chdtrc, kolmogorov

from servekit.monitoring.tails import chi2_sf, kolmogorov_sf

RTOL = 1e-10
SMALLEST = 1e-290  # below this scipy's value is itself at the edge of the doubles


def close(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=RTOL, abs_tol=0.0) if theirs > SMALLEST else ours <= 2 * SMALLEST


def test_kolmogorov_sf_matches_scipy_across_both_series() -> None:
    points = np.concatenate([np.linspace(0.01, 7.0, 1400), [0.2, 0.999999, 1.0, 1.000001, 10.0, 20.0, 27.0]])
    pairs = [(x, kolmogorov_sf(float(x)), kolmogorov(x)) for x in points]
    misses = [pair for pair in pairs if not close(pair[1], pair[2])]
    assert not misses


@pytest.mark.parametrize("x", [0.0, -1.0, 1e-9, 0.01])
def test_kolmogorov_sf_is_one_at_and_near_zero(x: float) -> None:
    assert kolmogorov_sf(x) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("df", [*range(1, 61), 0.5, 1.5, 99, 250, 1000, 5000])
def test_chi2_sf_matches_scipy_from_the_body_to_the_far_tail(df: float) -> None:
    points = np.concatenate([np.geomspace(1e-6, 20 * df + 200, 300), [df - 1, df, df + 1, df / 2 + 1]])
    points = points[points > 0]
    pairs = [(x, chi2_sf(df, float(x)), chdtrc(df, x)) for x in points]
    misses = [pair for pair in pairs if not close(pair[1], pair[2])]
    assert not misses


def test_chi2_sf_edges() -> None:
    assert chi2_sf(3, 0.0) == 1.0
    assert chi2_sf(3, -2.0) == 1.0
    assert chi2_sf(3, math.inf) == 0.0
    assert chi2_sf(2, 2 * math.log(2)) == pytest.approx(0.5, rel=1e-14)  # df 2: exactly exp(-x / 2)
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi2_sf(0, 1.0)


def test_a_drift_assessment_does_not_import_scipy() -> None:
    """scipy.special alone adds ~17 MB to a worker's resident memory (docs/performance.md §7)."""
    code = """
import sys
import numpy as np
import pandas as pd
from servekit.monitoring.drift import DriftSettings, assess
from servekit.profile import build_profile
from servekit.signature import Feature, Signature

rng = np.random.default_rng(0)
frame = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b", "c"], size=2000)})
signature = Signature((Feature("x", "float64"), Feature("c", "string")), input_kind="frame")
profile = build_profile(frame, signature)
live = pd.DataFrame({"x": rng.normal(0.5, size=500), "c": rng.choice(["a", "b"], size=500)})
report = assess(profile, live, DriftSettings())
tested = {f.feature: (f.ks_pvalue, f.chi2_pvalue) for f in report.features}
assert tested["x"][0] is not None and tested["x"][0] < 1e-6, tested
assert tested["c"][1] is not None and tested["c"][1] < 1e-6, tested
print(sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy.")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
