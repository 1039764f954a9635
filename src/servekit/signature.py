"""The input contract of a model: turns accepted payload shapes into a canonical batch.

A batch is what a runtime's `predict` receives: a 2-D (or, for tensor models, N-D) numpy array,
or a pandas DataFrame for models that take named, possibly non-numeric columns (pipelines with a
ColumnTransformer). Every way in (JSON rows, named records, tensors, CSV, Parquet) goes through
`Signature`, so each transport rejects bad input with the same precise message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from servekit.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NUMERIC_DTYPES", "TEXT_DTYPES", "Batch", "Feature", "Signature"]

NUMERIC_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)
TEXT_DTYPES = frozenset({"string", "category"})
InputKind = Literal["array", "frame"]
Batch = Any  # np.ndarray | pandas.DataFrame, kept loose so pandas stays a lazy import

_SHOWN_NAMES = 8
_PLAIN_NUMBERS = (float, int)
_PLAIN_NUMBER_TYPES = frozenset(_PLAIN_NUMBERS)


@dataclass(frozen=True)
class Feature:
    """One input column: its name and dtype (a numpy dtype name, `string` or `category`)."""

    name: str
    dtype: str = "float64"

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


@dataclass(frozen=True)
class Signature:
    """What a model accepts, and the conversion of payloads into a batch it can predict on."""

    features: tuple[Feature, ...]
    input_kind: InputKind = "array"
    named: bool = False
    """The model knows its feature names, so named payloads are matched by name."""
    row_shape: tuple[int, ...] | None = None
    """Shape of one row for tensor models; `None` means a flat row of `len(features)` values."""
    array_dtype: str = "float64"
    allow_nan: bool = False
    """Missing values (JSON null, NaN) are passed to the model instead of rejected."""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {f.name: i for i, f in enumerate(self.features)})

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def positional(cls, n_features: int, **kwargs: Any) -> Signature:
        """A signature for a model that knows only how many features it takes."""
        return cls(tuple(Feature(f"x{i}") for i in range(n_features)), **kwargs)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def has_feature(self, name: str) -> bool:
        return name in self._index

    @property
    def expected_row_shape(self) -> tuple[int, ...]:
        return self.row_shape or (self.n_features,)

    def to_dict(self) -> dict[str, Any]:
        """The manifest form of this signature."""
        out: dict[str, Any] = {
            "features": [{"name": f.name, "dtype": f.dtype} for f in self.features],
            "input_kind": self.input_kind,
            "named": self.named,
            "array_dtype": self.array_dtype,
            "allow_nan": self.allow_nan,
        }
        if self.row_shape is not None:
            out["row_shape"] = list(self.row_shape)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Inverse of `to_dict`; raises `ValueError`/`KeyError`/`TypeError` on bad data."""
        features = tuple(Feature(str(f["name"]), str(f.get("dtype", "float64"))) for f in data["features"])
        for feature in features:
            if feature.dtype not in NUMERIC_DTYPES | TEXT_DTYPES:
                raise ValueError(f"unknown dtype {feature.dtype!r} for feature {feature.name!r}")
        row_shape = data.get("row_shape")
        return cls(
            features,
            input_kind=data.get("input_kind", "array"),
            named=bool(data.get("named", False)),
            row_shape=tuple(int(d) for d in row_shape) if row_shape else None,
            array_dtype=str(data.get("array_dtype", "float64")),
            allow_nan=bool(data.get("allow_nan", False)),
        )

    # -- conversion ---------------------------------------------------------------------------
    def batch(self, payload: Any) -> Batch:
        """Any accepted shape: one row (list or mapping) or many rows (list of lists/mappings)."""
        if type(payload) is list and payload and type(payload[0]) in _PLAIN_NUMBERS:
            # The common case, one JSON row of plain numbers, without the general checks.
            if self.input_kind == "array" and self.row_shape is None and len(payload) == len(self.features):
                types = set(map(type, payload))
                if types <= _PLAIN_NUMBER_TYPES:
                    row = np.array([payload], dtype=self.array_dtype)
                    # A float64 sum of finite numbers is finite unless it overflows: then numpy decides.
                    if (
                        self.allow_nan
                        or (self.array_dtype == "float64" and math.isfinite(sum(payload)))
                        or np.isfinite(row).all()
                    ):
                        return row
                elif list not in types and dict not in types:
                    self._raise_first_bad_in_row(0, payload)  # returns for numbers and allowed nulls
            return self.batch_from_rows([payload])
        if isinstance(payload, Mapping):
            return self.batch_from_records([payload])
        if isinstance(payload, np.ndarray):
            return self.batch_from_array(payload)
        if not isinstance(payload, Sequence) or isinstance(payload, str | bytes):
            raise InvalidInput(f"expected a row or a list of rows, got {_kind(payload)}")
        if not payload:
            raise InvalidInput("the request has no rows")
        first = payload[0]
        if isinstance(first, Mapping):
            return self.batch_from_records(payload)
        if _is_scalar(first):
            return self.batch_from_rows([payload])
        return self.batch_from_rows(payload)

    def batch_from_rows(self, rows: Sequence[Any]) -> Batch:
        """Positional rows: a list of lists in feature order (or nested lists for tensors)."""
        if not rows:
            raise InvalidInput("the request has no rows")
        if self.input_kind == "frame":
            self._check_row_widths(rows)
            return self._frame({f.name: [row[i] for row in rows] for i, f in enumerate(self.features)})
        types = _flat_value_types(rows) if self.row_shape is None else None
        if types is not None:  # JSON rows of scalars: check the types once, convert once
            if not types <= _PLAIN_NUMBER_TYPES:
                self._raise_first_bad_value(rows)  # returns only for numbers and allowed nulls
            try:
                array = np.asarray(rows, dtype="float64")
            except ValueError:
                self._check_row_widths(rows)  # ragged rows give the precise message
                raise InvalidInput("rows must all have the same nested shape") from None
            return self.batch_from_array(array)
        try:
            array = np.asarray(rows)
        except ValueError:
            self._check_row_widths(rows)  # ragged rows give the precise message
            raise InvalidInput("rows must all have the same nested shape") from None
        if array.dtype.kind in "USO" or array.dtype == bool or _has_bool(rows, array.ndim):
            self._raise_first_bad_value(rows)
            array = np.asarray(rows, dtype="float64")
        return self.batch_from_array(array)

    def batch_from_records(self, records: Sequence[Mapping[str, Any]]) -> Batch:
        """Named rows: a list of mappings from feature name to value."""
        if not records:
            raise InvalidInput("the request has no rows")
        for number, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise InvalidInput(f"row {number}: expected an object of named features, got {_kind(record)}")
            if record.keys() != self._index.keys():
                self._raise_name_mismatch(number, record)
        columns = {f.name: [r[f.name] for r in records] for f in self.features}
        if self.input_kind == "frame":
            return self._frame(columns)
        rows = [[r[name] for name in self._index] for r in records]
        return self.batch_from_rows(rows)

    def batch_from_columns(self, columns: Mapping[str, Sequence[Any]]) -> Batch:
        """Column-oriented input (a DataFrame's columns, MLflow `dataframe_split`, CSV)."""
        if columns.keys() != self._index.keys():
            self._raise_name_mismatch(None, columns)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput("columns have different lengths")
        if not lengths or lengths == {0}:
            raise InvalidInput("the request has no rows")
        if self.input_kind == "frame":
            return self._frame({name: list(columns[name]) for name in self._index})
        return self.batch_from_rows([list(row) for row in zip(*(columns[n] for n in self._index), strict=True)])

    def batch_from_array(self, array: np.ndarray) -> Batch:
        """A numeric array of shape (rows, *row_shape); one row may be given as a 1-D array."""
        expected = self.expected_row_shape
        if array.ndim == len(expected):
            array = array.reshape(1, *array.shape)
        if array.ndim != len(expected) + 1 or array.shape[1:] != expected:
            shown = array.shape[1:] if array.ndim > 1 else array.shape
            if len(expected) == 1 and len(shown) == 1:
                raise InvalidInput(f"each row must have {expected[0]} values ({self._names_text()}), got {shown[0]}")
            raise InvalidInput(f"each row must have shape {list(expected)}, got {list(shown)}")
        if array.shape[0] == 0:
            raise InvalidInput("the request has no rows")
        if self.input_kind == "frame":
            return self._frame({f.name: array[:, i] for i, f in enumerate(self.features)})
        if array.dtype.kind not in "fiub" or array.dtype == bool:
            raise InvalidInput("features must be numbers")
        out = array.astype(self.array_dtype, copy=False)
        if not self.allow_nan and out.dtype.kind == "f" and not np.isfinite(out).all():
            row, col = (int(i) for i in np.argwhere(~np.isfinite(out))[0][:2])
            raise InvalidInput(
                f"row {row}, feature {self._name_at(col)!r}: NaN and Infinity are not accepted by this model"
            )
        return out

    def batch_from_frame(self, frame: pd.DataFrame) -> Batch:
        """A pandas DataFrame matched by column name (extra columns are an error)."""
        return self.batch_from_columns({str(c): frame[c].tolist() for c in frame.columns})

    # -- helpers ------------------------------------------------------------------------------
    def _frame(self, columns: dict[str, Sequence[Any]]) -> pd.DataFrame:
        import pandas as pd

        data: dict[str, Any] = {}
        for number, feature in enumerate(self.features):
            values = columns[feature.name]
            if feature.numeric:
                data[feature.name] = self._numeric_column(feature, number, values)
            else:
                data[feature.name] = self._text_column(feature, values)
        return pd.DataFrame(data)

    def _numeric_column(self, feature: Feature, number: int, values: Sequence[Any]) -> np.ndarray:
        accepts_bool = feature.dtype == "bool"
        for row, value in enumerate(values):
            if accepts_bool and isinstance(value, bool):
                continue
            if not _is_number(value) and not (value is None and self.allow_nan):
                raise InvalidInput(f"row {row}, feature {feature.name!r}: expected a number, got {_kind(value)}")
        column = np.asarray([math.nan if v is None else v for v in values], dtype="float64")
        if not self.allow_nan and not np.isfinite(column).all():
            row = int(np.argwhere(~np.isfinite(column))[0][0])
            raise InvalidInput(f"row {row}, feature {feature.name!r}: NaN and Infinity are not accepted by this model")
        return (
            column
            if feature.dtype == "bool"
            else column.astype(feature.dtype if feature.dtype.startswith("float") else "float64", copy=False)
        )

    def _text_column(self, feature: Feature, values: Sequence[Any]) -> np.ndarray:
        for row, value in enumerate(values):
            if not isinstance(value, str) and not (value is None and self.allow_nan):
                raise InvalidInput(f"row {row}, feature {feature.name!r}: expected a string, got {_kind(value)}")
        return np.asarray(values, dtype=object)

    def _check_row_widths(self, rows: Sequence[Any]) -> None:
        width = self.expected_row_shape[0]
        for number, row in enumerate(rows):
            if _is_scalar(row) or isinstance(row, Mapping):
                raise InvalidInput(f"row {number}: expected a list of {width} values, got {_kind(row)}")
            if len(row) != width:
                raise InvalidInput(
                    f"row {number} has {len(row)} values; the model expects {width} ({self._names_text()})"
                )

    def _raise_first_bad_value(self, rows: Sequence[Any]) -> None:
        """Raise for the first value that is not a number (or a null the model accepts)."""
        self._check_row_widths(rows)
        for number, row in enumerate(rows):
            self._raise_first_bad_in_row(number, _flatten(row))
        # Only numbers (and allowed nulls): the caller converts them, nulls to NaN.

    def _raise_first_bad_in_row(self, number: int, values: Sequence[Any]) -> None:
        """Raise for the first of a row's flat values that is not a number (or an allowed null)."""
        for col, value in enumerate(values):
            if type(value) in _PLAIN_NUMBER_TYPES:
                continue
            if value is None:
                if self.allow_nan:
                    continue
                raise InvalidInput(
                    f"row {number}, feature {self._name_at(col)!r}: missing value (null) is not accepted by this model"
                )
            if not _is_number(value):
                raise InvalidInput(
                    f"row {number}, feature {self._name_at(col)!r}: expected a number, got {_kind(value)}"
                )

    def _raise_name_mismatch(self, number: int | None, given: Mapping[str, Any]) -> None:
        missing = [n for n in self._index if n not in given]
        unknown = [str(n) for n in given if n not in self._index]
        where = f"row {number}: " if number is not None else ""
        parts = []
        if missing:
            parts.append(f"missing feature(s) {_short(missing)}")
        if unknown:
            parts.append(f"unknown feature(s) {_short(unknown)}")
        raise InvalidInput(f"{where}{'; '.join(parts)}; expected {self._names_text()}")

    def _name_at(self, col: int) -> str:
        return self.features[col].name if col < self.n_features else f"x{col}"

    def _names_text(self) -> str:
        return _short(self.names)


