"""Whole-column validation of a chunk into the batch the model's signature would produce.

The checks and messages are the server's (`servekit.signature`), done on whole columns with
numpy and pyarrow: a chunk costs a few vectorized passes, and only the columns that hold a bad
value are looked at value by value, to say which rows and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from servekit.batch.chunks import Problem
from servekit.signature import Batch, Feature, Signature

__all__ = ["MISSING", "NOT_FINITE", "Validated", "validate"]

MISSING = "missing value (null) is not accepted by this model"
NOT_FINITE = "NaN and Infinity are not accepted by this model"
_NAN_TEXT = frozenset({"nan", "+nan", "-nan"})


@dataclass
class Validated:
    """The model's batch for the good rows of a chunk, and why the others were left out."""

    batch: Batch | None
    """`None` when no row is good."""
    good: np.ndarray
    """Indices (into the chunk's columns) of the rows in `batch`, in order."""
    problems: list[Problem]
    """One per bad value, with `row` the index into the chunk's columns."""


@dataclass
class _Column:
    values: np.ndarray
    nulls: np.ndarray | None = None
    bad: dict[int, str] | None = None
    """Rows whose value is not acceptable at all (not a number, wrong type), with the reason."""


def validate(signature: Signature, inputs: list[str], columns: Mapping[str, Any], length: int) -> Validated:
    """Validate `length` rows: `inputs[i]` is the column feeding `signature.features[i]`."""
    problems: list[Problem] = []
    bad = np.zeros(length, dtype=bool)
    parsed: list[_Column] = []
    for feature, name in zip(signature.features, inputs, strict=True):
        column = _numeric(columns[name], feature) if feature.numeric else _text(columns[name], feature)
        parsed.append(column)
        for row, reason in (column.bad or {}).items():
            problems.append(Problem(row, name, reason))
            bad[row] = True
        if column.nulls is not None and not _accepts_null(signature, feature):
            rows = np.flatnonzero(column.nulls)
            problems.extend(Problem(int(r), name, MISSING) for r in rows)
            bad[rows] = True
    if signature.input_kind == "frame" and not _one_block(signature):
        for feature, name, column in zip(signature.features, inputs, parsed, strict=True):
            if feature.numeric and not signature.allow_nan:
                _flag(~np.isfinite(column.values), column, name, problems, bad)
        data = {f.name: _frame_values(c, f) for f, c in zip(signature.features, parsed, strict=True)}

        def make(good: np.ndarray) -> Batch:
            return _frame(data, good, bad)

    else:
        target = np.dtype("float64" if signature.input_kind == "frame" else signature.array_dtype)
        matrix = _matrix(parsed, inputs, length, target, signature.allow_nan, problems, bad)

        def make(good: np.ndarray) -> Batch:
            return _shaped(matrix, good, bad, signature)

    good = np.flatnonzero(~bad)
    problems.sort(key=lambda p: p.row)
    return Validated(make(good) if good.size else None, good, problems)


def _one_block(signature: Signature) -> bool:
    """Every feature becomes a float64 column: the frame can wrap one 2-D array, without copies."""
    return all(f.numeric and f.dtype not in ("float16", "float32") for f in signature.features)


def _matrix(
    parsed: list[_Column],
    inputs: list[str],
    length: int,
    target: np.dtype,
    allow_nan: bool,
    problems: list[Problem],
    bad: np.ndarray,
) -> np.ndarray:
    """The rows as one array of dtype `target`, flagging values it cannot take.

    Filled column by column into Fortran order (10x cheaper than strided writes into C order);
    a DataFrame wraps it without a copy, and runtimes accept either order.
    """
    columns = np.empty((len(parsed), length), dtype="float64")
    for index, column in enumerate(parsed):
        columns[index] = column.values
    matrix = columns.T
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = matrix.astype(target, copy=False)
        if allow_nan:
            return matrix
    finite = np.isfinite(matrix)
    if not finite.all():
        for col in np.flatnonzero(~finite.all(axis=0)):
            _flag(~finite[:, col], parsed[col], inputs[col], problems, bad)
        if target.kind != "f":
            matrix[~finite] = 0  # rows left out anyway; an integer cannot hold NaN
    return matrix if target.kind == "f" else matrix.astype(target)


def _shaped(matrix: np.ndarray, good: np.ndarray, bad: np.ndarray, signature: Signature) -> Batch:
    rows = matrix[good] if bad.any() else matrix
    if signature.input_kind == "frame":
        import pandas as pd

        return pd.DataFrame(rows, columns=signature.names, copy=False)
    if signature.row_shape is not None:
        rows = rows.reshape(len(good), *signature.row_shape)
    return rows


