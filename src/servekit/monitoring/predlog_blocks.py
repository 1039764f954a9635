"""The prediction log's unit of storage: a block of requests of one model version in one row.

A database row per request costs SQLite 6-10 µs of CPU (measured with the log's own columns and
index), on the core that also answers requests: at 10,000 requests/s that alone is more than the
5 % of throughput logging may cost. The writer therefore groups what it drained by model, version,
feature and class names and input layout, and stores each group as one row of
`prediction_log_blocks`; its `data` blob holds the requests column by column (`arraycodec`):

    ts (float64 seconds), latency_ms (float64), input rows per request (int64), output rows per
    request (int64), request ids (JSON list), route names (JSON list), route of each request (int32
    index into the names), every input row as one 2-D array, every output, every probability row
    (or null)

The writer receives `Segment`s: one request, or a micro-batch of requests the runner answered with
one predict call, whose inputs are already stacked (then logging costs no per-request array work).
`BlockEncoder.encode` builds blocks from them (writer thread); `decode` expands one back into
`Logged` requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
import orjson

from servekit.errors import RegistryError
from servekit.monitoring import arraycodec
from servekit.monitoring.arraycodec import json_default

__all__ = [
    "LAYOUT",
    "MAX_BLOCK_ROWS",
    "BlockEncoder",
    "Logged",
    "Segment",
    "block_start",
    "decode",
    "input_rows",
    "single",
]

LAYOUT = 1
"""The format of `data` this version writes and reads."""
MAX_BLOCK_ROWS = 50_000
"""Input rows per block at most (many-row requests): a block stays a few megabytes."""
BLOCK_SPAN_S = 60
"""A block holds requests of one clock minute (UTC), so retention deletes to the minute."""


class Logged(NamedTuple):
    """One logged request, as read back."""

    ts: datetime
    request_id: str
    model: str
    version: int | None
    route: str
    latency_ms: float
    features: list[str]
    classes: list[str]
    inputs: Any
    """The input rows: a 2-D array (numeric) or a list of rows."""
    outputs: Any
    """A label or value per row: an array, or a list."""
    probabilities: Any
    """A probability row per input row (columns in the order of `classes`), or `None`."""

    @property
    def rows(self) -> int:
        return len(self.inputs)


class Segment(NamedTuple):
    """Requests of one model version to log: one request, or a micro-batch the runner answered with
    one predict call (then its inputs are already stacked and its outputs one `Prediction`)."""

    ts: Sequence[float]
    """When each request was answered (seconds since the epoch)."""
    model: str
    version: int | None
    routes: Sequence[str]
    request_ids: Sequence[str]
    latency_ms: Sequence[float]
    feature_names: Sequence[str] | None
    inputs: Any
    """Every request's input rows, in order: a 2-D array or a DataFrame."""
    outputs: Any
    """Their `Prediction`, rows in the same order."""
    rows: Sequence[int]
    """Input rows of each request."""
    output_rows: Sequence[int]
    """Output rows of each request."""


def single(
    ts: float,
    model: str,
    version: int | None,
    route: str,
    request_id: str,
    latency_ms: float,
    feature_names: Sequence[str] | None,
    inputs: Any,
    outputs: Any,
) -> Segment:
    """The segment of one request."""
    return Segment(
        (ts,),
        model,
        version,
        (route,),
        (request_id,),
        (latency_ms,),
        feature_names,
        inputs,
        outputs,
        (input_rows(inputs),),
        (_output_rows(outputs),),
    )


def input_rows(inputs: Any) -> int:
    """Input rows of a request's inputs (a 2-D array or a DataFrame; one row for a 1-D array)."""
    shape = getattr(inputs, "shape", None)
    return int(shape[0]) if shape and len(shape) > 1 else 1


def _output_rows(outputs: Any) -> int:
    """Rows of a `Prediction` (0 for anything else: the encoder then reports the request)."""
    try:
        return len(outputs.outputs)
    except (AttributeError, TypeError):
        return 0


