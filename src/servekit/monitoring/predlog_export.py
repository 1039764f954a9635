"""Reading the prediction log back: `read_log` (the logged requests), `load_inputs` (drift windows)
and `export` (`servekit logs`, one row per input row, streamed in chunks); `parse_since` for
`--since 24h`. Blocks (`predlog_blocks`) are expanded into requests here, in time order."""

from __future__ import annotations

import heapq
import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import Engine, func, inspect, make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from servekit.errors import InvalidInput, ModelNotFound, NotFound, RegistryError
from servekit.monitoring.arraycodec import json_default
from servekit.monitoring.predlog_blocks import Logged, block_start, decode
from servekit.registry.database import (
    as_utc,
    describe_url,
    make_engine,
    one_line,
    prediction_log_blocks,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMATS", "Logged", "export", "json_default", "load_inputs", "parse_duration", "parse_since", "read_log"]

FORMATS = ("csv", "parquet", "jsonl")
BASE_COLUMNS = ("ts", "request_id", "version", "route", "latency_ms")
PROBABILITY_PREFIX = "probability_"
_EXPORT_CHUNK_ROWS = 10_000
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


# -- reading ------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """`30m`, `1h`, `24h`, `7d`, `2w`, `90s` as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if match is None:
        raise InvalidInput(f"{text!r} is not a duration", hint="use e.g. 30m, 1h, 24h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A duration back from now (`1h`, `7d`) or an ISO date/time (UTC unless it says otherwise)."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is neither a duration nor a date", hint="use e.g. 30m, 1h, 24h, 7d or 2026-01-31T12:00"
        ) from None
    return as_utc(moment).astimezone(UTC)


def read_log(url: str, model: str | None = None, since: datetime | None = None) -> Iterator[Logged]:
    """The logged requests (of `model`, made at or after `since`), oldest first; nothing when there
    is no log yet."""
    with _reading(url) as engine:
        if engine is not None:
            yield from _scan(engine, model, since)


def load_inputs(url: str, model: str, since: datetime | None) -> pd.DataFrame:
    """The logged input rows of `model` since `since` (all if None), oldest first, one column per
    feature; empty when nothing is logged. Versions with other features add columns (NaN elsewhere)."""
    import pandas as pd

    frames: list[pd.DataFrame] = []
    names: list[str] | None = None
    rows: list[Any] = []
    for record in read_log(url, model, since):
        if record.features is not names and rows:
            frames.append(pd.DataFrame(rows, columns=names))
            rows = []
        names = record.features
        rows.extend(_plain(record.inputs))
    if rows:
        frames.append(pd.DataFrame(rows, columns=names))
    if not frames:
        return pd.DataFrame()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def export(url: str, model: str, since: datetime | None, fmt: str, out: Any) -> int:
    """Write the log of `model` as csv, parquet or jsonl to `out` (a path or an open file), one row
    per input row, streamed in chunks; returns how many rows were written."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")
    with _reading(url) as engine:
        if engine is None:
            raise NotFound(
                f"no prediction log at {describe_url(url)}",
                hint="check --home / SERVEKIT_HOME: the server writes the log into its registry database",
            )
        _require_model(engine, model)
        features, classes = _export_names(engine, model, since)
        columns = [*BASE_COLUMNS, *features, "prediction", *(PROBABILITY_PREFIX + c for c in classes)]
        frames = _frames(engine, model, since, columns)
        if fmt == "parquet":
            return _write_parquet(frames, out)
        return _write_text(frames, fmt, out)


@contextmanager
def _reading(url: str) -> Iterator[Engine | None]:
    """An engine for reading the log, or None when there is no log yet (no file, no table)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"{url!r} is not a database URL") from None
    database = parsed.database or ""
    local_file = parsed.get_backend_name() == "sqlite" and database not in {"", ":memory:"}
    if local_file and not database.startswith("file:") and not Path(database).expanduser().is_file():
        yield None  # reading must not create an empty database
        return
    engine = make_engine(url)
    try:
        yield engine if inspect(engine).has_table(prediction_log_blocks.name) else None
    except SQLAlchemyError as exc:
        raise RegistryError(f"cannot read the prediction log at {describe_url(url)}: {one_line(exc)}") from None
    finally:
        engine.dispose()


def _where(query: Any, model: str | None, since: datetime | None) -> Any:
    if model is not None:
        query = query.where(prediction_log_blocks.c.model == model)
    if since is not None:
        query = query.where(prediction_log_blocks.c.last_ts >= as_utc(since).astimezone(UTC))
    return query


def _scan(engine: Engine, model: str | None, since: datetime | None) -> Iterator[Logged]:
    """The matching requests, oldest first, a few blocks fetched at a time.

    Blocks come in order of their oldest request; blocks written by different processes may
    overlap in time, so requests wait in a heap until no later block can hold an older one."""
    table = prediction_log_blocks.c
    query = _where(select(prediction_log_blocks), model, since).order_by(table.first_ts, table.id)
    start = None if since is None else as_utc(since).astimezone(UTC)
    names: dict[str, list[str]] = {}

    def decoded(text: str) -> list[str]:  # one list per distinct JSON, shared by its requests
        found = names.get(text)
        if found is None:
            found = names[text] = orjson.loads(text)
        return found

    waiting: list[tuple[datetime, int, Logged]] = []
    order = itertools.count()
    with engine.connect() as connection:
        for block in connection.execution_options(yield_per=20).execute(query):
            oldest = block_start(block)
            while waiting and waiting[0][0] <= oldest:
                yield heapq.heappop(waiting)[2]
            for record in decode(block, decoded):
                if start is None or record.ts >= start:
                    heapq.heappush(waiting, (record.ts, next(order), record))
    while waiting:
        yield heapq.heappop(waiting)[2]


