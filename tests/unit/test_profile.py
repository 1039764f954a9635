"""`build_profile` (numeric bins/quantiles, category frequencies) and `read_table`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servekit.errors import InvalidInput
from servekit.profile import MAX_CATEGORIES, PROFILE_BINS, build_profile, read_table
from servekit.signature import Feature, Signature


def numeric(values: list[float]) -> dict:
    frame = pd.DataFrame({"x": values})
    return build_profile(frame, Signature((Feature("x"),)))["features"]["x"]


def categorical(values: list[object], dtype: str = "string") -> dict:
    frame = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    return build_profile(frame, Signature((Feature("c", dtype),), input_kind="frame"))["features"]["c"]


def test_numeric_profile() -> None:
    values = [float(v) for v in range(1, 101)] + [np.nan, np.nan, np.inf]
    profile = numeric(values)
    assert profile["kind"] == "numeric"
    assert profile["count"] == 103
    assert profile["missing"] == 3  # NaN and Infinity are not usable values
    assert profile["min"] == 1.0
    assert profile["max"] == 100.0
    assert profile["mean"] == pytest.approx(50.5)
    assert profile["std"] == pytest.approx(np.std(np.arange(1, 101)))
    assert profile["quantiles"]["0.5"] == pytest.approx(50.5)
    assert list(profile["quantiles"]) == ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]
    quantiles = list(profile["quantiles"].values())
    assert quantiles == sorted(quantiles)
    edges, counts = profile["bin_edges"], profile["bin_counts"]
    assert len(edges) == PROFILE_BINS + 1
    assert len(counts) == PROFILE_BINS
    assert edges[0] == 1.0
    assert edges[-1] == 100.0
    assert edges == sorted(edges)
    assert sum(counts) == 100  # every non-missing value is in exactly one bin


def test_repeated_values_merge_bin_edges_and_keep_every_count() -> None:
    profile = numeric([0.0] * 50 + [1.0] * 30 + list(np.linspace(2, 3, 20)))
    assert len(profile["bin_edges"]) == len(set(profile["bin_edges"]))
    assert len(profile["bin_counts"]) == len(profile["bin_edges"]) - 1
    assert sum(profile["bin_counts"]) == 100


def test_constant_column() -> None:
    profile = numeric([5.0] * 11)
    assert profile["missing"] == 0
    assert profile["std"] == 0.0
    assert profile["min"] == profile["max"] == 5.0
    assert set(profile["quantiles"].values()) == {5.0}
    assert profile["bin_edges"] == [5.0]
    assert profile["bin_counts"] == [11]


def test_all_missing_column_does_not_crash() -> None:
    profile = numeric([np.nan] * 4)
    assert profile == {"kind": "numeric", "count": 4, "missing": 4}


def test_categorical_profile() -> None:
    profile = categorical(["a", "b", "a", None, "a", "b", "c", 7])
    assert profile == {
        "kind": "categorical",
        "count": 8,
        "missing": 1,
        "frequencies": {"a": 3, "b": 2, "c": 1, "7": 1},
        "other": 0,
    }


def test_categories_beyond_the_limit_are_counted_as_other() -> None:
    values = [f"v{i % 150}" for i in range(300)] + [None]  # 150 categories, 2 rows each
    profile = categorical(values, dtype="category")
    assert len(profile["frequencies"]) == MAX_CATEGORIES
    assert profile["other"] == 2 * (150 - MAX_CATEGORIES)
    assert sum(profile["frequencies"].values()) + profile["other"] + profile["missing"] == profile["count"] == 301


def test_profile_of_a_frame_is_json_ready() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan], "c": ["u", "v", "u"], "unused": [0, 0, 0]})
    signature = Signature((Feature("x"), Feature("c", "string")), input_kind="frame")
    profile = build_profile(frame, signature)
    assert profile["rows"] == 3
    assert list(profile["features"]) == ["x", "c"]
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile


# -- read_table ----------------------------------------------------------------------------------
@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})


def test_read_csv_parquet_jsonl_and_tsv(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "t.csv", index=False)
    table.to_parquet(tmp_path / "t.parquet")
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    table.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    for name in ("t.csv", "t.parquet", "t.jsonl", "t.tsv"):
        read = read_table(tmp_path / name)
        assert read["a"].tolist() == [1.5, 2.5], name
        assert read["b"].tolist() == ["x", "y"], name


def test_extension_is_case_insensitive(tmp_path: Path, table: pd.DataFrame) -> None:
    table.to_csv(tmp_path / "T.CSV", index=False)
    assert read_table(tmp_path / "T.CSV").shape == (2, 2)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_text("whatever")
    with pytest.raises(InvalidInput) as info:
        read_table(path)
    assert info.value.message == "cannot read t.xlsx: unknown table format '.xlsx'"
    assert info.value.hint == "Use .csv, .parquet or .jsonl"


@pytest.mark.parametrize("name", ["missing.csv", "missing.parquet", "missing.jsonl"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        read_table(tmp_path / name)
    assert info.value.message == f"{tmp_path / name} does not exist"


@pytest.mark.parametrize(
    ("name", "content"), [("bad.parquet", b"nonsense"), ("bad.jsonl", b"{not json\n"), ("e.csv", b"")]
)
def test_unreadable_file_is_one_clear_error(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        read_table(tmp_path / name)
    assert info.value.message.startswith(f"cannot read {name}: ")