class BlockEncoder:
    """Turns queued segments into block rows."""

    def __init__(self) -> None:
        self._names: dict[int, tuple[Any, str]] = {}

    def encode(
        self, segments: Sequence[Segment]
    ) -> tuple[list[tuple[dict[str, Any], int]], list[tuple[Segment, Exception]]]:
        """(block rows with how many requests each holds, segments that could not be encoded with
        why). A group whose arrays do not stack is split by layout, and a group that still fails is
        encoded segment by segment, so one odd request costs only its own segment."""
        blocks: list[tuple[dict[str, Any], int]] = []
        failed: list[tuple[Segment, Exception]] = []
        columns = _one_group(segments)
        if columns is not None:  # the usual case: one block, its columns already transposed
            try:
                blocks.append(self._block(segments, columns))
                return blocks, failed
            except Exception:
                pass
        try:
            groups = _groups(segments)
        except Exception:  # something odd in a segment: each one on its own
            groups = [[segment] for segment in segments]
        for group in groups:
            self._encode_group(group, blocks, failed)
        return blocks, failed

    def _encode_group(
        self, group: list[Segment], blocks: list[tuple[dict[str, Any], int]], failed: list[tuple[Segment, Exception]]
    ) -> None:
        try:
            blocks.append(self._block(group))
            return
        except _Mixed:
            try:
                parts = _by_layout(group)
            except Exception:
                parts = [[segment] for segment in group]
        except Exception:
            parts = [[segment] for segment in group]
        for part in parts:
            if len(part) > 1:
                try:
                    blocks.append(self._block(part))
                    continue
                except Exception:
                    pass
            for segment in part:
                try:
                    blocks.append(self._block([segment]))
                except Exception as exc:
                    failed.append((segment, exc))

    def _block(
        self, group: Sequence[Segment], columns: list[tuple[Any, ...]] | None = None
    ) -> tuple[dict[str, Any], int]:
        """One block row, and how many requests it holds."""
        first = group[0]
        ts_, _, _, routes_, request_ids_, latency_, _, inputs_, predictions, rows_, output_rows_ = columns or list(
            zip(*group, strict=True)
        )
        ts = _flat(ts_, np.float64)
        count = len(ts)
        ndarray = np.ndarray
        matrices = [x if type(x) is ndarray and x.ndim == 2 else _matrix(x) for x in inputs_]
        inputs = _stack(matrices)
        outputs = _stack(list(map(_OUTPUTS, predictions)))
        probabilities = _stack(list(map(_PROBABILITIES, predictions)))
        rows = _flat(rows_, np.int64)
        output_rows = _flat(output_rows_, np.int64)
        if int(rows.sum()) != len(inputs) or int(output_rows.sum()) != len(outputs) or len(rows) != count:
            raise ValueError("a segment's row counts do not match its arrays")
        all_routes = routes_[0] if len(routes_) == 1 else list(chain.from_iterable(routes_))
        routes = list(dict.fromkeys(all_routes))
        if len(routes) == 1:
            route_of = np.zeros(count, np.int32)
        else:
            index = {route: i for i, route in enumerate(routes)}
            route_of = np.fromiter(map(index.__getitem__, all_routes), np.int32, count)
        data = arraycodec.encode(
            ts,
            _flat(latency_, np.float64),
            rows,
            output_rows,
            list(chain.from_iterable(request_ids_)),
            route_of,
            [str(route) for route in routes],
            inputs,
            outputs,
            probabilities,
            default=json_default,
        )
        classes = first.outputs.classes
        row = {
            "model": str(first.model),
            "version": None if first.version is None else int(first.version),
            "first_ts": datetime.fromtimestamp(float(ts.min()), UTC),
            "last_ts": datetime.fromtimestamp(float(ts.max()), UTC),
            "records": count,
            "rows": len(inputs),
            "features": self._features(first.feature_names, first.inputs, inputs.shape[1]),
            "classes": None
            if probabilities is None or classes is None
            else self._json_once(classes, lambda: [str(c) for c in np.asarray(classes).tolist()]),
            "layout": LAYOUT,
            "data": data,
        }
        return row, count

    def _features(self, names: Sequence[str] | None, sample: Any, width: int) -> str:
        """The JSON of the column names: the model's when they fit the rows, else the frame's
        columns, else x0, x1, ..."""
        if names is not None and len(names) == width:
            return self._json_once(names, lambda: [str(n) for n in names])
        columns = getattr(sample, "columns", None)
        if columns is not None and len(columns) == width:
            return orjson.dumps([str(c) for c in columns]).decode()
        return orjson.dumps([f"x{i}" for i in range(width)]).decode()

    def _json_once(self, key_object: Any, make: Callable[[], Any]) -> str:
        """JSON made once per names object (the server passes the same one every time)."""
        found = self._names.get(id(key_object))
        if found is not None and found[0] is key_object:
            return found[1]
        if len(self._names) > 1024:
            self._names.clear()
        text = orjson.dumps(make()).decode()
        self._names[id(key_object)] = (key_object, text)
        return text


class _Mixed(Exception):
    """The arrays of a group do not share one dtype and shape: split it by layout."""


_OUTPUTS = attrgetter("outputs")
_PROBABILITIES = attrgetter("probabilities")
_DTYPE = attrgetter("dtype")
_CLASSES = attrgetter("classes")


def _flat(parts: Sequence[Sequence[Any]], dtype: Any) -> np.ndarray:
    """The values of every segment's sequence, as one array."""
    if len(parts) == 1:
        return np.asarray(parts[0], dtype=dtype)
    return np.fromiter(chain.from_iterable(parts), dtype)


