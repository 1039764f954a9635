"""The input of a scoring job: a file, a folder or a glob, resolved into described files.

Paths go through fsspec, so an object-store URL (`s3://bucket/day=1/*.parquet`, with its fsspec
package installed) works like a local path; that is what Dask workers on other machines read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servekit.errors import InvalidInput

__all__ = ["INPUT_FORMATS", "InputFile", "file_system", "resolve_inputs"]

INPUT_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
HEAD_BYTES = 1 << 20
"""How much of a text file is read to find its header and the typical length of a row."""
_GLOB_CHARS = frozenset("*?[")
_SUFFIXES = ", ".join(INPUT_FORMATS)


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is, its format, what identifies its content, and its columns."""

    path: str
    format: str
    """`csv`, `tsv`, `parquet` or `jsonl`."""
    size: int
    modified: str
    """Modification time (or object-store ETag): with `size`, the file's fingerprint for resuming."""
    columns: tuple[str, ...]
    """The header (CSV), the schema (Parquet), or the keys seen in the first rows (JSON lines)."""
    data_start: int = 0
    """CSV: the byte offset of the first row after the header."""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    @property
    def text(self) -> bool:
        return self.format != "parquet"


def file_system(path: str) -> tuple[Any, str]:
    """The fsspec file system of `path` and the path as that file system spells it."""
    import fsspec

    return fsspec.core.url_to_fs(path)


def resolve_inputs(source: str | Path | Sequence[str | Path]) -> list[InputFile]:
    """The files `source` names (a file, a folder of files, a glob, or a list of those), in order."""
    if isinstance(source, list | tuple):
        found = [file for item in source for file in resolve_inputs(item)]
        if not found:
            raise InvalidInput("no input files were given")
        return found
    text = str(Path(source).expanduser()) if isinstance(source, Path) or "://" not in str(source) else str(source)
    fs, path = file_system(text)
    if any(c in _GLOB_CHARS for c in path):
        paths = [p for p in sorted(fs.glob(path)) if _wanted(p) and fs.isfile(p)]
        if not paths:
            raise InvalidInput(f"no {_SUFFIXES} file matches {text}")
    elif fs.isdir(path):
        paths = [p for p in sorted(fs.ls(path, detail=False)) if _wanted(p) and fs.isfile(p)]
        if not paths:
            raise InvalidInput(f"the folder {text} holds no {_SUFFIXES} file")
    elif fs.isfile(path):
        if not _format_of(path):
            raise InvalidInput(
                f"cannot read {Path(path).name}: unknown table format {Path(path).suffix or '(no extension)'!r}",
                hint=f"Use one of {_SUFFIXES}",
            )
        paths = [path]
    else:
        raise InvalidInput(f"{text} does not exist")
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    return [_describe(fs, p, p if local else fs.unstrip_protocol(p)) for p in paths]


def _format_of(path: str) -> str | None:
    return INPUT_FORMATS.get(Path(path).suffix.lower())


def _wanted(path: str) -> bool:
    """Files of a folder: known formats, not hidden (`.x`) nor markers (`_SUCCESS`, `_metadata`)."""
    name = Path(path).name
    return not name.startswith((".", "_")) and _format_of(path) is not None


def _describe(fs: Any, path: str, shown: str) -> InputFile:
    info = fs.info(path)
    size = int(info.get("size") or 0)
    modified = str(info.get("mtime") or info.get("LastModified") or info.get("ETag") or "")
    fmt = _format_of(path) or ""
    try:
        if fmt == "parquet":
            return InputFile(shown, fmt, size, modified, _parquet_columns(fs, path))
        with fs.open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as exc:
        raise InvalidInput(f"cannot read {shown}: {exc}") from None
    if fmt == "jsonl":
        return InputFile(shown, fmt, size, modified, _json_keys(head, shown))
    columns, data_start = _csv_header(head, "\t" if fmt == "tsv" else ",", shown)
    return InputFile(shown, fmt, size, modified, columns, data_start)


def _parquet_columns(fs: Any, path: str) -> tuple[str, ...]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as handle:
            return tuple(pq.ParquetFile(handle).schema_arrow.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {Path(path).name}: it is not a valid Parquet file ({exc})") from None


def _csv_header(head: bytes, delimiter: str, shown: str) -> tuple[tuple[str, ...], int]:
    """The column names of a CSV file and the offset of its first data row."""
    import pyarrow as pa
    import pyarrow.csv as csv

    if not head.strip():
        return (), len(head)
    end = head.find(b"\n")
    if end < 0:
        if len(head) >= HEAD_BYTES:
            raise InvalidInput(f"cannot read {shown}: its first line is longer than {HEAD_BYTES} bytes")
        end = len(head) - 1
    line = head[: end + 1]
    try:
        table = csv.read_csv(pa.py_buffer(line), parse_options=csv.ParseOptions(delimiter=delimiter))
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"cannot read the header of {shown}: {exc}") from None
    names = tuple(table.column_names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"{shown} has duplicate column names: {', '.join(duplicates)}")
    return names, end + 1


def _json_keys(head: bytes, shown: str) -> tuple[str, ...]:
    """The keys of the first rows of a JSON-lines file, in order of appearance."""
    import orjson

    keys: dict[str, None] = {}
    lines = head.split(b"\n")
    if len(head) >= HEAD_BYTES:
        lines = lines[:-1]  # the last line may be cut
    for line in lines:
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a bad row is reported when its chunk is scored
        if isinstance(row, dict):
            keys.update(dict.fromkeys(map(str, row)))
    if not keys and head.strip():
        raise InvalidInput(f"cannot read {shown}: its first lines hold no JSON object")
    return tuple(keys)
