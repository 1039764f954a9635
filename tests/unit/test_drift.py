"""Drift statistics: calibration (false alarms), power, not-assessable states and the live window.

The false-alarm and power rates measured here are the ones quoted in docs/drift.md (run with -s
to see them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import ks_2samp
from sklearn.datasets import load_breast_cancer

from servekit.monitoring.drift import (
    DriftReport,
    DriftSettings,
    DriftWindow,
    FeatureDrift,
    assess,
    assess_feature,
)
from servekit.profile import build_profile
from servekit.signature import Feature, Signature

TRIALS = 200
SETTINGS = DriftSettings()


def profile_of(frame: pd.DataFrame) -> dict:
    kinds = {c: "float64" if pd.api.types.is_numeric_dtype(frame[c]) else "string" for c in frame.columns}
    signature = Signature(tuple(Feature(c, kinds[c]) for c in frame.columns), input_kind="frame")
    return build_profile(frame, signature)


def reference_of(values: object, dtype: str = "float64") -> dict:
    frame = pd.DataFrame({"x": pd.Series(values)})
    return build_profile(frame, Signature((Feature("x", dtype),), input_kind="frame"))["features"]["x"]


def population(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Features of many shapes: continuous, skewed, heavy-tailed, integer, binary, rounded, categorical."""
    return pd.DataFrame(
        {
            "normal": rng.normal(size=n),
            "lognormal": rng.lognormal(size=n),
            "heavy": rng.standard_t(2, size=n),
            "count": rng.poisson(3, size=n).astype(float),
            "binary": (rng.random(n) < 0.3).astype(float),
            "rounded": np.round(rng.normal(5, 1, size=n), 1),
            "colour": rng.choice(["red", "green", "blue", "grey"], size=n, p=[0.5, 0.3, 0.15, 0.05]),
            "city": rng.choice([f"c{i}" for i in range(40)], size=n, p=_zipf(40)),
        }
    )


def _zipf(k: int) -> np.ndarray:
    weights = 1 / np.arange(1, k + 1)
    return weights / weights.sum()


# -- false alarms ------------------------------------------------------------------------------------
def test_no_false_alarms_on_resampled_reference_data() -> None:
    """breast_cancer (30 numeric features, 569 rows): 200 bootstrap resamples of 500 rows."""
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    profile = profile_of(frame)
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(TRIALS):
        sample = frame.iloc[rng.integers(0, len(frame), size=500)].reset_index(drop=True)
        report = assess(profile, sample, SETTINGS)
        assert report.assessed == 30
        alarms += bool(report.drifted)
    rate = alarms / TRIALS
    print(f"\nfalse-alarm rate, breast_cancer bootstrap (30 features, 500 rows): {rate:.3f} over {TRIALS} reports")
    assert rate <= SETTINGS.ks_pvalue


def test_no_false_alarms_on_fresh_samples_of_the_same_population() -> None:
    """A small reference is noisy too: the two-sample effective n keeps that noise from alarming.
    (The larger case, reference 2000 / live 1000, is the unchanged features of the power test.)"""
    alarms = 0
    for trial in range(TRIALS):
        rng = np.random.default_rng(trial)
        report = assess(profile_of(population(rng, 300)), population(rng, 100), SETTINGS)
        assert report.assessed == 8
        alarms += bool(report.drifted)
    rate = alarms / TRIALS
    print(f"\nfalse-alarm rate, 8 mixed features, reference 300 rows, live 100: {rate:.3f} over {TRIALS} reports")
    assert rate <= SETTINGS.ks_pvalue


