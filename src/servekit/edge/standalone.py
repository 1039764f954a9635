"""Predictions from a model exported by `servekit export`, with only onnxruntime and numpy.

This file is copied as it is next to `model.onnx` and `signature.json`; it imports nothing
but onnxruntime, numpy and the standard library, so it runs where servekit is not installed:

    from predictor import Predictor
    model = Predictor()                    # the folder this file is in; or Predictor("path/to/folder")
    model.predict([[5.1, 3.5, 1.4, 0.2]])  # rows as lists, a 2-D array, or dicts by feature name
    # [{"prediction": "setosa", "probabilities": {"setosa": 1.0, ...}, "confidence": 1.0}]

    python predictor.py rows.json          # prints {"predictions": [...]} as JSON

The answers have the shape of servekit's `Prediction.to_records()`: `prediction` (a label or a
value), and for classifiers `probabilities` by class name and `confidence` (the highest one).
Bad input raises `ValueError` with a message naming the row and the feature.
"""

# ruff: noqa: B905
# (zip() without strict=: this file also runs on Pythons before 3.10, where zip has no strict)
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MODEL_FILE", "SIGNATURE_FILE", "Predictor", "main"]

MODEL_FILE = "model.onnx"
SIGNATURE_FILE = "signature.json"
_NUMERIC = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)
_LABEL_TYPES = frozenset({"tensor(int64)", "tensor(int32)", "tensor(string)"})
_FLOAT_TYPES = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})
_SHOWN = 8


class Predictor:
    """The exported model: `predict(rows)` returns one record per row.

    `path` is the export folder, or its `model.onnx` (`signature.json` must be next to it);
    by default, the folder this file is in. `threads` sets onnxruntime's intra-op threads.
    """

    def __init__(self, path: str | Path | None = None, *, threads: int | None = None) -> None:
        folder = Path(path) if path is not None else Path(__file__).resolve().parent
        model = folder if folder.is_file() else folder / MODEL_FILE
        with open(model.parent / SIGNATURE_FILE, encoding="utf-8") as handle:
            self.signature: dict[str, Any] = json.load(handle)
        try:
            import onnxruntime
        except ImportError as exc:
            raise ImportError(f"the exported model needs onnxruntime ({exc}): pip install onnxruntime numpy") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.features: list[dict[str, str]] = list(self.signature["features"])
        self.feature_names: list[str] = [f["name"] for f in self.features]
        self.task: str = self.signature["task"]
        self.allow_nan = bool(self.signature.get("allow_nan", False))
        shape = self.signature.get("row_shape")
        self.row_shape: tuple[int, ...] = tuple(shape) if shape else (len(self.features),)
        self._inputs = [(i.name, _numpy_type(i.type), len(i.shape)) for i in self.session.get_inputs()]
        self._label, self._probabilities, self._values = _outputs(self.session.get_outputs())
        self.model_classes: list[Any] | None = self.signature.get("model_classes")
        self.classes: list[Any] | None = self.signature.get("classes")

    # -- input ------------------------------------------------------------------------------------
    def rows(self, rows: Any) -> list[list[Any]]:
        """Validate `rows` (one row, many rows, a 2-D array, dicts by feature name) into flat
        rows of values in feature order; raises `ValueError` saying what is wrong and where."""
        if isinstance(rows, np.ndarray):
            array = rows.reshape(1, *rows.shape) if rows.ndim == len(self.row_shape) else rows
            if array.ndim != len(self.row_shape) + 1 or tuple(array.shape[1:]) != self.row_shape:
                raise ValueError(f"each row must have shape {list(self.row_shape)}, got {list(array.shape[1:])}")
            rows = array.reshape(len(array), -1).tolist()
        elif isinstance(rows, Mapping) or _one_row(rows):
            rows = [rows]
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
            raise ValueError(f"expected a row or a list of rows, got {_kind(rows)}")
        if not rows:
            raise ValueError("there are no rows")
        return [self._row(number, row) for number, row in enumerate(rows)]

    def _row(self, number: int, row: Any) -> list[Any]:
        if isinstance(row, Mapping):
            if set(row) != set(self.feature_names):
                missing = [n for n in self.feature_names if n not in row]
                unknown = [str(n) for n in row if n not in self.feature_names]
                parts = [f"missing feature(s) {_short(missing)}"] if missing else []
                parts += [f"unknown feature(s) {_short(unknown)}"] if unknown else []
                raise ValueError(f"row {number}: {'; '.join(parts)}; expected {_short(self.feature_names)}")
            row = [row[name] for name in self.feature_names]
        elif isinstance(row, np.ndarray):
            row = row.reshape(-1).tolist()
        elif _scalar(row):
            raise ValueError(f"row {number}: expected a list of {len(self.features)} values, got {_kind(row)}")
        else:
            row = _flatten(row)
        if len(row) != len(self.features):
            raise ValueError(
                f"row {number} has {len(row)} values; the model expects {len(self.features)} "
                f"({_short(self.feature_names)})"
            )
        return [self._value(number, feature, value) for feature, value in zip(self.features, row)]

    def _value(self, number: int, feature: dict[str, str], value: Any) -> Any:
        where = f"row {number}, feature {feature['name']!r}"
        if feature.get("dtype", "float64") not in _NUMERIC:
            if isinstance(value, str) or (value is None and self.allow_nan):
                return value
            raise ValueError(f"{where}: expected a string, got {_kind(value)}")
        if value is None and self.allow_nan:
            return math.nan
        if isinstance(value, (bool, np.bool_)) and feature.get("dtype") != "bool":
            raise ValueError(f"{where}: expected a number, got {_kind(value)}")
        if not isinstance(value, (int, float, np.number, bool, np.bool_)):
            raise ValueError(f"{where}: expected a number, got {_kind(value)}")
        number_ = float(value)
        if not self.allow_nan and not math.isfinite(number_):
            raise ValueError(f"{where}: NaN and Infinity are not accepted by this model")
        return number_

    def _feeds(self, rows: list[list[Any]]) -> dict[str, np.ndarray]:
        if len(self._inputs) == 1:
            name, dtype, _ = self._inputs[0]
            array = np.asarray(rows, dtype="float64").reshape(len(rows), *self.row_shape)
            return {name: array.astype(dtype, copy=False)}
        position = {n: i for i, n in enumerate(self.feature_names)}
        feeds = {}
        for number, (name, dtype, rank) in enumerate(self._inputs):
            column = [row[position.get(name, number)] for row in rows]
            array = np.asarray(column, dtype=object if dtype is object else "float64").astype(dtype, copy=False)
            feeds[name] = array.reshape(-1, 1) if rank == 2 else array.reshape(-1)
        return feeds

    # -- prediction -------------------------------------------------------------------------------
    def predict(self, rows: Any) -> list[dict[str, Any]]:
        """One record per row: `prediction`, and for classifiers `probabilities` and `confidence`."""
        feeds = self._feeds(self.rows(rows))
        if self._label is None:
            (values,) = self.session.run([self._values], feeds)
            values = np.asarray(values, dtype="float64")
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            _check_finite(values)
            return [{"prediction": value} for value in _plain(values)]
        wanted = [self._label] + ([self._probabilities] if self._probabilities else [])
        results = self.session.run(wanted, feeds)
        labels = np.asarray(results[0]).reshape(-1)
        if len(results) == 1:
            return [{"prediction": label} for label in _plain(labels)]
        probabilities = self._probability_array(results[1])
        _check_finite(probabilities)
        model_classes = self.model_classes or list(range(probabilities.shape[1]))
        classes = self.classes if self.classes is not None else model_classes
        if list(classes) != list(model_classes):
            labels = _rename(labels, model_classes, classes, probabilities)
        names = [str(c) for c in classes]
        return [
            {"prediction": label, "probabilities": dict(zip(names, row)), "confidence": max(row)}
            for label, row in zip(_plain(labels), probabilities.tolist())
        ]

    def _probability_array(self, raw: Any) -> np.ndarray:
        if isinstance(raw, list):  # a ZipMap: one {class: probability} dict per row
            keys = self.model_classes if self.model_classes is not None else list(raw[0])
            return np.asarray([[row[k] for k in keys] for row in raw], dtype="float64").reshape(len(raw), len(keys))
        return np.asarray(raw, dtype="float64")


