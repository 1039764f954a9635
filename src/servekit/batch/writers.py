"""Write the scored rows: one part file per piece while the job runs, one output at the end.

Parts are written under a temporary name and renamed, so a part that exists is complete. The
final output is assembled under a temporary name next to the target and renamed over it: the
output appears whole or not at all.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.batch.chunks import Problem
from servekit.batch.inputs import INPUT_FORMATS
from servekit.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ERRORS_HEADER",
    "OUTPUT_FORMATS",
    "merge_errors",
    "merge_parts",
    "output_format",
    "part_schema",
    "part_suffix",
    "unified_schema",
    "write_errors_part",
    "write_part",
]

OUTPUT_FORMATS = INPUT_FORMATS
"""Every table format servekit reads, it also writes (extension → format)."""
ERRORS_HEADER = ("row", "file", "column", "reason")
_COPY = 1 << 20


def output_format(path: Path) -> str:
    """The output format named by the file's extension; `InvalidInput` for an unknown one."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"cannot write {path.name}: unknown output format {path.suffix or '(no extension)'!r}",
            hint=f"Name the output with one of {', '.join(OUTPUT_FORMATS)}",
        )
    return fmt


def part_suffix(fmt: str) -> str:
    """The parts of a Parquet output are Arrow IPC files (no encoding: the merge encodes once);
    text parts are already in the output's format, so the merge only concatenates them."""
    return "arrow" if fmt == "parquet" else fmt


def write_part(table: pa.Table, path: Path, fmt: str) -> None:
    """One piece's rows as a complete file (written aside, then renamed)."""
    staging = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        import pyarrow as pa

        with pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "jsonl":
        import orjson

        with staging.open("wb") as handle:
            handle.writelines(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for row in table.to_pylist())
    else:
        import pyarrow.csv as pcsv

        options = pcsv.WriteOptions(include_header=False, delimiter="\t" if fmt == "tsv" else ",")
        pcsv.write_csv(table, staging, write_options=options)
    os.replace(staging, path)


def merge_parts(parts: Sequence[Path], target: Path, fmt: str, schema: pa.Schema) -> None:
    """Join the parts, in order, into `target` (written aside, then renamed over it)."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            _merge_parquet(parts, staging, schema)
        elif fmt == "jsonl":
            _concatenate(parts, staging, b"")
        else:
            _concatenate(parts, staging, _csv_header(schema, "\t" if fmt == "tsv" else ","))
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def unified_schema(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """One schema for every part: types widened where parts differ, text where they cannot be."""
    import pyarrow as pa

    schemas = list(schemas)
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fields = {}
    for schema in schemas:
        for field in schema:
            known = fields.get(field.name)
            if known is None or pa.types.is_null(known.type):
                fields[field.name] = field
            elif known.type != field.type and not pa.types.is_null(field.type):
                fields[field.name] = pa.field(field.name, pa.string())
    return pa.schema(list(fields.values()))


def part_schema(path: Path) -> pa.Schema:
    """The schema of a Parquet output's part."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).schema


def _merge_parquet(parts: Sequence[Path], staging: Path, schema: pa.Schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(staging, schema) as writer:
        for part in parts:
            with pa.OSFile(str(part)) as source:
                table = pa.ipc.open_file(source).read_all()
            if table.num_rows:
                writer.write_table(_conform(table, schema))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns and types (missing columns are null)."""
    import pyarrow as pa

    if table.schema == schema:
        return table
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            column = column.cast(field.type) if not pa.types.is_string(field.type) else _as_text(column)
        columns.append(column)
    return pa.table(columns, schema=schema)


def _as_text(column: Any) -> Any:
    import pyarrow as pa

    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], type=pa.string())


def _csv_header(schema: pa.Schema, delimiter: str) -> bytes:
    import pyarrow.csv as pcsv

    sink = io.BytesIO()
    pcsv.write_csv(schema.empty_table(), sink, write_options=pcsv.WriteOptions(delimiter=delimiter))
    header = sink.getvalue()
    return header if header else (delimiter.join(schema.names) + "\n").encode() if len(schema) else b""


def _concatenate(parts: Sequence[Path], staging: Path, header: bytes) -> None:
    with staging.open("wb") as out:
        out.write(header)
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(_COPY):
                    out.write(block)


# -- the errors file ----------------------------------------------------------------------------
def write_errors_part(path: Path, problems: Iterable[tuple[int, str, Problem]], id_column: str | None) -> None:
    """Rows `(input row, file, problem)` as CSV without header (written aside, then renamed)."""
    staging = path.with_name(path.name + ".tmp")
    with staging.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for row, file, problem in problems:
            ident = [] if id_column is None else ["" if problem.id is None else problem.id]
            writer.writerow([row, *ident, file, problem.column, problem.reason])
    os.replace(staging, path)


def merge_errors(parts: Sequence[Path], target: Path, id_column: str | None) -> None:
    """The errors file: a header, then every part in order."""
    header = list(ERRORS_HEADER)
    if id_column is not None:
        header.insert(1, id_column)
    text = io.StringIO()
    csv.writer(text).writerow(header)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _concatenate(parts, staging, text.getvalue().encode())
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