# -- power -----------------------------------------------------------------------------------------
def shifted(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = population(rng, n)
    frame["normal"] += 0.5  # half a standard deviation
    frame["heavy"] *= 2.0  # twice the spread
    new = rng.random(n) < 0.1
    frame.loc[new, "colour"] = "purple"  # a category the training data never had, in 10% of rows
    return frame


def test_shifts_are_detected_in_every_trial() -> None:
    counts = dict.fromkeys(["normal", "heavy", "colour"], 0)
    false = 0
    trials = 100
    for trial in range(trials):
        rng = np.random.default_rng(10_000 + trial)
        report = assess(profile_of(population(rng, 2000)), shifted(rng, 1000), SETTINGS)
        for name in counts:
            counts[name] += name in report.drifted
        false += len(set(report.drifted) - set(counts))
    power = {name: count / trials for name, count in counts.items()}
    print(f"\npower (reference 2000, live 1000): {power}; unchanged features flagged: {false}")
    assert power == {"normal": 1.0, "heavy": 1.0, "colour": 1.0}
    assert false <= 1


def test_small_windows_still_see_large_shifts() -> None:
    detected = 0
    for trial in range(50):
        rng = np.random.default_rng(trial)
        reference = reference_of(rng.normal(size=1000))
        result = assess_feature(reference, rng.normal(1.0, 1.0, size=100), SETTINGS, n_tests=8)
        detected += result.state == "drift"
    assert detected == 50


def test_a_significant_but_tiny_shift_is_not_drift() -> None:
    """Large samples make a 0.05-sd shift significant; its PSI is far below the 0.1 floor."""
    rng = np.random.default_rng(1)
    reference = reference_of(rng.normal(size=50_000))
    result = assess_feature(reference, rng.normal(0.05, 1, size=50_000), SETTINGS)
    assert result.ks_pvalue < 1e-6
    assert result.psi < 0.01
    assert result.state == "ok"


# -- the statistics themselves -----------------------------------------------------------------------
def test_ks_statistic_matches_scipy_when_every_value_is_on_the_grid() -> None:
    rng = np.random.default_rng(3)
    reference_values = rng.poisson(4, size=3000).astype(float)
    live = rng.poisson(4.6, size=800).astype(float)
    result = assess_feature(reference_of(reference_values), live, SETTINGS)
    expected = ks_2samp(live, reference_values, method="asymp")  # exact distribution at the effective n
    assert result.ks_statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert expected.pvalue <= result.ks_pvalue <= 1.3 * expected.pvalue  # asymptotic: a little conservative
    assert result.n_reference == 3000
    assert result.n_current == 800


@pytest.mark.parametrize(("n", "m", "statistic"), [(100, 150, 0.2), (100, 20_000, 0.15), (1000, 2000, 0.07)])
def test_ks_pvalue_is_never_below_the_exact_one(n: int, m: int, statistic: float) -> None:
    from scipy.stats import kstwo

    from servekit.monitoring.drift import _ks_pvalue

    exact = kstwo.sf(statistic, round(n * m / (n + m)))
    assert exact <= _ks_pvalue(statistic, n, m) <= 1.3 * exact


def test_ks_statistic_of_continuous_data_is_a_tight_lower_bound() -> None:
    rng = np.random.default_rng(4)
    for shift in (0.0, 0.2, 0.5):
        reference_values = rng.normal(size=5000)
        live = rng.normal(shift, 1, size=1000)
        exact = ks_2samp(live, reference_values).statistic
        ours = assess_feature(reference_of(reference_values), live, SETTINGS).ks_statistic
        assert exact - 0.012 <= ours <= exact + 1e-12


def test_profiles_without_the_percentile_grid_are_still_assessed() -> None:
    """Bundles packed before the `cdf` key existed: KS at the decile edges, less power, no alarms."""
    rng = np.random.default_rng(5)
    old = reference_of(rng.normal(size=2000))
    del old["cdf"]
    same = assess_feature(old, rng.normal(size=1000), SETTINGS)
    moved = assess_feature(old, rng.normal(0.5, 1, size=1000), SETTINGS)
    assert same.state == "ok" and same.ks_pvalue > 0.01
    assert moved.state == "drift" and moved.ks_statistic > 0.15


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(6)
    reference = reference_of(rng.normal(size=5000))
    assert assess_feature(reference, rng.normal(size=5000), SETTINGS).psi < 0.01
    assert assess_feature(reference, rng.normal(1, 1, size=5000), SETTINGS).psi > 0.5
    assert assess_feature(reference, rng.normal(1, 1, size=5000), SETTINGS).score > 0.5


def test_values_outside_the_reference_range_count_in_the_outer_bins() -> None:
    reference = reference_of(np.linspace(0, 1, 1000))
    result = assess_feature(reference, np.full(200, 50.0), SETTINGS)
    assert result.ks_statistic == 1.0
    assert result.state == "drift"


def test_new_categories_are_drift_and_rare_unseen_ones_are_not() -> None:
    rng = np.random.default_rng(7)
    reference = reference_of(rng.choice(["a", "b", "c"], size=3000), "string")
    live = rng.choice(["a", "b", "c"], size=1000).astype(object)
    live[:3] = "rare-newcomer"  # 0.3%: pooled with the smallest column, no alarm
    assert assess_feature(reference, live, SETTINGS).state == "ok"
    live[:100] = "newcomer"  # 10%
    result = assess_feature(reference, live, SETTINGS)
    assert result.state == "drift"
    assert result.chi2_pvalue < 1e-10


def test_categories_read_back_as_floats_match_integer_categories() -> None:
    reference = reference_of([1, 2, 3] * 100, "category")
    live = pd.Series([1.0, 2.0, 3.0] * 50)  # e.g. read from a CSV with a gap elsewhere
    result = assess_feature(reference, live, SETTINGS)
    assert result.state == "ok"
    assert result.chi2_statistic == pytest.approx(0.0)


def test_a_profile_truncated_to_its_top_categories_does_not_alarm() -> None:
    """More categories than the profile keeps: only well-counted ones keep their own column."""
    alarms = 0
    for trial in range(100):
        rng = np.random.default_rng(trial)
        names = np.array([f"v{i}" for i in range(400)])
        reference = reference_of(rng.choice(names, size=2000, p=_zipf(400)), "string")
        assert reference["other"] > 0
        result = assess_feature(reference, rng.choice(names, size=1000, p=_zipf(400)), SETTINGS)
        alarms += result.state == "drift"
    assert alarms <= 1


# -- not assessable ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reference", "values", "reason"),
    [
        (reference_of(np.arange(500.0)), np.full(500, np.nan), "all values missing"),
        (reference_of(np.full(300, np.nan)), np.arange(500.0), "all values missing in the reference"),
        (reference_of(np.full(300, 7.0)), np.full(500, 9.0), "constant in the reference"),
        (reference_of(["a"] * 300, "string"), ["b"] * 500, "constant in the reference"),
        (reference_of([None] * 300, "string"), ["b"] * 500, "all values missing in the reference"),
        (None, np.arange(500.0), "not in the reference profile"),
        (reference_of(np.arange(500.0)), np.arange(12.0), "only 12 rows, need 100"),
        (reference_of(np.arange(500.0)), [1.0] * 40 + [None] * 200, "only 40 non-missing values, need 100"),
        (reference_of(np.arange(500.0)), ["not a number"] * 500, "all values missing or not numbers"),
        ({"kind": "numeric", "bin_edges": [0, 1], "bin_counts": "x"}, np.arange(500.0), "is invalid"),
        ({"kind": "numeric", "bin_edges": [0, 1, 2], "bin_counts": [5]}, np.arange(500.0), "is invalid"),
        ({"kind": "categorical", "frequencies": {"a": "many"}}, ["a"] * 500, "is invalid"),
    ],
)
def test_not_assessable_states_say_why(reference: dict | None, values: object, reason: str) -> None:
    result = assess_feature(reference, values, SETTINGS, feature="f")
    assert result.state == "not_assessable"
    assert reason in result.reason
    assert result.psi is None and np.isnan(result.score)
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["score"] is None


