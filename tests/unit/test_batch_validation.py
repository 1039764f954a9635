"""`servekit.batch.validation`: whole-column checks give the server's batch and its messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from servekit.batch.validation import MISSING, NOT_FINITE, validate
from servekit.signature import Feature, Signature

NAMES = ["a", "b", "c"]
ARRAY = Signature(tuple(Feature(n) for n in NAMES))


def columns(**values: list) -> dict[str, pa.ChunkedArray]:
    return {name: pa.chunked_array([pa.array(v)]) for name, v in values.items()}


def test_good_rows_give_the_batch_the_signature_gives() -> None:
    rows = [[1.0, 2.0, 3.0], [4.5, -1.0, 0.0]]
    data = columns(a=[1.0, 4.5], b=[2, -1], c=[3.0, 0.0])
    checked = validate(ARRAY, NAMES, data, 2)
    assert checked.problems == [] and checked.good.tolist() == [0, 1]
    expected = ARRAY.batch(rows)
    assert checked.batch.dtype == expected.dtype
    np.testing.assert_array_equal(checked.batch, expected)


def test_bad_values_are_reported_with_row_column_and_the_servers_reason() -> None:
    data = {
        "a": pa.chunked_array([pa.array([1.0, None, 3.0, 4.0, 5.0])]),
        "b": pa.chunked_array([pa.array(["1", "2", "abc", "nan", " 7 "])]),  # a CSV chunk read as text
        "c": pa.chunked_array([pa.array([1.0, 2.0, float("inf"), 4.0, 5.0])]),
    }
    checked = validate(ARRAY, NAMES, data, 5)
    found = [(p.row, p.column, p.reason) for p in checked.problems]
    assert found == [
        (1, "a", MISSING),
        (2, "b", "expected a number, got string 'abc'"),
        (2, "c", NOT_FINITE),
        (3, "b", NOT_FINITE),
    ]
    assert checked.good.tolist() == [0, 4]
    np.testing.assert_array_equal(checked.batch, [[1.0, 1.0, 1.0], [5.0, 7.0, 5.0]])


def test_allow_nan_passes_missing_values_but_not_words() -> None:
    signature = Signature(ARRAY.features, allow_nan=True)
    data = {
        "a": pa.chunked_array([pa.array([None, 2.0])]),
        "b": pa.chunked_array([pa.array(["x", "1"])]),
        "c": pa.chunked_array([pa.array([1.0, float("nan")])]),
    }
    checked = validate(signature, NAMES, data, 2)
    assert [(p.row, p.reason) for p in checked.problems] == [(0, "expected a number, got string 'x'")]
    assert checked.good.tolist() == [1]
    assert checked.batch[0, 0] == 2.0 and np.isnan(checked.batch[0, 2])


def test_float32_and_integer_inputs_like_the_signature() -> None:
    f32 = Signature(ARRAY.features, array_dtype="float32")
    data = columns(a=[1.0, 1e300], b=[2.0, 2.0], c=[3.0, 3.0])
    checked = validate(f32, NAMES, data, 2)
    assert checked.batch.dtype == np.float32 and checked.good.tolist() == [0]
    assert [(p.row, p.column, p.reason) for p in checked.problems] == [(1, "a", NOT_FINITE)]
    ints = Signature(ARRAY.features, array_dtype="int64", allow_nan=True)
    checked = validate(ints, NAMES, columns(a=[1, None], b=[2, 2], c=[3, 3]), 2)
    assert checked.batch.dtype == np.int64 and checked.batch.tolist() == [[1, 2, 3]]
    assert [p.reason for p in checked.problems] == [MISSING]  # an integer tensor cannot hold NaN


def test_tensor_rows_take_the_row_shape() -> None:
    signature = Signature(tuple(Feature(f"x{i}") for i in range(4)), row_shape=(2, 2))
    data = columns(x0=[1.0], x1=[2.0], x2=[3.0], x3=[4.0])
    checked = validate(signature, [f"x{i}" for i in range(4)], data, 1)
    np.testing.assert_array_equal(checked.batch, signature.batch([[[1.0, 2.0], [3.0, 4.0]]]))


def test_frame_models_get_a_frame_with_text_columns() -> None:
    signature = Signature((Feature("size"), Feature("color", "string")), input_kind="frame", named=True)
    data = {
        "size": pa.chunked_array([pa.array([1.5, 2.0, 3.0])]),
        "color": pa.chunked_array([pa.array(["red", None, "blue"])]),
    }
    checked = validate(signature, ["size", "color"], data, 3)
    assert [(p.row, p.column, p.reason) for p in checked.problems] == [(1, "color", MISSING)]
    expected = signature.batch([{"size": 1.5, "color": "red"}, {"size": 3.0, "color": "blue"}])
    pd.testing.assert_frame_equal(checked.batch, expected)


def test_numeric_frames_wrap_one_array() -> None:
    signature = Signature(ARRAY.features, input_kind="frame", named=True)
    checked = validate(signature, NAMES, columns(a=[1.0, 2.0], b=[3.0, 4.0], c=[5.0, None]), 2)
    expected = signature.batch([{"a": 1.0, "b": 3.0, "c": 5.0}])
    pd.testing.assert_frame_equal(checked.batch, expected)
    assert [(p.row, p.column) for p in checked.problems] == [(1, "c")]


def test_python_values_of_a_row_by_row_chunk_are_judged_like_json() -> None:
    values = {
        "a": np.array([1, True, None, "2"], dtype=object),
        "b": np.array([2.5, 1.0, 1.0, 1.0], dtype=object),
        "c": np.array([3, 3, 3, 3], dtype=object),
    }
    checked = validate(ARRAY, NAMES, values, 4)
    assert [(p.row, p.reason) for p in checked.problems] == [
        (1, "expected a number, got boolean true"),
        (2, MISSING),
        (3, "expected a number, got string '2'"),
    ]
    np.testing.assert_array_equal(checked.batch, [[1.0, 2.5, 3.0]])


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (pa.array([True, False]), "expected a number, got boolean"),
        (pa.array([[1], [2]]), "expected a number, got list<item: int64>"),
    ],
)
def test_columns_of_a_wrong_type_fail_every_row(values: pa.Array, reason: str) -> None:
    data = {"a": pa.chunked_array([values]), **columns(b=[1.0, 1.0], c=[1.0, 1.0])}
    checked = validate(ARRAY, NAMES, data, 2)
    assert checked.batch is None and checked.good.size == 0
    assert {p.reason for p in checked.problems} == {reason}
