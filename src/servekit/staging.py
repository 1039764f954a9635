"""Folders written whole or not at all: `pack`, `build` and `export` fill a hidden staging folder
next to their output and put it in place only once it is complete."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder"]


@contextmanager
def staged_folder(output: Path, *, mode: int | None = None) -> Iterator[Path]:
    """A fresh hidden folder beside `output` (with `mode`, when given) that replaces `output` when
    the block ends; removed instead if the block raises. An existing `output` is moved aside and
    deleted only once the new folder is in place (it is put back if that rename fails)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        if mode is not None:
            staging.chmod(mode)
        yield staging
        _move_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, output: Path) -> None:
    if not output.exists():
        staging.rename(output)
        return
    aside = output.with_name(f".{output.name}.replaced-{uuid.uuid4().hex[:8]}")
    output.rename(aside)
    try:
        staging.rename(output)
    except BaseException:
        aside.rename(output)
        raise
    shutil.rmtree(aside, ignore_errors=True)
