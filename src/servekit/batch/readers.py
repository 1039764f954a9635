"""Cut the input into pieces of about `chunk_size` rows and read one piece into columns.

A piece is a byte range cut at a line end (CSV, JSON lines) or a run of row groups (Parquet).
Pieces are planned from the files alone, so the same input and chunk size always give the same
pieces: that is what lets an interrupted run resume, and Dask workers read their own pieces.

Reading is pyarrow's multi-threaded parser with fixed column types (features as numbers or
text, kept columns as inferred from the first rows). A piece that does not parse that way (a
word in a number column, a row with too many fields, mixed JSON types) is read again as text,
or row by row, so that only its bad rows are left out. Newlines inside quoted CSV values are
not supported (as with pyarrow's and Dask's block readers).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servekit.batch.chunks import Problem, RawChunk
from servekit.batch.columns import ColumnPlan
from servekit.batch.inputs import HEAD_BYTES, InputFile, file_system
from servekit.errors import InvalidInput
from servekit.signature import Signature

__all__ = ["Piece", "ReadSpec", "plan_pieces", "read_piece", "read_spec"]

_SCAN = 1 << 16


@dataclass(frozen=True)
class Piece:
    """One unit of work: a byte range of a text file, or row groups `start:stop` of a Parquet file."""

    index: int
    file: int
    start: int
    stop: int
    weight: int
    """Its share of the input in bytes, for progress."""


@dataclass(frozen=True)
class ReadSpec:
    """The columns to read and the types to read them as (text formats)."""

    columns: tuple[str, ...]
    types: dict[str, Any] = field(default_factory=dict)
    """Column name -> pyarrow type; features as float64 or string, kept columns as first inferred."""


def read_spec(signature: Signature, plan: ColumnPlan, files: list[InputFile]) -> ReadSpec:
    """Fix the column types of the text formats, so that every piece reads the same way."""
    import pyarrow as pa

    types: dict[str, Any] = {}
    for feature, name in zip(signature.features, plan.features, strict=True):
        types[name] = pa.float64() if feature.numeric else pa.string()
    rest = [c for c in plan.passthrough if c not in types]
    if rest:
        types.update(_inferred_types(next((f for f in files if f.text and f.columns), None), rest))
    return ReadSpec(plan.needed, types)


def _inferred_types(file: InputFile | None, names: list[str]) -> dict[str, Any]:
    """The types pyarrow infers for `names` from the first rows of `file` (string if unsure)."""
    import pyarrow as pa

    found = dict.fromkeys(names, pa.string())
    if file is None:
        return found
    head = _read_range(file, file.data_start, min(file.size, file.data_start + HEAD_BYTES))
    head = head[: head.rfind(b"\n") + 1] or head
    try:
        table = _parse(file, head, ReadSpec(tuple(names)), typed=False)
    except (pa.ArrowInvalid, InvalidInput):
        return found
    for name in names:
        kind = table.schema.field(name).type if name in table.column_names else pa.null()
        if not pa.types.is_null(kind):
            found[name] = kind
    return found


# -- planning -----------------------------------------------------------------------------------
def plan_pieces(files: list[InputFile], chunk_size: int) -> list[Piece]:
    """The pieces of every file, in order, each of about `chunk_size` rows."""
    pieces: list[Piece] = []
    for number, file in enumerate(files):
        spans = _parquet_spans(file, chunk_size) if file.format == "parquet" else _text_spans(file, chunk_size)
        first = len(pieces)
        pieces += [Piece(first + i, number, a, b, w) for i, (a, b, w) in enumerate(spans)]
    return pieces


def _text_spans(file: InputFile, chunk_size: int) -> list[tuple[int, int, int]]:
    if file.size <= file.data_start or not file.columns:
        return []
    fs, path = file_system(file.path)
    spans = []
    with fs.open(path, "rb") as handle:
        handle.seek(file.data_start)
        head = handle.read(HEAD_BYTES)
        lines = head.count(b"\n") or 1
        target = max(1, round(len(head[: head.rfind(b"\n") + 1] or head) / lines * chunk_size))
        start = file.data_start
        while start < file.size:
            stop = _line_end(handle, start + target, file.size)
            spans.append((start, stop, stop - start))
            start = stop
    return spans


def _line_end(handle: Any, offset: int, size: int) -> int:
    """The offset just after the first newline at or after `offset` (or the end of the file)."""
    if offset >= size:
        return size
    handle.seek(offset)
    while block := handle.read(_SCAN):
        found = block.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(block)
    return size


def _parquet_spans(file: InputFile, chunk_size: int) -> list[tuple[int, int, int]]:
    import pyarrow.parquet as pq

    fs, path = file_system(file.path)
    with fs.open(path, "rb") as handle:
        meta = pq.ParquetFile(handle).metadata
    spans = []
    start = rows = weight = 0
    for group in range(meta.num_row_groups):
        rows += meta.row_group(group).num_rows
        weight += meta.row_group(group).total_byte_size
        if rows >= chunk_size or group == meta.num_row_groups - 1:
            if rows:
                spans.append((start, group + 1, max(weight, 1)))
            start, rows, weight = group + 1, 0, 0
    return spans


# -- reading ------------------------------------------------------------------------------------
def read_piece(file: InputFile, piece: Piece, spec: ReadSpec) -> RawChunk:
    """The needed columns of one piece; rows that cannot be parsed become problems."""
    import pyarrow as pa

    if file.format == "parquet":
        return _whole(_read_parquet(file, piece, spec))
    data = _read_range(file, piece.start, piece.stop)
    try:
        return _whole(_parse(file, data, spec, typed=True))
    except pa.ArrowInvalid:
        pass  # a value or a row that does not fit: read again, slowly, to find it
    if file.format == "jsonl":
        return _json_rows(data, spec)
    return _csv_as_text(file, data, spec, piece)


def _whole(table: Any) -> RawChunk:
    return RawChunk({name: table.column(name) for name in table.column_names}, table.num_rows, table.num_rows)


def _read_range(file: InputFile, start: int, stop: int) -> bytes:
    fs, path = file_system(file.path)
    try:
        with fs.open(path, "rb") as handle:
            handle.seek(start)
            return handle.read(stop - start)
    except OSError as exc:
        raise InvalidInput(f"cannot read {file.path}: {exc}") from None


def _parse(file: InputFile, data: bytes, spec: ReadSpec, *, typed: bool) -> Any:
    import pyarrow as pa

    buffer = pa.BufferReader(pa.py_buffer(data))
    types = {c: spec.types[c] for c in spec.columns if c in spec.types} if typed else {}
    if file.format == "jsonl":
        import pyarrow.json as pj

        schema = pa.schema([(c, types[c]) for c in spec.columns if c in types]) if typed else None
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore" if typed else "infer")
        table = pj.read_json(buffer, parse_options=options)
        return _with_columns(table, spec.columns)
    import pyarrow.csv as csv

    # Inferring types, rows with the wrong number of fields are skipped; reading, they fail the piece.
    skip = None if typed else (lambda row: "skip")
    return csv.read_csv(
        buffer,
        read_options=csv.ReadOptions(column_names=list(file.columns), use_threads=True),
        parse_options=csv.ParseOptions(delimiter=file.delimiter, invalid_row_handler=skip),
        convert_options=csv.ConvertOptions(
            column_types=types, include_columns=list(spec.columns), strings_can_be_null=True
        ),
    )


def _with_columns(table: Any, names: tuple[str, ...]) -> Any:
    """`table` with exactly `names`, in order (JSON rows may lack a key: all null)."""
    import pyarrow as pa

    columns = [table.column(n) if n in table.column_names else pa.nulls(table.num_rows) for n in names]
    return pa.table(columns, names=list(names))


def _csv_as_text(file: InputFile, data: bytes, spec: ReadSpec, piece: Piece) -> RawChunk:
    """Every column as text, rows with the wrong number of fields set aside."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as csv

    skipped: list[Problem] = []

    def skip(row: Any) -> str:
        reason = f"the row has {row.actual_columns} fields; the header has {row.expected_columns}"
        skipped.append(Problem(int(row.number) - 1, "", reason))
        return "skip"

    try:
        table = csv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=csv.ReadOptions(column_names=list(file.columns), use_threads=False),
            parse_options=csv.ParseOptions(delimiter=file.delimiter, invalid_row_handler=skip),
            convert_options=csv.ConvertOptions(
                column_types=dict.fromkeys(spec.columns, pa.string()),
                include_columns=list(spec.columns),
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"cannot read {file.name} (bytes {piece.start}-{piece.stop}): {exc}") from None
    columns: dict[str, Any] = {}
    for name in spec.columns:
        column = table.column(name)
        kind = spec.types.get(name, pa.string())
        if not (pa.types.is_string(kind) or pa.types.is_floating(kind)):
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                column = pc.cast(column, kind)  # a kept column keeps its type where it can
        columns[name] = column
    rows = table.num_rows + len(skipped)
    row_ids = None
    if skipped:
        row_ids = np.delete(np.arange(rows), [p.row for p in skipped])
    return RawChunk(columns, table.num_rows, rows, row_ids, skipped)


def _json_rows(data: bytes, spec: ReadSpec) -> RawChunk:
    """JSON lines parsed one by one: values stay Python objects, bad lines become problems."""
    import orjson

    values: list[list[Any]] = []
    positions: list[int] = []
    problems: list[Problem] = []
    row = -1
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        row += 1
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(row, "", f"not valid JSON ({exc})"))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(row, "", "expected a JSON object of named values"))
            continue
        values.append([record.get(name) for name in spec.columns])
        positions.append(row)
    columns = {}
    for index, name in enumerate(spec.columns):
        column = np.empty(len(values), dtype=object)
        column[:] = [v[index] for v in values]
        columns[name] = column
    row_ids = np.asarray(positions, dtype=np.int64) if problems else None
    return RawChunk(columns, len(values), row + 1, row_ids, problems)


def _read_parquet(file: InputFile, piece: Piece, spec: ReadSpec) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = file_system(file.path)
    try:
        with fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).read_row_groups(range(piece.start, piece.stop), columns=list(spec.columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {file.name} (row groups {piece.start}-{piece.stop}): {exc}") from None
