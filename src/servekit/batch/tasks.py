"""`ChunkTask`: everything but the model needed to score one piece, small enough to ship."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from servekit.batch.chunks import RawChunk, ScoredChunk
from servekit.batch.columns import ColumnPlan
from servekit.batch.inputs import InputFile
from servekit.batch.readers import Piece, ReadSpec, read_piece
from servekit.batch.scoring import score_chunk

if TYPE_CHECKING:
    from servekit.predictor import Predictor

__all__ = ["ChunkTask"]


@dataclass(frozen=True)
class ChunkTask:
    """How to read and score any piece of one job (the same in every engine)."""

    files: tuple[InputFile, ...]
    spec: ReadSpec
    plan: ColumnPlan
    chunk_size: int
    fail_fast: bool = False

    def read(self, piece: Piece) -> RawChunk:
        return read_piece(self.files[piece.file], piece, self.spec)

    def score(self, raw: RawChunk, predictor: Predictor) -> ScoredChunk:
        return score_chunk(predictor, self.plan, raw, chunk_size=self.chunk_size, fail_fast=self.fail_fast)

    def run(self, piece: Piece, predictor: Predictor) -> ScoredChunk:
        return self.score(self.read(piece), predictor)
