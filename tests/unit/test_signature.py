"""`Signature`: every accepted payload shape becomes the canonical batch; bad input gets a precise message."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from servekit.errors import InvalidInput
from servekit.signature import Feature, Signature

ABC = Signature((Feature("a"), Feature("b"), Feature("c")), named=True)
THREE = Signature.positional(3)
FRAME = Signature(
    (Feature("age", "float64"), Feature("city", "string"), Feature("n", "int64")), input_kind="frame", named=True
)
TENSOR = Signature.positional(4, row_shape=(2, 2))


def message(signature: Signature, payload: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        signature.batch(payload)
    return info.value.message


# -- accepted shapes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, 2, 3], [[1.0, 2.0, 3.0]]),
        ((1, 2, 3.5), [[1.0, 2.0, 3.5]]),
        ({"a": 1, "b": 2, "c": 3}, [[1.0, 2.0, 3.0]]),
        ({"c": 3, "a": 1, "b": 2}, [[1.0, 2.0, 3.0]]),
        ([[1, 2, 3], [4, 5, 6]], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        ([{"a": 1, "b": 2, "c": 3}, {"b": 5, "c": 6, "a": 4}], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        (np.array([1, 2, 3]), [[1.0, 2.0, 3.0]]),
        (np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32), [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        ([np.float32(1), np.int64(2), 3], [[1.0, 2.0, 3.0]]),
    ],
    ids=[
        "one-row-list",
        "one-row-tuple",
        "one-row-mapping",
        "mapping-any-key-order",
        "list-of-lists",
        "list-of-mappings",
        "numpy-1d",
        "numpy-2d-int",
        "numpy-scalars-in-list",
    ],
)
def test_every_accepted_shape_becomes_a_2d_float_array(payload: Any, expected: list[list[float]]) -> None:
    batch = ABC.batch(payload)
    assert isinstance(batch, np.ndarray)
    assert batch.dtype == np.float64
    assert batch.tolist() == expected


def test_array_dtype_is_respected() -> None:
    batch = Signature.positional(3, array_dtype="float32").batch([1, 2, 3.5])
    assert batch.dtype == np.float32
    assert batch.tolist() == [[1.0, 2.0, 3.5]]


def test_batch_from_columns_transposes_into_rows() -> None:
    batch = THREE.batch_from_columns({"x0": [1, 2], "x1": [3, 4], "x2": [5, 6]})
    assert batch.tolist() == [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]


def test_batch_from_frame_matches_columns_by_name_not_position() -> None:
    frame = pd.DataFrame({"c": [3.0, 6.0], "a": [1.0, 4.0], "b": [2.0, 5.0]})
    assert ABC.batch_from_frame(frame).tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_batch_from_frame_rejects_extra_columns() -> None:
    frame = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0]})
    with pytest.raises(InvalidInput) as info:
        ABC.batch_from_frame(frame)
    assert info.value.message == "unknown feature(s) d; expected a, b, c"


def test_batch_from_columns_errors() -> None:
    with pytest.raises(InvalidInput, match=r"^columns have different lengths$"):
        THREE.batch_from_columns({"x0": [1, 2], "x1": [3], "x2": [5, 6]})
    with pytest.raises(InvalidInput, match=r"^the request has no rows$"):
        THREE.batch_from_columns({"x0": [], "x1": [], "x2": []})
    with pytest.raises(InvalidInput, match=r"^row 1, feature 'x0': expected a number, got string 'a'$"):
        THREE.batch_from_columns({"x0": [1, "a"], "x1": [3, 4], "x2": [5, 6]})


def test_tensor_rows_keep_their_shape() -> None:
    one = TENSOR.batch([[[1, 2], [3, 4]]])
    assert one.shape == (1, 2, 2)
    assert TENSOR.batch(np.zeros((2, 2))).shape == (1, 2, 2)  # one row given without the batch axis
    assert TENSOR.batch(np.ones((5, 2, 2))).shape == (5, 2, 2)


# -- frame kind ----------------------------------------------------------------------------------
def test_frame_kind_casts_numbers_and_keeps_strings() -> None:
    frame = FRAME.batch([{"age": 3, "city": "Oslo", "n": 2}, {"age": 4.5, "city": "Lima", "n": 7}])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["age", "city", "n"]
    assert frame["age"].dtype == np.float64
    assert frame["n"].dtype == np.float64  # integer features are given to the model as float64
    assert frame["city"].tolist() == ["Oslo", "Lima"]
    assert frame["age"].tolist() == [3.0, 4.5]


def test_frame_kind_string_columns_hold_strings() -> None:
    frame = FRAME.batch([{"age": 3, "city": "Oslo", "n": 2}])
    # object, or pandas 3's string dtype: either way what encoders fitted on strings expect
    assert frame["city"].dtype == object or pd.api.types.is_string_dtype(frame["city"])
    assert frame["city"].tolist() == ["Oslo"]


def test_frame_kind_float32_feature_keeps_its_dtype() -> None:
    signature = Signature((Feature("a", "float32"), Feature("b", "int8")), input_kind="frame")
    frame = signature.batch([[1, 2]])
    assert frame["a"].dtype == np.float32
    assert frame["b"].dtype == np.float64


def test_frame_kind_accepts_positional_rows_and_frames() -> None:
    by_row = FRAME.batch([3, "x", 2])
    by_frame = FRAME.batch_from_frame(pd.DataFrame({"n": [2], "city": ["x"], "age": [3.0]}))
    pd.testing.assert_frame_equal(by_row, by_frame)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"age": 3, "city": 5, "n": 2}, "row 0, feature 'city': expected a string, got int"),
        ({"age": "3", "city": "x", "n": 2}, "row 0, feature 'age': expected a number, got string '3'"),
        ({"age": True, "city": "x", "n": 2}, "row 0, feature 'age': expected a number, got boolean true"),
        ({"age": None, "city": "x", "n": 2}, "row 0, feature 'age': expected a number, got null"),
        (
            {"age": math.nan, "city": "x", "n": 2},
            "row 0, feature 'age': NaN and Infinity are not accepted by this model",
        ),
        ({"age": 1, "city": "x", "n": math.inf}, "row 0, feature 'n': NaN and Infinity are not accepted by this model"),
    ],
)
def test_frame_kind_rejections(record: dict[str, Any], expected: str) -> None:
    assert message(FRAME, record) == expected


def test_frame_kind_null_allowed_becomes_nan() -> None:
    signature = Signature((Feature("age"), Feature("city", "string")), input_kind="frame", allow_nan=True)
    frame = signature.batch([{"age": None, "city": "a"}, {"age": 2, "city": "b"}])
    assert math.isnan(frame["age"][0])
    assert frame["age"][1] == 2.0


def test_frame_kind_bool_feature_accepts_booleans() -> None:
    signature = Signature((Feature("flag", "bool"),), input_kind="frame")
    assert signature.batch([[True]])["flag"].tolist() in ([True], [1.0])


# -- to_dict / from_dict -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "signature",
    [
        THREE,
        FRAME,
        TENSOR,
        Signature.positional(2, allow_nan=True, array_dtype="float32"),
        Signature((Feature("colour", "category"), Feature("w", "uint8")), input_kind="frame", named=True),
    ],
)
def test_to_dict_from_dict_round_trip(signature: Signature) -> None:
    data = signature.to_dict()
    assert Signature.from_dict(data) == signature
    assert ("row_shape" in data) == (signature.row_shape is not None)


def test_to_dict_form() -> None:
    assert TENSOR.to_dict() == {
        "features": [{"name": f"x{i}", "dtype": "float64"} for i in range(4)],
        "input_kind": "array",
        "named": False,
        "array_dtype": "float64",
        "allow_nan": False,
        "row_shape": [2, 2],
    }


def test_from_dict_defaults() -> None:
    signature = Signature.from_dict({"features": [{"name": "a"}, {"name": 7}]})
    assert signature == Signature((Feature("a"), Feature("7")))


def test_from_dict_rejects_unknown_dtypes_and_missing_features() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'complex128' for feature 'z'"):
        Signature.from_dict({"features": [{"name": "z", "dtype": "complex128"}]})
    with pytest.raises(KeyError):
        Signature.from_dict({})


def test_signature_properties() -> None:
    assert ABC.names == ["a", "b", "c"]
    assert ABC.n_features == 3
    assert ABC.expected_row_shape == (3,)
    assert TENSOR.expected_row_shape == (2, 2)
    assert Feature("s", "string").numeric is False
    assert Feature("b", "bool").numeric is True


# -- rejections ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signature", "payload", "expected"),
    [
        (THREE, [1, 2], "each row must have 3 values (x0, x1, x2), got 2"),
        (THREE, np.zeros((2, 4)), "each row must have 3 values (x0, x1, x2), got 4"),
        (THREE, [[1, 2, 3], [1, 2]], "row 1 has 2 values; the model expects 3 (x0, x1, x2)"),
        (THREE, [[1, 2, 3], [1, 2, 3, 4]], "row 1 has 4 values; the model expects 3 (x0, x1, x2)"),
        (FRAME, [[3, "x"]], "row 0 has 2 values; the model expects 3 (age, city, n)"),
        (
            Signature.positional(12),
            [1, 2],
            "each row must have 12 values (x0, x1, x2, x3, x4, x5, x6, x7, … (12 in all)), got 2",
        ),
    ],
    ids=["one-row-short", "numpy-wide", "ragged-short", "ragged-long", "frame-short", "long-names-shortened"],
)
def test_wrong_width(signature: Signature, payload: Any, expected: str) -> None:
    assert message(signature, payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, "a", 3], "row 0, feature 'x1': expected a number, got string 'a'"),
        (["abc", "def", "ghi"], "row 0, feature 'x0': expected a number, got string 'abc'"),
        (
            [1, 2, "a very long string indeed"],
            "row 0, feature 'x2': expected a number, got string 'a very long string i…'",
        ),
        ([1, True, 3], "row 0, feature 'x1': expected a number, got boolean true"),
        ([1, True, 2.0], "row 0, feature 'x1': expected a number, got boolean true"),
        ([[1.0, 2.0, 3.0], [4, 5, False]], "row 1, feature 'x2': expected a number, got boolean false"),
        ([True, True, False], "row 0, feature 'x0': expected a number, got boolean true"),
        ([[1, 2, {"a": 1}]], "row 0, feature 'x2': expected a number, got an object"),
        ([1, None, 3], "row 0, feature 'x1': missing value (null) is not accepted by this model"),
        ([[1, 2, 3], [None, 2, 3]], "row 1, feature 'x0': missing value (null) is not accepted by this model"),
        ([float("nan"), 1, 2], "row 0, feature 'x0': NaN and Infinity are not accepted by this model"),
        (np.array([1, np.nan, 3]), "row 0, feature 'x1': NaN and Infinity are not accepted by this model"),
        (np.array([[1, 2, 3], [1, np.inf, 3]]), "row 1, feature 'x1': NaN and Infinity are not accepted by this model"),
        (
            np.array([[1, 2, 3], [1, 2, -np.inf]]),
            "row 1, feature 'x2': NaN and Infinity are not accepted by this model",
        ),
        (np.array(["a", "b", "c"]), "features must be numbers"),
        (np.array([True, False, True]), "features must be numbers"),
    ],
)
def test_bad_values(payload: Any, expected: str) -> None:
    assert message(THREE, payload) == expected


def test_null_and_nan_allowed_become_nan() -> None:
    signature = Signature.positional(3, allow_nan=True)
    batch = signature.batch([[1, None, 3], [None, 2, 3]])
    assert batch.dtype == np.float64
    assert np.isnan(batch).tolist() == [[False, True, False], [True, False, False]]
    assert np.isnan(signature.batch(np.array([1, np.nan, 3]))[0, 1])
    assert np.isinf(signature.batch([1, math.inf, 3])[0, 1])


def test_null_allowed_still_rejects_strings() -> None:
    with pytest.raises(InvalidInput) as info:
        Signature.positional(3, allow_nan=True).batch([None, "x", 1])
    assert info.value.message == "row 0, feature 'x1': expected a number, got string 'x'"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"a": 1, "b": 2}, "row 0: missing feature(s) c; expected a, b, c"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, "row 0: unknown feature(s) d; expected a, b, c"),
        ({"a": 1, "b": 2, "d": 4}, "row 0: missing feature(s) c; unknown feature(s) d; expected a, b, c"),
        ([{"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 2}], "row 1: missing feature(s) b; expected a, b, c"),
        ([{"a": 1, "b": 2, "c": 3}, [1, 2, 3]], "row 1: expected an object of named features, got a list"),
        ({"a": 1, "b": "x", "c": 3}, "row 0, feature 'b': expected a number, got string 'x'"),
        (
            {"a": 1, "b": 2, "c": 3} | {f"u{i}": 0 for i in range(10)},
            "row 0: unknown feature(s) u0, u1, u2, u3, u4, u5, u6, u7, … (10 in all); expected a, b, c",
        ),
    ],
)
def test_names(payload: Any, expected: str) -> None:
    assert message(ABC, payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], "the request has no rows"),
        (np.zeros((0, 3)), "the request has no rows"),
        ("abc", "expected a row or a list of rows, got string 'abc'"),
        (5, "expected a row or a list of rows, got int"),
        (None, "expected a row or a list of rows, got null"),
        ([[[1, 2, 3]]], "each row must have shape [3], got [1, 3]"),
        ([[1, [2, 3], 3]], "rows must all have the same nested shape"),
        ([[1, 2, 3], [4, 5, [6, 7]]], "rows must all have the same nested shape"),
        (np.zeros((2, 3, 1)), "each row must have shape [3], got [3, 1]"),
    ],
    ids=["empty", "empty-array", "string", "int", "null", "too-deep", "list-in-row", "ragged-nesting", "array-3d"],
)
def test_empty_and_wrong_nesting(payload: Any, expected: str) -> None:
    assert message(THREE, payload) == expected


def test_empty_batches_from_every_entry_point() -> None:
    for convert in (THREE.batch_from_rows, THREE.batch_from_records):
        with pytest.raises(InvalidInput, match=r"^the request has no rows$"):
            convert([])


def test_bytes_payload_is_not_called_a_list() -> None:
    assert "got a list" not in message(THREE, b"abc")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([[1, 2, 3], [3, 4, 5]], "each row must have shape [2, 2], got [2, 3]"),
        (np.zeros((3, 2, 3)), "each row must have shape [2, 2], got [2, 3]"),
        ([[[1, 2], [3, 4]], [[1, 2], [3]]], "rows must all have the same nested shape"),
        ([[[1, 2], [3, "x"]]], "row 0, feature 'x3': expected a number, got string 'x'"),
        ([[[1, 2], [3, None]]], "row 0, feature 'x3': missing value (null) is not accepted by this model"),
    ],
)
def test_tensor_row_shape_rejections(payload: Any, expected: str) -> None:
    assert message(TENSOR, payload) == expected


def test_tensor_rejects_booleans_among_numbers() -> None:
    assert message(TENSOR, [[[1, 2], [3, True]]]) == "row 0, feature 'x3': expected a number, got boolean true"


def test_one_row_of_plain_numbers_takes_the_short_way_with_the_same_checks() -> None:
    signature = Signature.positional(3)
    row = signature.batch([1, 2.5, 3])
    assert row.dtype == np.float64 and row.tolist() == [[1.0, 2.5, 3.0]]
    with pytest.raises(InvalidInput, match="NaN and Infinity"):
        signature.batch([1.0, math.nan, 3.0])
    with pytest.raises(InvalidInput, match="boolean"):
        signature.batch([1.0, True, 3.0])
    with pytest.raises(InvalidInput, match="each row must have 3 values"):
        signature.batch([1.0, 2.0])
    lenient = Signature.positional(3, allow_nan=True, array_dtype="float32")
    kept = lenient.batch([1.0, math.nan, 3.0])
    assert kept.dtype == np.float32 and math.isnan(kept[0, 1])


def test_a_single_row_is_checked_for_non_finite_values_whatever_its_sum() -> None:
    assert Signature.positional(2).batch([1e308, 1e308]).tolist() == [[1e308, 1e308]]  # the sum overflows
    with pytest.raises(InvalidInput, match="NaN and Infinity"):
        Signature.positional(2).batch([1.0, math.inf])
    with warnings.catch_warnings(), pytest.raises(InvalidInput, match="NaN and Infinity"):
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "overflow encountered in cast"
        Signature.positional(2, array_dtype="float32").batch([1.0, 1e39])  # finite as float64, not float32