def test_assess_reports_every_feature_and_divides_the_threshold() -> None:
    rng = np.random.default_rng(8)
    reference = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "k": np.full(500, 1.0)})
    live = pd.DataFrame({"a": rng.normal(3, 1, size=200), "b": rng.normal(size=200), "extra": 1.0})
    report = assess(profile_of(reference), live, SETTINGS, model="m", version=4, features=["a", "b", "k", "extra"])
    states = {f.feature: (f.state, f.reason) for f in report.features}
    assert states == {
        "a": ("drift", None),
        "b": ("ok", None),
        "k": ("not_assessable", "constant in the reference"),
        "extra": ("not_assessable", "not in the reference profile"),
    }
    assert report.drifted == ["a"] and report.assessed == 2
    assert [f.threshold for f in report.features[:2]] == [SETTINGS.ks_pvalue / 2] * 2
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["model"] == "m" and data["version"] == 4 and data["rows"] == 200 and data["drift"] is True
    assert data["features"][0]["score"] == pytest.approx(report.features[0].psi)


def test_a_feature_missing_from_the_live_data_or_an_empty_window() -> None:
    profile = profile_of(pd.DataFrame({"a": np.arange(300.0), "b": np.arange(300.0)}))
    report = assess(profile, pd.DataFrame({"a": np.arange(300.0)}))
    assert [(f.feature, f.state, f.reason) for f in report.features][1] == (
        "b",
        "not_assessable",
        "not in the current data",
    )
    empty = assess(profile, pd.DataFrame())
    assert {f.reason for f in empty.features} == {"only 0 rows, need 100"}
    assert empty.drifted == [] and empty.rows == 0


