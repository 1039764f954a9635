"""Upper-tail probabilities of the two distributions the drift tests need: Kolmogorov's and
chi-squared.

scipy.special has both (`kolmogorov`, `chdtrc`), but importing it adds about 17 MB to a serving
process's resident memory (11 MB of it private) at its first drift check: more than a tenth of a
worker's budget, for two scalar functions evaluated once per feature and check. These are the
textbook series (docs/performance.md §7); tests/unit/test_tails.py holds them to scipy.special's
values.
"""

from __future__ import annotations

import math

__all__ = ["chi2_sf", "kolmogorov_sf"]

_EPS = 1e-16
_MAX_TERMS = 100_000
_TINY = 1e-300


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for Kolmogorov's limiting distribution (of `sqrt(n) * D`); 1 for x ≤ 0."""
    if not x > 0:
        return 1.0
    if x < 1.0:  # the CDF by its theta-function series, fast where the alternating one is slow
        factor = math.pi**2 / (8 * x * x)
        total = 0.0
        for k in range(1, _MAX_TERMS):
            term = math.exp(-((2 * k - 1) ** 2) * factor)
            total += term
            if term <= _EPS * total or term == 0.0:
                break
        return 1.0 - math.sqrt(2 * math.pi) / x * total
    total = 0.0
    for k in range(1, _MAX_TERMS):  # 2 * sum of (-1)^(k-1) exp(-2 k² x²)
        term = math.exp(-2 * k * k * x * x)
        total += term if k % 2 else -term
        if term <= _EPS * total or term == 0.0:
            break
    return min(1.0, 2 * total)


def chi2_sf(df: float, x: float) -> float:
    """P(X > x) for X chi-squared with `df` degrees of freedom; 1 for x ≤ 0."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, not {df}")
    if not x > 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    return _upper_gamma(df / 2, x / 2)


def _upper_gamma(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x), for a, x > 0."""
    if x < a + 1:
        return max(0.0, 1.0 - _lower_gamma_series(a, x))
    return _upper_gamma_fraction(a, x)


def _prefactor(a: float, x: float) -> float:
    return math.exp(a * math.log(x) - x - math.lgamma(a))


def _lower_gamma_series(a: float, x: float) -> float:
    """P(a, x) by its power series (converges fast for x < a + 1)."""
    term = total = 1.0 / a
    n = a
    for _ in range(_MAX_TERMS):
        n += 1
        term *= x / n
        total += term
        if term <= total * _EPS:
            break
    return total * _prefactor(a, x)


def _upper_gamma_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction, evaluated with Lentz's method (for x ≥ a + 1)."""
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    fraction = d
    for i in range(1, _MAX_TERMS):
        coefficient = -i * (i - a)
        b += 2
        d = coefficient * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + coefficient / c
        c = _TINY if abs(c) < _TINY else c
        d = 1 / d
        step = d * c
        fraction *= step
        if abs(step - 1) <= _EPS:
            break
    return _prefactor(a, x) * fraction
