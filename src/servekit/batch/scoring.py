"""Score one chunk: validate its columns, predict on the good rows, build the output rows.

The same function runs in the local engine and on Dask workers, so both give the same rows.
Output columns: the kept input columns, `prediction` (or `prediction_0..k-1` for multi-output
regressors) and, for classifiers, one `probability_<class>` column per class.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.batch.chunks import Problem, RawChunk, ScoredChunk
from servekit.batch.columns import ColumnPlan
from servekit.batch.validation import validate
from servekit.errors import PredictionFailed, ServekitError
from servekit.prediction import Prediction

if TYPE_CHECKING:
    import pyarrow as pa

    from servekit.predictor import Predictor

__all__ = ["MAX_FAILED_ROWS", "output_names", "probability_name", "score_chunk"]

logger = logging.getLogger("servekit.batch")

MAX_FAILED_ROWS = 100
"""Rows of one chunk the model may fail on (each isolated by bisection) before the job stops."""


def probability_name(label: Any) -> str:
    return f"probability_{label}"


def output_names(predictor: Predictor) -> list[str]:
    """The output's own columns for this model (before any multi-output expansion)."""
    names = ["prediction"]
    if predictor.task == "classification" and predictor.classes:
        names += [probability_name(c) for c in predictor.classes]
    return names


def score_chunk(
    predictor: Predictor, plan: ColumnPlan, raw: RawChunk, *, chunk_size: int, fail_fast: bool = False
) -> ScoredChunk:
    """Score a piece's rows `chunk_size` at a time; problems carry the rows' piece positions."""
    import pyarrow as pa

    problems = list(raw.problems)
    tables = []
    for start in range(0, raw.length, chunk_size):
        part = raw.slice(start, min(start + chunk_size, raw.length))
        checked = validate(predictor.signature, list(plan.features), part.columns, part.length)
        problems += [_at(p, part, plan) for p in checked.problems]
        if fail_fast and problems:
            break
        good, prediction = checked.good, None
        if checked.batch is not None:
            prediction, scored, failures = _predict(predictor, checked.batch)
            problems += [_at(Problem(int(good[i]), "", reason), part, plan) for i, reason in failures]
            good = good[scored]
        tables.append(_output(predictor, plan, part, good, prediction))
        if fail_fast and problems:
            break
    problems.sort(key=lambda p: p.row)
    if len(tables) > 1:
        table = pa.concat_tables(tables, promote_options="permissive")
    else:
        table = tables[0] if tables else _nothing(predictor, plan, raw)
    return ScoredChunk(table, raw.rows, problems)


def _at(problem: Problem, part: RawChunk, plan: ColumnPlan) -> Problem:
    """The problem with its row's piece position and id value."""
    ident = None
    if plan.id_column is not None:
        value = part.columns[plan.id_column][problem.row]
        ident = value.as_py() if hasattr(value, "as_py") else value
    return Problem(part.position(problem.row), problem.column, problem.reason, ident)


# -- prediction ---------------------------------------------------------------------------------
def _predict(predictor: Predictor, batch: Any) -> tuple[Prediction | None, np.ndarray, list[tuple[int, str]]]:
    """Predict; if the model fails, isolate the rows it fails on by bisection.

    Returns the prediction for the rows it worked on, their indices into `batch`, and the
    (index, reason) of the others. The runtime is called as `Predictor.predict_batch` calls it,
    without its error log (a traceback): here a failing row is an expected outcome, described
    in the errors file.
    """
    try:
        return predictor.runtime.predict(batch), np.arange(len(batch)), []
    except Exception as exc:
        logger.info("%s: the model failed on a chunk (%s); isolating the rows", predictor.name, _failure(exc))
    failures: list[tuple[int, str]] = []
    parts: list[tuple[Prediction, np.ndarray]] = []
    _bisect(predictor, batch, 0, len(batch), parts, failures)
    if not parts:
        return None, np.arange(0), failures
    return Prediction.concat([p for p, _ in parts]), np.concatenate([i for _, i in parts]), failures


def _bisect(
    predictor: Predictor,
    batch: Any,
    start: int,
    stop: int,
    parts: list[tuple[Prediction, np.ndarray]],
    failures: list[tuple[int, str]],
) -> None:
    rows = batch[start:stop] if isinstance(batch, np.ndarray) else batch.iloc[start:stop].reset_index(drop=True)
    try:
        parts.append((predictor.runtime.predict(rows), np.arange(start, stop)))
        return
    except Exception as exc:
        if stop - start == 1:
            failures.append((start, _failure(exc)))
            if len(failures) > MAX_FAILED_ROWS:
                raise PredictionFailed(
                    f"the model failed on more than {MAX_FAILED_ROWS} rows of one chunk (first: {failures[0][1]})",
                    hint="Check that the input is the kind of data the model was trained on",
                ) from None
            return
    middle = (start + stop) // 2
    _bisect(predictor, batch, start, middle, parts, failures)
    _bisect(predictor, batch, middle, stop, parts, failures)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, ServekitError):
        return exc.message
    text = str(exc).strip().splitlines()
    detail = f": {text[0][:200]}" if text else ""
    return f"the model raised {type(exc).__name__}{detail}"


# -- output -------------------------------------------------------------------------------------
def _output(
    predictor: Predictor, plan: ColumnPlan, part: RawChunk, good: np.ndarray, prediction: Prediction | None
) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for name in plan.passthrough:
        columns[name] = _take(part.columns[name], good)
    if prediction is None:
        columns.update(_empty_prediction(predictor))
    else:
        columns.update(_prediction_columns(prediction))
    return pa.table(columns)


def _nothing(predictor: Predictor, plan: ColumnPlan, raw: RawChunk) -> pa.Table:
    """An output table without rows, for a piece none of whose rows could be read."""
    return _output(predictor, plan, raw.slice(0, 0), np.arange(0), None)


def _take(values: Any, good: np.ndarray) -> Any:
    import pyarrow as pa

    if isinstance(values, np.ndarray):  # Python values of a row-by-row parsed chunk
        chosen = values[good].tolist()
        try:
            return pa.array(chosen)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else str(v) for v in chosen], type=pa.string())
    if len(good) == len(values):
        return values
    return values.take(pa.array(good, type=pa.int64()))


def _prediction_columns(prediction: Prediction) -> dict[str, Any]:
    import pyarrow as pa

    outputs = prediction.outputs
    columns: dict[str, Any] = {}
    if outputs.ndim == 2:
        for index in range(outputs.shape[1]):
            columns[f"prediction_{index}"] = pa.array(outputs[:, index])
    else:
        columns["prediction"] = pa.array(outputs if outputs.dtype.kind != "U" else outputs.astype(object))
    if prediction.probabilities is not None and prediction.classes is not None:
        for index, label in enumerate(prediction.classes):
            columns[probability_name(label)] = pa.array(prediction.probabilities[:, index])
    return columns


def _empty_prediction(predictor: Predictor) -> dict[str, Any]:
    import pyarrow as pa

    if predictor.task == "classification" and predictor.classes:
        labels = np.asarray(predictor.classes)
        kind = pa.string() if labels.dtype.kind in "OUS" else pa.from_numpy_dtype(labels.dtype)
        columns = {"prediction": pa.array([], type=kind)}
        columns.update({probability_name(c): pa.array([], type=pa.float64()) for c in predictor.classes})
        return columns
    return {"prediction": pa.array([], type=pa.float64())}
