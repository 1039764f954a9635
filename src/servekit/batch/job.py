"""`score(...)`: score a file, a folder or a glob of files with a model, into one output file.

The job: resolve the input, match its columns against the model's signature, cut it into
pieces, score them in order with an engine (local threads or Dask), write one part per piece
and the state after it (so `resume=True` continues an interrupted run), then assemble the
output and the errors file under temporary names and rename them into place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.batch.chunks import RawChunk, ScoredChunk
from servekit.batch.columns import ColumnPlan, plan_columns
from servekit.batch.inputs import InputFile, resolve_inputs
from servekit.batch.local_engine import run_local
from servekit.batch.progress import ProgressReporter, make_progress
from servekit.batch.readers import Piece, plan_pieces, read_spec
from servekit.batch.resume import RunState, WorkDir
from servekit.batch.scoring import output_names
from servekit.batch.tasks import ChunkTask
from servekit.batch.writers import (
    merge_errors,
    merge_parts,
    output_format,
    part_schema,
    part_suffix,
    unified_schema,
    write_errors_part,
    write_part,
)
from servekit.errors import InvalidInput
from servekit.predictor import Predictor

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DEFAULT_CHUNK_SIZE", "ENGINES", "ScoreSummary", "score"]

DEFAULT_CHUNK_SIZE = 50_000
ENGINES = ("local", "dask")


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring job did."""

    output: Path
    errors: Path | None
    """The errors file, written only when some rows were not scored."""
    rows_read: int
    rows_scored: int
    rows_failed: int
    problems: int
    """Lines of the errors file (a row with two bad values has two)."""
    resumed_rows: int
    """Rows an interrupted run had already done (0 for a fresh run)."""
    seconds: float
    engine: str
    model: str
    runtime: str
    variant: str | None
    chunks: int
    scheduler: str | None = None
    """The Dask scheduler's address (dask engine)."""

    @property
    def rows_per_second(self) -> float:
        """Rows read by this session per second, loading the model included."""
        return (self.rows_read - self.resumed_rows) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        data["errors"] = None if self.errors is None else str(self.errors)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        return data


def score(
    model: str | Path | Predictor,
    input: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    keep: Iterable[str] = (),
    id_column: str | None = None,
    errors: str | Path | None = None,
    fail_fast: bool = False,
    resume: bool = False,
    force: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    trust: bool = False,
    home: str | Path | None = None,
    optimized: bool | str = True,
    progress: bool | ProgressReporter = False,
) -> ScoreSummary:
    """Score every row of `input` (CSV, Parquet or JSON lines: a file, a folder or a glob) with
    `model` into `output`, whose extension picks its format.

    `model` is a loaded `Predictor`, a model file, a bundle folder or a registry reference
    (`iris`, `iris:3`, `iris@production`; `home` is the registry). Output columns: the id column
    (a column named `id`, or `id_column`), the `keep` columns, `prediction` and one
    `probability_<class>` column per class. Rows that fail validation go to `errors` (default
    `OUTPUT.errors.csv`) unless `fail_fast`, which stops at the first with `InvalidInput`.
    `resume=True` continues an interrupted run from its last completed chunk; `force=True`
    replaces an existing output. `engine="dask"` scores on a Dask cluster (`scheduler` address,
    or a local loopback cluster of `workers` processes). `progress=True` shows a bar on a
    terminal (plain lines otherwise) on stderr.
    """
    began = time.monotonic()
    if chunk_size < 1:
        raise InvalidInput(f"the chunk size must be at least 1, got {chunk_size}")
    if engine not in ENGINES:
        raise InvalidInput(f"unknown engine {engine!r}", hint=f"Use one of {', '.join(ENGINES)}")
    if (scheduler is not None or workers is not None) and engine != "dask":
        raise InvalidInput("a scheduler address or a worker count needs the dask engine", hint="Add --engine dask")
    if scheduler is not None and workers is not None:
        raise InvalidInput("the worker count is for the local Dask cluster; a scheduler's cluster has its own workers")
    output = Path(output).expanduser()
    fmt = output_format(output)
    errors_path = Path(errors).expanduser() if errors is not None else output.with_name(output.name + ".errors.csv")
    if errors_path.resolve() == output.resolve():
        raise InvalidInput("the errors file cannot be the output itself")
    files = resolve_inputs(input)
    predictor, owned = _predictor(model, trust=trust, home=home, optimized=optimized)
    try:
        plan = plan_columns(
            predictor.signature, files, keep=keep, id_column=id_column, reserved=output_names(predictor)
        )
        task = ChunkTask(tuple(files), read_spec(predictor.signature, plan, files), plan, chunk_size, fail_fast)
        pieces = plan_pieces(files, chunk_size)
        workdir = WorkDir(output)
        state, resumed = workdir.prepare(
            _fingerprint(files, chunk_size, plan, predictor, fmt), resume=resume, force=force
        )
        job = _Job(task, pieces, predictor, workdir, state, fmt)
        reporter = progress if not isinstance(progress, bool) else make_progress(progress)
        scheduler_address = job.run(engine, reporter, scheduler=scheduler, workers=workers)
        wrote_errors = job.finish(output, errors_path)
        if not wrote_errors and errors is None:
            errors_path.unlink(missing_ok=True)  # a stale one from an earlier run of this output
    finally:
        if owned:
            predictor.close()
    return ScoreSummary(
        output=output,
        errors=errors_path if wrote_errors else None,
        rows_read=state.rows_read,
        rows_scored=state.rows_scored,
        rows_failed=state.rows_failed,
        problems=state.problems,
        resumed_rows=job.resumed_rows if resumed else 0,
        seconds=time.monotonic() - began,
        engine=engine,
        model=_model_name(predictor),
        runtime=predictor.runtime.format,
        variant=predictor.variant,
        chunks=len(pieces),
        scheduler=scheduler_address,
    )


