"""Rows to verify a variant on: the user's sample, else rows synthesized from the manifest's
reference profile (quantile bins for numbers, frequencies for categories) with a fixed seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.errors import InvalidInput, MissingInformation
from servekit.signature import Batch, Signature

if TYPE_CHECKING:
    import pandas as pd

    from servekit.bundle import Bundle

__all__ = ["SEED", "rows_from_profile", "rows_from_sample", "verification_rows"]

SEED = 0
Sample = Any  # a path to a table, a pandas DataFrame or a numpy array


def verification_rows(bundle: Bundle, sample: Sample | None, rows: int) -> tuple[Batch, str]:
    """A batch of at most `rows` rows and where it came from (`sample` or `profile`)."""
    signature = bundle.signature
    if sample is not None:
        return rows_from_sample(sample, signature, rows), "sample"
    if bundle.manifest.profile:
        return rows_from_profile(bundle.manifest.profile, signature, rows), "profile"
    raise MissingInformation(
        f"no rows to verify an ONNX variant of {bundle.manifest.name} on: no sample was given and "
        "the bundle has no reference profile",
        hint="Pass --sample FILE (a CSV, Parquet or JSONL table of rows the model takes)",
    )


def rows_from_sample(sample: Sample, signature: Signature, rows: int) -> Batch:
    """The sample's rows (a fixed-seed subset when it has more than `rows`) as a batch."""
    if isinstance(sample, str | Path):
        from servekit.profile import read_table

        sample = read_table(Path(sample))
    try:
        if isinstance(sample, np.ndarray):
            array = sample if len(sample) <= rows else sample[_subset(len(sample), rows)]
            return signature.batch_from_array(_tensor_rows(np.asarray(array), signature))
        frame = _feature_columns(sample, signature)
        if len(frame) > rows:
            frame = frame.iloc[_subset(len(frame), rows)]
        if signature.row_shape is not None:
            return signature.batch_from_array(_tensor_rows(frame.to_numpy(dtype="float64"), signature))
        return signature.batch_from_frame(frame)
    except InvalidInput as exc:
        raise InvalidInput(f"the sample does not fit the model: {exc.message}", hint=exc.hint) from None


def rows_from_profile(profile: dict[str, Any], signature: Signature, rows: int) -> Batch:
    """`rows` rows drawn from each feature's profile, independently, with a fixed seed."""
    rng = np.random.default_rng(SEED)
    known = profile.get("features") or {}
    columns: dict[str, Any] = {}
    for feature in signature.features:
        entry = known.get(feature.name)
        if not entry:
            raise MissingInformation(
                f"the reference profile has no entry for feature {feature.name!r}",
                hint="Pass --sample FILE to verify on real rows",
            )
        if feature.numeric:
            values = _numeric(entry, rows, rng, feature.name, signature.allow_nan)
            if feature.dtype.startswith(("int", "uint")) or feature.dtype == "bool":
                values = np.round(values)
            columns[feature.name] = values
        else:
            columns[feature.name] = _categorical(entry, rows, rng, feature.name)
    if signature.input_kind == "frame":
        return signature.batch_from_columns({name: list(values) for name, values in columns.items()})
    array = np.column_stack([columns[name] for name in signature.names]).astype("float64")
    return signature.batch_from_array(array.reshape(rows, *signature.expected_row_shape))


def _numeric(entry: dict[str, Any], rows: int, rng: np.random.Generator, name: str, allow_nan: bool) -> np.ndarray:
    edges = np.asarray(entry.get("bin_edges") or [], dtype="float64")
    counts = np.asarray(entry.get("bin_counts") or [], dtype="float64")
    if edges.size >= 2 and counts.size == edges.size - 1 and counts.sum() > 0:
        bins = rng.choice(counts.size, size=rows, p=counts / counts.sum())
        return rng.uniform(edges[bins], edges[bins + 1])
    if "min" in entry and "max" in entry:
        return rng.uniform(float(entry["min"]), float(entry["max"]), size=rows)
    if allow_nan:
        return np.full(rows, np.nan)
    raise MissingInformation(
        f"the reference profile of feature {name!r} has no values to draw from",
        hint="Pass --sample FILE to verify on real rows",
    )


def _categorical(entry: dict[str, Any], rows: int, rng: np.random.Generator, name: str) -> list[str]:
    frequencies = entry.get("frequencies") or {}
    if not frequencies:
        raise MissingInformation(
            f"the reference profile of feature {name!r} lists no categories",
            hint="Pass --sample FILE to verify on real rows",
        )
    labels = list(frequencies)
    weights = np.asarray([frequencies[k] for k in labels], dtype="float64")
    return [labels[i] for i in rng.choice(len(labels), size=rows, p=weights / weights.sum())]


def _feature_columns(frame: pd.DataFrame, signature: Signature) -> pd.DataFrame:
    frame = frame.rename(columns=str)
    if set(signature.names) <= set(frame.columns):
        return frame[signature.names]
    if len(frame.columns) == signature.n_features and not signature.named:
        return frame.set_axis(signature.names, axis=1)
    missing = [n for n in signature.names if n not in frame.columns]
    raise InvalidInput(f"the sample lacks the feature column(s) {', '.join(missing[:8])}")


def _tensor_rows(array: np.ndarray, signature: Signature) -> np.ndarray:
    """Flat rows of a tensor model's sample reshaped to its row shape."""
    shape = signature.expected_row_shape
    if array.ndim == 2 and len(shape) > 1 and array.shape[1] == signature.n_features:
        return array.reshape(len(array), *shape)
    return array


def _subset(total: int, rows: int) -> np.ndarray:
    return np.sort(np.random.default_rng(SEED).choice(total, size=rows, replace=False))
