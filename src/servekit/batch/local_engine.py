"""The local engine: one process, both cores busy.

A reader thread parses the next piece (pyarrow's parser is multi-threaded and releases the
GIL) while the calling thread validates, predicts and writes the current one. The queue
between them holds one piece, so memory stays bounded whatever the input size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from servekit.batch.chunks import ScoredChunk
from servekit.batch.readers import Piece
from servekit.batch.tasks import ChunkTask

if TYPE_CHECKING:
    from servekit.predictor import Predictor

__all__ = ["PREFETCH", "run_local"]

PREFETCH = 1
"""Parsed pieces waiting for the scorer (one more is being parsed meanwhile)."""
_DONE = object()
_POLL = 0.1


def run_local(task: ChunkTask, pieces: Sequence[Piece], predictor: Predictor) -> Iterator[tuple[Piece, ScoredChunk]]:
    """Score `pieces` in order, yielding each with its result."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def read_ahead() -> None:
        try:
            for piece in pieces:
                if not offer((piece, task.read(piece))):
                    return
        except BaseException as exc:  # handed to the scoring thread, which raises it
            offer(exc)
            return
        offer(_DONE)

    reader = threading.Thread(target=read_ahead, name="servekit-score-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            piece, raw = item
            yield piece, task.score(raw, predictor)
    finally:
        stop.set()
        reader.join()