def test_a_report_without_any_profile_assesses_nothing() -> None:
    report = assess(None, pd.DataFrame({"a": np.arange(200.0), "c": ["x"] * 200}))
    assert [(f.feature, f.kind, f.state) for f in report.features] == [
        ("a", "numeric", "not_assessable"),
        ("c", "categorical", "not_assessable"),
    ]
    assert isinstance(report, DriftReport) and not report.drifted


def test_feature_drift_to_dict_has_no_nan() -> None:
    result = FeatureDrift("x", "numeric", "ok", ks_statistic=float("nan"), psi=float("inf"))
    data = result.to_dict()
    assert data["ks_statistic"] is None and data["psi"] is None and data["score"] is None


# -- settings ----------------------------------------------------------------------------------------
def test_settings_defaults_and_validation() -> None:
    settings = DriftSettings()
    assert (settings.window_size, settings.min_rows, settings.check_interval_s) == (1000, 100, 30.0)
    assert (settings.ks_pvalue, settings.chi2_pvalue, settings.psi) == (0.01, 0.01, 0.1)
    with pytest.raises(ValidationError, match="extra"):
        DriftSettings(windowsize=10)
    with pytest.raises(ValidationError, match="min_rows"):
        DriftSettings(window_size=50, min_rows=100)
    with pytest.raises(ValidationError):
        DriftSettings(ks_pvalue=0)


# -- the live window ---------------------------------------------------------------------------------
def test_window_keeps_exactly_the_latest_rows_in_order() -> None:
    window = DriftWindow(size=10)
    assert window.rows == 0 and window.frame(["a", "b"]).shape == (0, 2)
    for start in range(0, 24, 3):  # batches of 3 rows: 0..23
        window.add(np.arange(start, start + 3, dtype=float).repeat(2).reshape(3, 2))
    frame = window.frame(["a", "b"])
    assert window.rows == 10 and window.seen == 24
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [float(v) for v in range(14, 24)]
    assert len(window._chunks) <= 5  # whole old batches are dropped, not kept forever


def test_window_takes_the_tail_of_a_batch_larger_than_itself_and_copies() -> None:
    window = DriftWindow(size=5)
    batch = np.arange(40.0).reshape(20, 2)
    window.add(batch)
    batch[:] = -1  # the caller reuses its buffer
    assert window.frame(["a", "b"])["a"].tolist() == [30.0, 32.0, 34.0, 36.0, 38.0]
    window.add(np.array([1.0, 2.0]))  # one row as a 1-D array
    assert window.frame(["a", "b"]).iloc[-1].tolist() == [1.0, 2.0]
    window.clear()
    assert window.rows == 0