def _stack(arrays: list[Any]) -> Any:
    """One array of the arrays' rows; `_Mixed` unless they share their dtype and trailing shape."""
    if len(arrays) == 1:
        return arrays[0]
    if arrays[0] is None:  # no probabilities: none may have any
        if any(array is not None for array in arrays):
            raise _Mixed
        return None
    try:
        dtypes = set(map(_DTYPE, arrays))
    except AttributeError:  # some have probabilities, some not
        raise _Mixed from None
    if len(dtypes) != 1:
        raise _Mixed
    try:
        return np.concatenate(arrays)
    except ValueError:  # other trailing shapes
        raise _Mixed from None


def _groups(segments: Sequence[Segment]) -> list[list[Segment]]:
    """Segments that may share a block: same model, version and names objects, same clock minute,
    at most `MAX_BLOCK_ROWS` input rows; in their order. (Array layouts are checked when stacking.)"""
    current: dict[tuple[Any, ...], list[Segment]] = {}
    sizes: dict[tuple[Any, ...], int] = {}
    groups: list[list[Segment]] = []  # in order of their first segment
    for segment in segments:
        key = (
            segment.model,
            segment.version,
            id(segment.feature_names),
            id(segment.outputs.classes),
            segment.ts[0] // BLOCK_SPAN_S,
        )
        rows = sum(segment.rows)
        group = current.get(key)
        if group is None or sizes[key] + rows > MAX_BLOCK_ROWS:
            group = current[key] = []
            sizes[key] = 0
            groups.append(group)
        group.append(segment)
        sizes[key] += rows
    return groups


def _one_group(segments: Sequence[Segment]) -> list[tuple[Any, ...]] | None:
    """The segments' fields as columns when they all fit one block (one model version, the same
    names objects, one clock minute, at most `MAX_BLOCK_ROWS` rows), else `None`. No Python loop."""
    try:
        columns = list(zip(*segments, strict=True))
        ts, models, versions, _, _, _, names, _, predictions, rows, _ = columns
        fits = (
            min(map(min, ts)) // BLOCK_SPAN_S == max(map(max, ts)) // BLOCK_SPAN_S
            and len(set(models)) == 1
            and len(set(versions)) == 1
            and len(set(map(id, names))) == 1
            and len(set(map(id, map(_CLASSES, predictions)))) == 1
            and sum(map(sum, rows)) <= MAX_BLOCK_ROWS
        )
    except Exception:  # odd segments: grouped one by one
        return None
    return columns if fits else None


def _by_layout(group: list[Segment]) -> list[list[Segment]]:
    """A group split into parts whose arrays stack."""
    parts: dict[tuple[Any, ...], list[Segment]] = {}
    for segment in group:
        prediction = segment.outputs
        probabilities = prediction.probabilities
        key = (
            _layout(_matrix(segment.inputs)),
            _layout(prediction.outputs),
            None if probabilities is None else _layout(probabilities),
        )
        parts.setdefault(key, []).append(segment)
    return list(parts.values())


def _layout(array: np.ndarray) -> tuple[Any, ...]:
    return (array.dtype.str, array.shape[1:])


def _matrix(inputs: Any) -> np.ndarray:
    """A request's inputs as a 2-D array: one row per input row."""
    values = inputs if isinstance(inputs, np.ndarray) else inputs.to_numpy()
    if values.ndim == 2:
        return values
    return np.atleast_2d(values) if values.ndim < 2 else values.reshape(len(values), -1)


def decode(row: Any, names: Callable[[str], list[str]] = lambda text: orjson.loads(text)) -> Iterator[Logged]:
    """The requests of one block row (with `model`, `version`, `features`, `classes`, `layout`,
    `data`); `names` decodes a JSON list of names (pass a caching one when reading many blocks)."""
    if row.layout != LAYOUT:
        raise RegistryError(
            f"prediction-log block {getattr(row, 'id', '?')} is in layout {row.layout}; "
            f"this servekit reads layout {LAYOUT}",
            hint="read this log with the servekit version that wrote it",
        )
    ts, latency, rows, output_rows, request_ids, route_of, routes, inputs, outputs, probabilities = arraycodec.decode(
        row.data
    )
    features = names(row.features)
    classes = names(row.classes) if row.classes else []
    input_at = np.concatenate(([0], np.cumsum(rows))).tolist()
    output_at = np.concatenate(([0], np.cumsum(output_rows))).tolist()
    for i, (moment, request_id, route, took) in enumerate(
        zip(ts.tolist(), request_ids, route_of.tolist(), latency.tolist(), strict=True)
    ):
        start, stop = output_at[i], output_at[i + 1]
        yield Logged(
            datetime.fromtimestamp(moment, UTC),
            request_id,
            row.model,
            row.version,
            routes[route],
            took,
            features,
            classes,
            inputs[input_at[i] : input_at[i + 1]],
            outputs[start:stop],
            None if probabilities is None else probabilities[start:stop],
        )


def block_start(row: Any) -> datetime:
    """When a block row's oldest request was made, UTC."""
    from servekit.registry.database import as_utc

    return as_utc(row.first_ts)