def _flag(mask: np.ndarray, column: _Column, name: str, problems: list[Problem], bad: np.ndarray) -> None:
    """Report the values under `mask` as not finite, unless already reported as null or bad."""
    for row in np.flatnonzero(mask):
        if not _reported(column, row):
            problems.append(Problem(int(row), name, NOT_FINITE))
            bad[row] = True


def _accepts_null(signature: Signature, feature: Feature) -> bool:
    """Nulls pass when the model allows missing values and its input can hold them (floats, text)."""
    if not signature.allow_nan:
        return False
    if not feature.numeric or signature.input_kind == "frame":
        return True
    return np.dtype(signature.array_dtype).kind == "f"


def _reported(column: _Column, row: int) -> bool:
    """The value at `row` already has a problem (null or bad), so a NaN there says nothing new."""
    return (column.nulls is not None and bool(column.nulls[row])) or (column.bad is not None and row in column.bad)


def _frame_values(column: _Column, feature: Feature) -> np.ndarray:
    if not feature.numeric or feature.dtype == "bool" or not feature.dtype.startswith("float"):
        return column.values
    return column.values.astype(feature.dtype, copy=False)


def _frame(data: dict[str, np.ndarray], good: np.ndarray, bad: np.ndarray) -> Batch:
    import pandas as pd

    if bad.any():
        data = {name: values[good] for name, values in data.items()}
    return pd.DataFrame(data)


# -- one column ---------------------------------------------------------------------------------
def _numeric(values: Any, feature: Feature) -> _Column:
    """Float64 values of a numeric feature's column (NaN where null or bad)."""
    if isinstance(values, np.ndarray):
        return _numeric_objects(values, feature)
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = values.type
    nulls = _nulls(values)
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _Column(_float_array(pc.cast(values, pa.float64())), nulls)
    if pa.types.is_boolean(kind) and feature.dtype == "bool":
        return _Column(_float_array(pc.cast(values, pa.float64())), nulls)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _numeric_strings(values, nulls)
    if pa.types.is_null(kind):
        return _Column(np.full(len(values), math.nan), nulls)
    shown = "boolean" if pa.types.is_boolean(kind) else str(kind)
    rows = range(len(values)) if nulls is None else np.flatnonzero(~nulls)
    return _Column(np.full(len(values), math.nan), nulls, {int(r): f"expected a number, got {shown}" for r in rows})


def _numeric_strings(values: Any, nulls: np.ndarray | None) -> _Column:
    """Text that should hold numbers (a CSV chunk that did not parse as numbers)."""
    import pandas as pd

    text = values.to_numpy(zero_copy_only=False)
    numbers = np.asarray(pd.to_numeric(pd.Series(text, dtype=object), errors="coerce"), dtype="float64")
    suspects = np.isnan(numbers)
    if nulls is not None:
        suspects &= ~nulls
    bad = {}
    for row in np.flatnonzero(suspects):
        shown = str(text[row])
        if shown.strip().lower() not in _NAN_TEXT:
            bad[int(row)] = f"expected a number, got {_describe(shown)}"
    return _Column(numbers, nulls, bad or None)


def _numeric_objects(values: np.ndarray, feature: Feature) -> _Column:
    """Python values of a row-by-row parsed chunk: numbers pass, as on the server."""
    numbers = np.full(len(values), math.nan)
    nulls = np.zeros(len(values), dtype=bool)
    bad: dict[int, str] = {}
    for row, value in enumerate(values):
        if value is None:
            nulls[row] = True
        elif isinstance(value, bool) and feature.dtype != "bool":
            bad[row] = f"expected a number, got {_describe(value)}"
        elif isinstance(value, int | float):
            numbers[row] = float(value)
        else:
            bad[row] = f"expected a number, got {_describe(value)}"
    return _Column(numbers, nulls if nulls.any() else None, bad or None)


def _text(values: Any, feature: Feature) -> _Column:
    """Object array of strings (None where null) for a text feature."""
    if isinstance(values, np.ndarray):
        nulls = np.array([v is None for v in values], dtype=bool)
        bad = {
            row: f"expected a string, got {_describe(v)}"
            for row, v in enumerate(values)
            if v is not None and not isinstance(v, str)
        }
        return _Column(values, nulls if nulls.any() else None, bad or None)
    import pyarrow as pa

    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = kind.value_type
    nulls = _nulls(values)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return _Column(np.asarray(values.to_numpy(zero_copy_only=False), dtype=object), nulls)
    rows = range(len(values)) if nulls is None else np.flatnonzero(~nulls)
    objects = np.full(len(values), None, dtype=object)
    return _Column(objects, nulls, {int(r): f"expected a string, got {kind}" for r in rows})


def _nulls(values: Any) -> np.ndarray | None:
    if values.null_count == 0:
        return None
    return np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _float_array(values: Any) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype="float64")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