def test_window_of_dataframes_with_categorical_columns() -> None:
    window = DriftWindow(size=4)
    window.add(pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["x", "y", "z"]}))
    window.add(pd.DataFrame({"n": [4.0, 5.0], "c": ["u", "v"]}))
    frame = window.frame(["n", "c"])
    assert frame.to_dict("list") == {"n": [2.0, 3.0, 4.0, 5.0], "c": ["y", "z", "u", "v"]}


def test_window_array_of_another_width_leaves_the_features_missing() -> None:
    window = DriftWindow(size=100)
    window.add(np.ones((150, 3)))
    report = assess(profile_of(pd.DataFrame({"a": np.arange(200.0)})), window.frame(["a"]))
    assert report.features[0].reason == "not in the current data"


def test_window_is_thread_safe() -> None:
    window = DriftWindow(size=1000)

    def fill(offset: int) -> None:
        for i in range(200):
            window.add(np.full((7, 2), offset + i, dtype=float))
            if i % 50 == 0:
                assert len(window.frame(["a", "b"])) <= 1000

    threads = [threading.Thread(target=fill, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert window.seen == 4 * 200 * 7
    assert window.rows == 1000 and len(window.frame(["a", "b"])) == 1000


def test_importing_drift_does_not_import_scipy_or_pandas() -> None:
    code = "import sys, servekit.monitoring.drift; print([m for m in ('scipy', 'pandas') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_assessing_does_not_import_scipy_stats() -> None:
    """scipy.special is enough; scipy.stats would add most of a second to the first check."""
    code = (
        "import sys, numpy as np, servekit.monitoring.drift as d\n"
        "r = d.assess_feature(None, [1.0])\n"
        "d.assess({'features': {'x': {'kind': 'numeric', 'bin_edges': [0.0, 0.5, 1.0], 'bin_counts': [50, 50]},"
        " 'c': {'kind': 'categorical', 'frequencies': {'a': 60, 'b': 40}, 'other': 0}}},"
        " __import__('pandas').DataFrame({'x': np.linspace(0, 1, 200), 'c': ['a', 'b'] * 100}))\n"
        "print('scipy.stats' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_window_of_arrays_is_assessed_like_the_same_dataframe() -> None:
    """The numpy path (array windows, no pandas) gives the very same report as a DataFrame."""
    rng = np.random.default_rng(11)
    reference = population(rng, 3000).drop(columns=["colour", "city"])
    profile = profile_of(reference)
    names = list(reference.columns)
    live = population(rng, 800).drop(columns=["colour", "city"])
    live["normal"] += 0.5  # one drifting feature
    live.loc[::7, "count"] = np.nan  # some missing values
    window = DriftWindow(500)
    for start in range(0, 800, 40):
        window.add(live.iloc[start : start + 40].to_numpy())
    columns = window.columns(names)
    assert columns is not None and len(columns) == 500
    from_arrays = assess(profile, columns, SETTINGS, features=names)
    from_frame = assess(profile, window.frame(names), SETTINGS, features=names)
    assert [f.to_dict() for f in from_arrays.features] == [f.to_dict() for f in from_frame.features]
    assert from_arrays.drifted == ["normal"]
    window.add(pd.DataFrame(live.iloc[:5]))  # a DataFrame chunk: only the frame path applies
    assert window.columns(names) is None


def test_checking_a_numeric_array_window_does_not_import_pandas() -> None:
    rng = np.random.default_rng(3)
    profile = profile_of(pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)}))
    code = (
        "import sys, json, numpy as np\n"
        "from servekit.monitoring.drift import DriftWindow, assess\n"
        "window = DriftWindow(300)\n"
        "for _ in range(10): window.add(np.random.default_rng(0).normal(size=(40, 2)))\n"
        f"report = assess(json.loads({json.dumps(profile)!r}), window.columns(['a', 'b']))\n"
        "print(report.assessed, 'pandas' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 False"