def _require_model(engine: Engine, model: str) -> None:
    with engine.connect() as connection:
        table = prediction_log_blocks.c
        found = connection.execute(select(table.id).where(table.model == model).limit(1)).first()
        if found is not None:
            return
        known = connection.execute(select(table.model).distinct().limit(20)).scalars().all()
    hint = f"logged models: {', '.join(sorted(known))}" if known else "nothing is logged yet"
    raise ModelNotFound(f"no predictions of model {model!r} are logged", hint=hint)


def _export_names(engine: Engine, model: str, since: datetime | None) -> tuple[list[str], list[str]]:
    """Every feature and class name in the range, in order of first appearance; for an empty range,
    those of the newest block, so that even an empty export has the usual columns."""
    table = prediction_log_blocks.c
    names = (table.features, table.classes)
    query = _where(select(*names, func.min(table.id)), model, since).group_by(*names)
    newest = _where(select(*names, table.id), model, None).order_by(table.id.desc()).limit(1)
    features: dict[str, None] = {}
    classes: dict[str, None] = {}
    with engine.connect() as connection:
        found = sorted(connection.execute(query), key=lambda r: r[2]) or list(connection.execute(newest))
    for feature_names, labels, _ in found:
        features.update(dict.fromkeys(orjson.loads(feature_names)))
        classes.update(dict.fromkeys(orjson.loads(labels) if labels else []))
    return list(features), list(classes)


def _frames(engine: Engine, model: str, since: datetime | None, columns: list[str]) -> Iterator[pd.DataFrame]:
    """DataFrames of about `_EXPORT_CHUNK_ROWS` rows with exactly `columns`; at least one."""
    batch: list[dict[str, Any]] = []
    produced = False
    for record in _scan(engine, model, since):
        base = {"ts": record.ts, "request_id": record.request_id, "version": record.version}
        base.update(route=record.route, latency_ms=record.latency_ms)
        labels = _plain(record.outputs)
        probabilities = [] if record.probabilities is None else _plain(record.probabilities)
        probability_columns = [PROBABILITY_PREFIX + c for c in record.classes]
        for i, values in enumerate(_plain(record.inputs)):
            row = dict(base)
            row.update(zip(record.features, values, strict=False))
            row["prediction"] = labels[i] if i < len(labels) else None
            if i < len(probabilities):
                row.update(zip(probability_columns, probabilities[i], strict=False))
            batch.append(row)
        if len(batch) >= _EXPORT_CHUNK_ROWS:
            yield _frame(batch, columns)
            batch, produced = [], True
    if batch or not produced:
        yield _frame(batch, columns)


# -- export formats -------------------------------------------------------------------------


def _frame(batch: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(batch, columns=columns)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["version"] = frame["version"].astype("Int64")
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    return frame


def _write_text(frames: Iterator[pd.DataFrame], fmt: str, out: Any) -> int:
    count = 0
    with _target(out, "w") as stream:
        for i, frame in enumerate(frames):
            if fmt == "csv":
                frame.to_csv(stream, header=i == 0, index=False)
            else:
                lines = [orjson.dumps(r, option=_NUMPY, default=json_default) for r in frame.to_dict("records")]
                stream.write("".join(line.decode() + "\n" for line in lines))
            count += len(frame)
    return count


def _write_parquet(frames: Iterator[pd.DataFrame], out: Any) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    count = 0
    schema: pa.Schema | None = None
    writer: pq.ParquetWriter | None = None
    with _target(out, "wb") as stream:
        try:
            for frame in frames:
                try:
                    if schema is None:
                        table = pa.Table.from_pandas(frame, preserve_index=False)
                        schema = _concrete(table.schema)
                        table = table.cast(schema)
                        writer = pq.ParquetWriter(stream, schema)
                    else:
                        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    raise InvalidInput(
                        f"the logged values do not fit one Parquet schema: {str(exc).splitlines()[0]}",
                        hint="export as jsonl or csv, or narrow --since to one model version",
                    ) from None
                assert writer is not None
                writer.write_table(table)
                count += len(frame)
        finally:
            if writer is not None:
                writer.close()
    return count


def _concrete(schema: Any) -> Any:
    """Columns with no value in the first chunk get a type later chunks can fill."""
    import pyarrow as pa

    fields = []
    for field in schema:
        if pa.types.is_null(field.type):
            field = field.with_type(pa.string() if field.name in {"request_id", "route"} else pa.float64())
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


@contextmanager
def _target(out: Any, mode: str) -> Iterator[IO[Any]]:
    """An open file object as is; a path through a temporary file renamed once complete."""
    if hasattr(out, "write"):
        yield out
        return
    path = Path(out)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        stream = open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))  # noqa: SIM115
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _plain(values: Any) -> list[Any]:
    """Logged values (an array or a list) as plain Python values."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)