def _short(names: Sequence[str]) -> str:
    if len(names) <= _SHOWN_NAMES:
        return ", ".join(names)
    return ", ".join(names[:_SHOWN_NAMES]) + f", … ({len(names)} in all)"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Sequence | np.ndarray | Mapping) or isinstance(value, str | bytes)


def _flat_value_types(rows: Sequence[Any]) -> set[type] | None:
    """The types of the values of rows that are plain lists of scalars, else `None`."""
    if not all(type(row) is list for row in rows):
        return None
    types = set(map(type, chain.from_iterable(rows)))
    return None if list in types or dict in types else types


def _has_bool(rows: Sequence[Any], ndim: int) -> bool:
    """True when a JSON boolean hides among numbers (numpy would silently read it as 0/1)."""
    if ndim > 2:
        return any(isinstance(v, bool) for row in rows for v in _flatten(row))
    return bool in set(map(type, chain.from_iterable(rows)))


def _flatten(row: Any) -> list[Any]:
    if type(row) is list:  # JSON rows: plain lists, checked without the ABC machinery
        if not any(type(item) is list for item in row):
            return row
        out: list[Any] = []
        for item in row:
            out.extend(_flatten(item) if type(item) is list else [item])
        return out
    if _is_scalar(row) or isinstance(row, Mapping):
        return [row]
    out = []
    for item in row:
        out.extend(_flatten(item))
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"string {shown!r}"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence | np.ndarray):
        return "a list"
    return type(value).__name__
