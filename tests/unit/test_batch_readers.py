"""`servekit.batch.inputs` and `readers`: files resolved, cut into pieces, read into columns."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from servekit.batch.columns import ColumnPlan
from servekit.batch.inputs import resolve_inputs
from servekit.batch.readers import ReadSpec, plan_pieces, read_piece, read_spec
from servekit.errors import InvalidInput
from servekit.signature import Feature, Signature

SIGNATURE = Signature((Feature("a"), Feature("b")))
PLAN = ColumnPlan(("a", "b"), ("id",), "id")


def write_csv(path: Path, rows: int, extra: str = "") -> Path:
    lines = ["id,a,b,note"] + [f"{i},{i * 0.5},{i % 7},n{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def read_all(path: Path, chunk_size: int) -> tuple[list, list]:
    files = resolve_inputs(path)
    spec = read_spec(SIGNATURE, PLAN, files)
    pieces = plan_pieces(files, chunk_size)
    return pieces, [read_piece(files[p.file], p, spec) for p in pieces]


def test_pieces_cover_every_row_once_at_line_ends(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", 1000)
    pieces, chunks = read_all(source, 100)
    assert 8 <= len(pieces) <= 12
    data = source.read_bytes()
    assert pieces[0].start == data.index(b"\n") + 1 and pieces[-1].stop == len(data)
    assert all(a.stop == b.start for a, b in itertools.pairwise(pieces))
    assert all(data[p.stop - 1 : p.stop] == b"\n" for p in pieces)
    ids = np.concatenate([c.columns["id"].to_numpy() for c in chunks])
    assert ids.tolist() == list(range(1000))
    assert set(chunks[0].columns) == {"a", "b", "id"}  # `note` is not read
    assert chunks[0].columns["a"].type == pa.float64() and chunks[0].columns["id"].type == pa.int64()
    assert plan_pieces(resolve_inputs(source), 100) == pieces  # the same input always gives the same pieces


def test_a_piece_with_a_bad_value_is_read_as_text(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", 5, extra="5,oops,1,x\n6,1.5,2,y\n")
    (_,), (chunk,) = read_all(source, 1000)
    assert chunk.length == chunk.rows == 7 and chunk.row_ids is None
    assert chunk.columns["a"].type == pa.string() and chunk.columns["a"][5].as_py() == "oops"
    assert chunk.columns["id"].type == pa.int64()  # kept columns keep their type


def test_rows_with_the_wrong_number_of_fields_become_problems(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", 3, extra="3,1.0\n\n4,1.0,2,z\n5,1,2,3,4\n")
    (_,), (chunk,) = read_all(source, 1000)
    assert chunk.rows == 6 and chunk.length == 4
    assert [(p.row, p.reason) for p in chunk.problems] == [
        (3, "the row has 2 fields; the header has 4"),
        (5, "the row has 5 fields; the header has 4"),
    ]
    assert chunk.row_ids.tolist() == [0, 1, 2, 4]
    assert chunk.columns["id"].to_pylist() == [0, 1, 2, 4]


def test_json_lines_typed_or_row_by_row(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": 1, "a": 1, "b": 2.5}\n\n{"id": 2, "a": 3.5, "b": 1, "other": [1]}\n')
    (_,), (chunk,) = read_all(good, 100)
    assert chunk.columns["a"].type == pa.float64() and chunk.columns["a"].to_pylist() == [1.0, 3.5]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"id": 1, "a": 1, "b": 2}\nnot json\n[1, 2]\n{"id": 4, "a": "x", "b": true}\n')
    (_,), (chunk,) = read_all(mixed, 100)
    assert chunk.rows == 4 and chunk.row_ids.tolist() == [0, 3]
    assert [(p.row, p.reason.split(" (")[0]) for p in chunk.problems] == [
        (1, "not valid JSON"),
        (2, "expected a JSON object of named values"),
    ]
    assert chunk.columns["a"].tolist() == [1, "x"] and chunk.columns["b"].tolist() == [2, True]


def test_parquet_pieces_are_runs_of_row_groups(tmp_path: Path) -> None:
    table = pa.table({"id": list(range(100)), "a": np.arange(100.0), "b": np.ones(100)})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=10)
    pieces, chunks = read_all(tmp_path / "in.parquet", 25)
    assert [(p.start, p.stop) for p in pieces] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert sum(c.rows for c in chunks) == 100
    assert chunks[1].columns["id"].to_pylist()[0] == 30


def test_folders_and_globs_resolve_in_order(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", ".hidden.csv", "_SUCCESS", "notes.txt"):
        write_csv(tmp_path / name, 2)
    assert [f.name for f in resolve_inputs(tmp_path)] == ["a.csv", "b.csv"]
    assert [f.name for f in resolve_inputs(str(tmp_path / "*.csv"))] == ["a.csv", "b.csv"]
    described = resolve_inputs(tmp_path / "a.csv")[0]
    assert described.columns == ("id", "a", "b", "note") and described.format == "csv"
    assert described.data_start == len("id,a,b,note\n")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.csv", "does not exist"),
        ("model.xlsx", "unknown table format '.xlsx'"),
        ("*.parquet", "no .csv, .tsv, .parquet, .pq, .jsonl, .ndjson file matches"),
    ],
)
def test_inputs_that_cannot_be_read_say_why(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "model.xlsx").write_bytes(b"PK")
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.").replace("*", r"\*")):
        resolve_inputs(str(tmp_path / name))


def test_kept_columns_take_the_type_inferred_from_the_first_rows(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("code,a,b\n007,1,2\n042,3,4\n")
    files = resolve_inputs(source)
    spec = read_spec(SIGNATURE, ColumnPlan(("a", "b"), ("code",)), files)
    assert spec == ReadSpec(("a", "b", "code"), {"a": pa.float64(), "b": pa.float64(), "code": pa.int64()})
