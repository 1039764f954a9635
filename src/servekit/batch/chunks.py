"""What flows through a scoring job: a chunk of input rows, and the scored result of one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Problem", "RawChunk", "ScoredChunk"]


@dataclass(frozen=True)
class Problem:
    """Why one row of a chunk was not scored."""

    row: int
    """Position of the row in its chunk (every row of the chunk counts, bad ones included)."""
    column: str
    """The input column at fault, or `""` when the whole row is (unparseable, model failure)."""
    reason: str
    id: Any = None
    """The row's id column value, when the input has one and the row could be read."""


@dataclass
class RawChunk:
    """The columns a job needs, read from one piece of the input.

    A column is a pyarrow (Chunked)Array, or a numpy object array of Python values when the
    piece had to be parsed row by row (JSON lines with mixed types).
    """

    columns: dict[str, Any]
    length: int
    """Rows in `columns`."""
    rows: int
    """Rows of the piece, including those that could not be parsed into `columns`."""
    row_ids: np.ndarray | None = None
    """Position in the piece of each row of `columns`; `None` when every row parsed."""
    problems: list[Problem] = field(default_factory=list)
    """Rows that could not be parsed (wrong number of fields, invalid JSON)."""

    def slice(self, start: int, stop: int) -> RawChunk:
        """Rows `start:stop` of `columns` (positions stay those of the piece)."""
        columns = {name: values[start:stop] for name, values in self.columns.items()}
        ids = self.row_ids[start:stop] if self.row_ids is not None else np.arange(start, stop)
        return RawChunk(columns, stop - start, self.rows, ids)

    def position(self, index: int) -> int:
        """The piece position of row `index` of `columns`."""
        return int(self.row_ids[index]) if self.row_ids is not None else index


@dataclass
class ScoredChunk:
    """The output rows of one piece and the problems of the rows left out."""

    table: pa.Table
    rows: int
    """Input rows the piece held, scored or not."""
    problems: list[Problem]

    @property
    def bad_rows(self) -> int:
        return len({p.row for p in self.problems})
