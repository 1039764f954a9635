"""`staged_folder`: an output folder is replaced whole, or left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from servekit.staging import staged_folder


def test_a_complete_folder_replaces_the_old_one(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "old.txt").write_text("old")
    with staged_folder(output, mode=0o755) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in output.iterdir()) == ["new.txt"]
    assert output.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing staged or set aside is left


def test_a_failure_leaves_the_old_folder_and_no_staging(tmp_path: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half-way"), staged_folder(output) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("half-way")
    assert [p.name for p in output.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
