"""`servekit logs`: export the prediction log of one model as CSV, Parquet or JSON Lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from servekit.cli._output import console, err_console
from servekit.cli.registry import HOME_HELP
from servekit.errors import InvalidInput

_FORMATS = ("csv", "parquet", "jsonl")
_SUFFIXES = {"csv": "csv", "parquet": "parquet", "pq": "parquet", "jsonl": "jsonl", "ndjson": "jsonl"}


def logs_command(
    name: str = typer.Argument(..., help="Model name."),
    since: str | None = typer.Option(
        None, "--since", help="Only predictions newer than this: 30m, 1h, 24h, 7d or an ISO date (default: all)."
    ),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="csv, parquet or jsonl (default: from -o's extension, else csv)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (required for parquet)."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    database: str | None = typer.Option(
        None,
        "--database",
        envvar="SERVEKIT_PREDICTION_LOG__URL",
        help="SQLAlchemy URL of the log's database, as the server's prediction_log.url (default: HOME/registry.db).",
    ),
) -> None:
    """Export a model's logged predictions, one row per input row, to stdout or a file."""
    from servekit.monitoring.predlog import export, parse_since
    from servekit.registry import default_home

    fmt = _format(fmt, output)
    if fmt == "parquet" and output is None:
        raise InvalidInput("parquet is a binary format", hint="give a file with -o FILE")
    start = parse_since(since) if since is not None else None
    base = home.expanduser().absolute() if home is not None else default_home()
    url = database or f"sqlite:///{base / 'registry.db'}"
    if output is not None:
        count = export(url, name, start, fmt, output)
        console.print(f"[green]wrote[/] {count} rows to {output}", highlight=False)
        return
    try:
        count = export(url, name, start, fmt, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `servekit logs iris | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if count == 0:
        window = f" since {start:%Y-%m-%d %H:%M} UTC" if start is not None else ""
        err_console.print(f"no predictions of {name!r} logged{window}", highlight=False)


def _format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        return _SUFFIXES.get(suffix, "csv")
    chosen = fmt.lower()
    if chosen not in _FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(_FORMATS)}")
    return chosen


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_command)