def _predictor(
    model: str | Path | Predictor, *, trust: bool, home: str | Path | None, optimized: bool | str
) -> tuple[Predictor, bool]:
    if isinstance(model, Predictor):
        return model, False
    from servekit.loading import load
    from servekit.sources import parse_source

    parse_source(str(model))  # a missing model file is said to be missing, not looked up in the registry
    return load(model, trust=trust, home=home, optimized=optimized), True


def _model_name(predictor: Predictor) -> str:
    return predictor.name if predictor.version is None else f"{predictor.name}:{predictor.version}"


def _fingerprint(
    files: list[InputFile], chunk_size: int, plan: ColumnPlan, predictor: Predictor, fmt: str
) -> dict[str, Any]:
    """What must not change for an interrupted run to be resumed."""
    return {
        "files": [[f.path, f.size, f.modified] for f in files],
        "chunk_size": chunk_size,
        "columns": [list(plan.features), list(plan.passthrough)],
        "model": {
            "name": predictor.name,
            "version": predictor.version,
            "files": dict(sorted(predictor.manifest.files.items())),
            "variant": predictor.variant,
        },
        "format": fmt,
    }


class _Job:
    """One run: scores the remaining pieces in order, recording each as it completes."""

    def __init__(
        self, task: ChunkTask, pieces: list[Piece], predictor: Predictor, workdir: WorkDir, state: RunState, fmt: str
    ) -> None:
        self.task = task
        self.pieces = pieces
        self.predictor = predictor
        self.workdir = workdir
        self.state = state
        self.fmt = fmt
        self.resumed_rows = state.rows_read

    def run(self, engine: str, reporter: ProgressReporter, *, scheduler: str | None, workers: int | None) -> str | None:
        """Score what is left; the Dask scheduler's address, if any."""
        todo = self.pieces[self.state.pieces_done :]
        done_weight = sum(p.weight for p in self.pieces[: self.state.pieces_done])
        address: list[str] = []
        if engine == "dask" and todo:
            from servekit.batch.dask_engine import run_dask

            results = run_dask(
                self.task,
                todo,
                self.predictor,
                scheduler=scheduler,
                workers=workers,
                on_client=lambda client: address.append(client.scheduler.address),
            )
        else:
            results = run_local(self.task, todo, self.predictor)
        reporter.start(sum(p.weight for p in self.pieces), done_weight, self.state.rows_read)
        try:
            for piece, scored in results:
                self._record(piece, scored)
                reporter.advance(piece.weight, scored.rows)
        finally:
            results.close()
            reporter.finish()
        return address[0] if address else None

    def _record(self, piece: Piece, scored: ScoredChunk) -> None:
        state = self.state
        file = self.task.files[piece.file]
        if self.task.fail_fast and scored.problems:
            first = scored.problems[0]
            self.workdir.clear()
            column = f", column {first.column!r}" if first.column else ""
            raise InvalidInput(
                f"row {state.rows_read + first.row} of the input ({file.name}){column}: {first.reason}",
                hint="Fix the input, or drop --fail-fast to collect the bad rows in an errors file",
            )
        write_part(scored.table, self._part(piece.index), self.fmt)
        if scored.problems:
            rows = [(state.rows_read + p.row, file.path, p) for p in scored.problems]
            write_errors_part(self.workdir.errors_part(piece.index), rows, self.task.plan.id_column)
            state.error_parts.append(piece.index)
        state.columns = state.columns or scored.table.column_names
        state.pieces_done = piece.index + 1
        state.rows_read += scored.rows
        state.rows_scored += scored.table.num_rows
        state.rows_failed += scored.bad_rows
        state.problems += len(scored.problems)
        self.workdir.save(state)

    def finish(self, output: Path, errors: Path) -> bool:
        """Assemble the output (and the errors file); True when an errors file was written."""
        if not self.pieces:
            self._record(Piece(0, 0, 0, 0, 0), self.task.score(self._no_rows(), self.predictor))
            parts = [self._part(0)]
        else:
            parts = [self._part(p.index) for p in self.pieces]
        errors_parts = [self.workdir.errors_part(i) for i in self.state.error_parts]
        if errors_parts:
            errors.parent.mkdir(parents=True, exist_ok=True)
            merge_errors(errors_parts, errors, self.task.plan.id_column)
        merge_parts(parts, output, self.fmt, self._schema(parts))
        self.workdir.clear()
        return bool(errors_parts)

    def _part(self, index: int) -> Path:
        return self.workdir.part(index, part_suffix(self.fmt))

    def _schema(self, parts: list[Path]) -> pa.Schema:
        import pyarrow as pa

        if self.fmt == "parquet":
            return unified_schema(part_schema(p) for p in parts)
        return pa.schema([(name, pa.string()) for name in self.state.columns or []])

    def _no_rows(self) -> RawChunk:
        import pyarrow as pa

        spec = self.task.spec
        columns = {name: pa.array([], type=spec.types.get(name, pa.string())) for name in spec.columns}
        return RawChunk(columns, 0, 0)
