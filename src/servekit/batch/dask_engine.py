"""The Dask engine: the same scoring over Dask partitions (one partition per piece).

The model's files are shipped to every worker once (`scatter(broadcast=True)`); each worker
loads them once, into a per-process cache, and every partition it scores uses that Predictor.
Workers read their pieces themselves, so the input must be reachable from them (a shared
folder, or an object-store URL). Results come back to the driver, which writes them in order,
with at most two partitions per worker thread in flight: memory stays bounded on both sides.

Without `scheduler`, a `distributed.LocalCluster` is started on 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.batch.chunks import ScoredChunk
from servekit.batch.readers import Piece
from servekit.batch.tasks import ChunkTask
from servekit.errors import ServekitError
from servekit.runtimes.base import import_optional

if TYPE_CHECKING:
    from servekit.predictor import Predictor

__all__ = ["LOOPBACK", "ShippedModel", "run_dask", "worker_loads"]

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT = "10s"
_PREDICTORS: dict[str, Predictor] = {}
_LOADS: dict[str, int] = {}
_LOCK = threading.Lock()
_FOLDERS: list[str] = []


@dataclass(frozen=True)
class ShippedModel:
    """A model's bundle files, to load on a worker exactly as the driver loaded it."""

    key: str
    manifest: str
    """The text of servekit.yaml."""
    files: dict[str, bytes]
    variant: str | None
    """The variant the driver runs (e.g. `onnx`), or `None` for the original artifact."""

    @classmethod
    def of(cls, predictor: Predictor) -> ShippedModel:
        """The files of the bundle `predictor` was loaded from."""
        bundle = predictor.bundle
        files = {name: (bundle.path / name).read_bytes() for name in sorted(bundle.manifest.files)}
        manifest = bundle.manifest.to_yaml()
        digest = hashlib.sha256(manifest.encode())
        for name, data in files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        digest.update(str(predictor.variant).encode())
        return cls(digest.hexdigest()[:24], manifest, files, predictor.variant)

    def load(self) -> Predictor:
        """Write the files into a private folder and load them (the driver already vouched for
        them: a pickle loads only if it is what the driver runs, never as a fallback)."""
        from servekit.bundle import MANIFEST_NAME, Bundle
        from servekit.loading import load_bundle

        folder = Path(tempfile.mkdtemp(prefix="servekit-model-", dir=_worker_directory()))
        _FOLDERS.append(str(folder))
        (folder / MANIFEST_NAME).write_text(self.manifest, encoding="utf-8")
        for name, data in self.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        bundle = Bundle.read(folder)
        bundle.verify()
        if self.variant is None:
            return load_bundle(bundle, verified_record=True, optimized=False)
        return load_bundle(bundle, optimized=self.variant)


def _worker_directory() -> str | None:
    """The Dask worker's own scratch folder (removed with the worker), else the system's."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError):
        return None


def worker_predictor(model: ShippedModel) -> Predictor:
    """The worker process's Predictor for `model`, loaded on first use."""
    with _LOCK:
        predictor = _PREDICTORS.get(model.key)
        if predictor is None:
            predictor = _PREDICTORS[model.key] = model.load()
            _LOADS[model.key] = _LOADS.get(model.key, 0) + 1
        return predictor


def worker_loads() -> dict[str, dict[str, Any]]:
    """Each shipped model this process loaded: how many times, and what answers (run on
    workers, e.g. `client.run(worker_loads)`)."""
    return {
        key: {"loads": count, "runtime": _PREDICTORS[key].runtime.format, "variant": _PREDICTORS[key].variant}
        for key, count in _LOADS.items()
    }


def score_partition(task: ChunkTask, piece: Piece, model: ShippedModel) -> ScoredChunk:
    """What a worker runs for one partition."""
    return task.run(piece, worker_predictor(model))


@atexit.register
def _remove_folders() -> None:
    for folder in _FOLDERS:
        shutil.rmtree(folder, ignore_errors=True)


# -- the driver ---------------------------------------------------------------------------------
def run_dask(
    task: ChunkTask,
    pieces: Sequence[Piece],
    predictor: Predictor,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    on_client: Any = None,
) -> Iterator[tuple[Piece, ScoredChunk]]:
    """Score `pieces` on a Dask cluster, yielding each with its result, in order."""
    shipped = ShippedModel.of(predictor)
    with _client(scheduler, workers) as client:
        if on_client is not None:
            on_client(client)
        model = client.scatter(shipped, broadcast=True, hash=False)
        shared_task = client.scatter(task, broadcast=True, hash=False)
        window = max(2, 2 * sum(client.nthreads().values()))
        pending: deque[tuple[Piece, Any]] = deque()
        remaining = iter(pieces)
        run = uuid.uuid4().hex[:12]

        def submit(piece: Piece) -> None:
            key = f"servekit-score-{run}-{piece.index}"
            pending.append((piece, client.submit(score_partition, shared_task, piece, model, key=key, pure=False)))

        for piece in remaining:
            submit(piece)
            if len(pending) >= window:
                break
        try:
            while pending:
                piece, future = pending.popleft()
                result = _result(future, piece)
                following = next(remaining, None)
                if following is not None:
                    submit(following)
                yield piece, result
        finally:
            for _, future in pending:
                future.cancel()


def _result(future: Any, piece: Piece) -> ScoredChunk:
    try:
        return future.result()
    except ServekitError:
        raise
    except Exception as exc:
        raise ServekitError(
            f"a Dask worker failed on partition {piece.index}: {type(exc).__name__}: {exc}",
            hint="Workers need servekit and the model's libraries installed, and access to the input files",
        ) from None


@contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A client of the given scheduler, or of a loopback-only local cluster started here."""
    distributed = import_optional("distributed", "dask")
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ServekitError(
                f"cannot connect to the Dask scheduler at {scheduler}: {exc}",
                hint="Check the address (tcp://HOST:8786) and that the scheduler is running",
            ) from None
        with client:
            yield client
        return
    cluster = distributed.LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client
