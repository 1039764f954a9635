"""The work folder of an unfinished run, `OUTPUT.partial/`, and its small state file.

It holds one part file per completed piece and `state.json`: the pieces done, the row counts so
far, and the run's fingerprint (input files with their size and modification time, chunk size,
columns, model, output format). `--resume` continues after the last completed piece only when
the fingerprint is unchanged, so the final output equals an uninterrupted run's. The state is
replaced atomically after each part is in place: a killed run loses at most the piece in flight.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servekit.errors import Conflict

__all__ = ["RunState", "WorkDir"]

STATE_VERSION = 1
_FINGERPRINT_NAMES = {
    "files": "the input files",
    "chunk_size": "the chunk size",
    "columns": "the columns read or kept",
    "model": "the model",
    "format": "the output format",
}


@dataclass
class RunState:
    """Where a run is: what it was started on and how far it got."""

    fingerprint: dict[str, Any]
    pieces_done: int = 0
    rows_read: int = 0
    rows_scored: int = 0
    rows_failed: int = 0
    problems: int = 0
    columns: list[str] | None = None
    """The output's column names (for the CSV header), from the first part written."""
    error_parts: list[int] = field(default_factory=list)
    """Pieces that wrote an errors part."""
    version: int = STATE_VERSION


class WorkDir:
    """`OUTPUT.partial/` next to the output: parts, errors parts and `state.json`."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.with_name(output.name + ".partial")
        self.state_file = self.path / "state.json"

    def part(self, index: int, fmt: str) -> Path:
        return self.path / f"{index:06d}.{fmt}"

    def errors_part(self, index: int) -> Path:
        return self.path / f"{index:06d}.errors.csv"

    def prepare(self, fingerprint: dict[str, Any], *, resume: bool, force: bool) -> tuple[RunState, bool]:
        """The state to start from and whether it continues an interrupted run.

        `Conflict` when the output exists (without `force`), when an interrupted run is there
        (without `resume` or `force`), or when it cannot be resumed because its input changed.
        """
        if force:
            self.clear()
        previous = self._read() if self.path.exists() else None
        if self.path.exists() and not resume:
            raise Conflict(
                f"{self.path} holds an interrupted run for {self.output.name}",
                hint="Pass --resume to continue it, or --force to start over",
            )
        if previous is not None:
            changed = next((k for k in _FINGERPRINT_NAMES if previous.fingerprint.get(k) != fingerprint.get(k)), None)
            if changed is not None:
                what = _FINGERPRINT_NAMES[changed]
                raise Conflict(
                    f"cannot resume {self.output.name}: {what} changed since the interrupted run",
                    hint="Pass --force to start over",
                )
            self._drop_after(previous)
            return previous, True
        if self.output.exists() and not force:
            raise Conflict(f"{self.output} already exists", hint="Choose another output, or pass --force to replace it")
        self.clear()
        self.path.mkdir(parents=True)
        state = RunState(fingerprint)
        self.save(state)
        return state, False

    def save(self, state: RunState) -> None:
        """Replace the state file atomically."""
        staging = self.state_file.with_name("state.json.tmp")
        staging.write_text(json.dumps(asdict(state)), encoding="utf-8")
        os.replace(staging, self.state_file)

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _read(self) -> RunState | None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                return None
            return RunState(**data)
        except (OSError, ValueError, TypeError):
            return None  # no state, or a torn one: nothing to resume

    def _drop_after(self, state: RunState) -> None:
        """Remove what a killed run wrote after its last recorded piece."""
        for path in self.path.iterdir():
            stem = path.name.split(".", 1)[0]
            if path.name.endswith(".tmp") or (stem.isdigit() and int(stem) >= state.pieces_done):
                path.unlink(missing_ok=True)