def _outputs(outputs: list[Any]) -> tuple[str | None, str | None, str | None]:
    """The label, probabilities and values outputs, chosen by type as servekit does."""
    label = probabilities = values = None
    for out in outputs:
        if out.type in _LABEL_TYPES and label is None:
            label = out.name
        elif out.type.startswith("seq(map(") and probabilities is None:
            probabilities = out.name
        elif out.type in _FLOAT_TYPES and values is None:
            values = out.name
    if label is not None and probabilities is None:
        probabilities = values
    if label is None and values is None:
        raise ValueError("the ONNX model has no label or numeric output")
    return label, probabilities, values


def _numpy_type(onnx_type: str) -> Any:
    name = onnx_type[len("tensor(") : -1] if onnx_type.startswith("tensor(") else onnx_type
    if name == "string":
        return object
    return np.dtype({"float": "float32", "double": "float64"}.get(name, name))


def _rename(labels: np.ndarray, model: list[Any], classes: list[Any], probabilities: np.ndarray) -> np.ndarray:
    """The model's labels under the signature's names for its classes (same positions)."""
    position = {c: i for i, c in enumerate(model)}
    try:
        return np.asarray(classes)[[position[label] for label in labels.tolist()]]
    except KeyError:
        return np.asarray(classes)[probabilities.argmax(axis=1)]


def _check_finite(values: np.ndarray) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise ValueError(f"the model's output for row {row} is not a finite number")


def _plain(values: np.ndarray) -> list[Any]:
    """Plain JSON-able Python values (what servekit's records hold)."""
    return values.tolist()


def _one_row(rows: Any) -> bool:
    """A flat list of values is one row (as servekit reads `[5.1, 3.5, 1.4, 0.2]`)."""
    return isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)) and bool(rows) and _scalar(rows[0])


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, Mapping, np.ndarray))


def _flatten(row: Any) -> list[Any]:
    out: list[Any] = []
    for item in row:
        out.extend([item] if _scalar(item) or isinstance(item, Mapping) else _flatten(item))
    return out


def _short(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown}, … ({len(names)} in all)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return f"boolean {str(bool(value)).lower()}"
    if isinstance(value, str):
        return f"string {value if len(value) <= 20 else value[:20] + '…'!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (Sequence, np.ndarray)):
        return "a list"
    return type(value).__name__


def _read_rows(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, Mapping) and "instances" in data:
        return data["instances"]
    return data


def main(argv: list[str] | None = None) -> int:
    """`python predictor.py rows.json`: print the predictions as JSON; exit 2 on bad input."""
    parser = argparse.ArgumentParser(description="Predict with the exported model.")
    parser.add_argument(
        "rows", help='JSON file of rows (a list of lists or of objects, or {"instances": [...]}); - for stdin'
    )
    parser.add_argument("--model", default=None, help="the export folder (default: the folder of this file)")
    args = parser.parse_args(argv)
    try:
        records = Predictor(args.model).predict(_read_rows(args.rows))
    except (OSError, ValueError, KeyError, ImportError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"predictions": records}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
