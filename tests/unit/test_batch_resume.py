"""`servekit.batch.resume` and `progress`: the work folder of a run, and how progress is shown."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from servekit.batch.progress import make_progress
from servekit.batch.resume import WorkDir
from servekit.errors import Conflict

PRINT = {"files": [["/in.csv", 10, "1"]], "chunk_size": 5, "columns": [], "model": {"name": "m"}, "format": "csv"}


def test_a_fresh_run_records_its_state(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "out.csv")
    state, resumed = work.prepare(PRINT, resume=False, force=False)
    assert not resumed and state.pieces_done == 0
    assert work.path == tmp_path / "out.csv.partial" and work.state_file.is_file()


def test_resume_continues_and_drops_what_came_after_the_last_recorded_piece(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "out.csv")
    state, _ = work.prepare(PRINT, resume=False, force=False)
    for index in range(3):
        work.part(index, "csv").write_text("x")
    (work.path / "000003.csv.tmp").write_text("torn")
    state.pieces_done, state.rows_read = 2, 10
    work.save(state)
    again, resumed = WorkDir(tmp_path / "out.csv").prepare(PRINT, resume=True, force=False)
    assert resumed and again.pieces_done == 2 and again.rows_read == 10
    assert sorted(p.name for p in work.path.iterdir()) == ["000000.csv", "000001.csv", "state.json"]


def test_conflicts_say_what_to_do(tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    WorkDir(output).prepare(PRINT, resume=False, force=False)
    with pytest.raises(Conflict, match="holds an interrupted run") as info:
        WorkDir(output).prepare(PRINT, resume=False, force=False)
    assert "--resume" in info.value.detail
    with pytest.raises(Conflict, match=r"cannot resume out\.csv: the chunk size changed"):
        WorkDir(output).prepare({**PRINT, "chunk_size": 6}, resume=True, force=False)
    _, resumed = WorkDir(output).prepare(PRINT, resume=False, force=True)
    assert not resumed
    WorkDir(output).clear()
    output.write_text("old")
    with pytest.raises(Conflict, match="already exists"):
        WorkDir(output).prepare(PRINT, resume=True, force=False)  # nothing to resume: a fresh run


def test_plain_progress_lines_when_not_on_a_terminal() -> None:
    sink = io.StringIO()
    progress = make_progress(True, console=Console(file=sink, force_terminal=False, width=200), interval=0)
    progress.start(1000, 0, 0)
    progress.advance(250, 5000)
    progress.advance(250, 5000)
    progress.finish()
    lines = sink.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("scoring: 10,000 rows, 50%, ")
    assert "rows/s, ETA 0:00:0" in lines[1]


def test_a_bar_on_a_terminal_and_nothing_when_disabled() -> None:
    sink = io.StringIO()
    progress = make_progress(True, console=Console(file=sink, force_terminal=True, width=120))
    progress.start(100, 0, 0)
    progress.advance(100, 1234)
    progress.finish()
    assert "1,234 rows" in sink.getvalue() and "100%" in sink.getvalue()
    quiet = make_progress(False)
    quiet.start(1, 0, 0)
    quiet.advance(1, 1)
    quiet.finish()


def test_the_command_line_defaults_to_the_librarys_chunk_size() -> None:
    from servekit.batch import DEFAULT_CHUNK_SIZE
    from servekit.cli import score

    assert score.DEFAULT_CHUNK_SIZE == DEFAULT_CHUNK_SIZE
