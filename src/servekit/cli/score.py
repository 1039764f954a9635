"""`servekit score`: score a CSV, Parquet or JSON-lines input offline into one output file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from servekit.cli._output import console, err_console, print_json
from servekit.cli.pack import TRUST_HELP

if TYPE_CHECKING:
    from servekit.batch import ScoreSummary

DEFAULT_CHUNK_SIZE = 50_000  # servekit.batch.DEFAULT_CHUNK_SIZE, repeated so --help imports nothing heavy
PROGRESS_INTERVAL = 10.0


def score_command(
    model: str = typer.Argument(
        ..., help="A model file, a bundle folder, or a registry ref (name, name:3, name@production)."
    ),
    input: str = typer.Argument(..., help="A CSV/TSV, Parquet or JSON-lines file, a folder of them, or a glob."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file; .csv, .tsv, .parquet or .jsonl."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK_SIZE, "--chunk-size", help="Rows per chunk (about, for text files)."),
    keep: list[str] | None = typer.Option(
        None, "--keep", help="Input column to copy to the output (repeatable, or comma-separated)."
    ),
    id_column: str | None = typer.Option(
        None, "--id", help="The id column copied to the output (default: a column named id, if any)."
    ),
    errors: Path | None = typer.Option(
        None, "--errors", help="Where bad rows are described (default: OUTPUT.errors.csv)."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first bad row."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last completed chunk."),
    force: bool = typer.Option(False, "--force", help="Replace the output, or an interrupted run, if there is one."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or dask."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (default: a local loopback cluster)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="Worker processes of the local Dask cluster (default: one per core)."
    ),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    home: Path | None = typer.Option(None, "--home", help="Registry home (default: $SERVEKIT_HOME or ~/.servekit)."),
    no_optimize: bool = typer.Option(
        False, "--no-optimize", help="Use the original artifact even when a verified ONNX variant exists."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    progress_interval: float = typer.Option(
        PROGRESS_INTERVAL, "--progress-interval", help="Seconds between progress lines when not on a terminal."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Score every row of INPUT with a model into OUTPUT, in chunks, with an errors file for bad rows."""
    from servekit.batch import score
    from servekit.batch.progress import make_progress

    _warnings_on_one_line()
    kept = [name.strip() for value in keep or [] for name in value.split(",") if name.strip()]
    try:
        summary = score(
            model,
            input,
            output,
            chunk_size=chunk_size,
            keep=kept,
            id_column=id_column,
            errors=errors,
            fail_fast=fail_fast,
            resume=resume,
            force=force,
            engine=engine,
            scheduler=scheduler,
            workers=workers,
            trust=trust,
            home=home,
            optimized=not no_optimize,
            progress=make_progress(not quiet, console=err_console, interval=progress_interval),
        )
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: run the same command with --resume to continue from the last completed chunk",
            highlight=False,
        )
        raise
    if as_json:
        print_json(summary.to_dict())
    else:
        _print(summary)


def _print(summary: ScoreSummary) -> None:
    runtime = f"{summary.variant} variant" if summary.variant else summary.runtime
    where = f", scheduler {summary.scheduler}" if summary.scheduler else ""
    resumed = f", {summary.resumed_rows:,} of them by the interrupted run" if summary.resumed_rows else ""
    console.print(
        f"[green]scored[/] {summary.rows_scored:,} of {summary.rows_read:,} rows{resumed} → "
        f"{escape(str(summary.output))} in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s; "
        f"{escape(summary.model)}, {runtime}, {summary.engine} engine{where})",
        highlight=False,
        soft_wrap=True,
    )
    if summary.errors is not None:
        rows = "row was" if summary.rows_failed == 1 else "rows were"
        console.print(
            f"[yellow]{summary.rows_failed:,} {rows} not scored[/] ({summary.problems:,} problems) → "
            f"{escape(str(summary.errors))}",
            highlight=False,
            soft_wrap=True,
        )


class _OneLine(logging.Formatter):
    """Warnings as one line: the reason, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"warning: {record.getMessage()}"


def _warnings_on_one_line() -> None:
    logger = logging.getLogger("servekit")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_OneLine())
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)
