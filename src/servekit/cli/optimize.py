"""`servekit optimize`: add a verified ONNX variant to a bundle folder or a registry model.

A bundle folder gets the variant in place. A registry version never changes, so the variant
goes into a new version (aliases stay where they are). Exit code 1 when nothing was stored.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from servekit.cli._output import console, print_json
from servekit.cli.pack import TRUST_HELP

if TYPE_CHECKING:
    from servekit.optimize import OptimizeReport
    from servekit.registry import RegisteredVersion

LATENCY_CALLS = 300


def optimize_command(
    source: str = typer.Argument(..., help="A bundle folder, or a registry ref (name, name:3, name@production)."),
    sample: Path | None = typer.Option(
        None, "--sample", help="Rows to verify on (CSV/Parquet/JSONL); default: drawn from the bundle's profile."
    ),
    quantize: bool = typer.Option(False, "--quantize", help="Also store an int8 variant (onnx-int8) if accurate."),
    tolerance: float = typer.Option(
        1e-5, "--tolerance", help="Largest absolute difference allowed on probabilities or values."
    ),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    home: Path | None = typer.Option(None, "--home", help="Registry home (default: $SERVEKIT_HOME or ~/.servekit)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Convert a model to ONNX, verify it against the original, and store it as a variant."""
    from servekit.bundle import Bundle
    from servekit.errors import InvalidInput, ModelNotFound
    from servekit.optimize import optimize_bundle

    options = {"sample": sample, "quantize": quantize, "tolerance": tolerance, "trust": trust}
    path = Path(source).expanduser()
    pushed = None
    if path.is_dir():
        report = optimize_bundle(Bundle.read(path), timing_calls=LATENCY_CALLS, **options)
        where = str(path)
    elif path.exists():
        raise InvalidInput(
            f"{source} is a model file, not a bundle folder",
            hint="Pack it with a sample, which optimizes it: servekit pack MODEL --sample FILE",
        )
    elif "/" in source or "\\" in source:
        raise ModelNotFound(f"{source} does not exist", hint="Give a bundle folder or a registry ref")
    else:
        from servekit.optimize.registered import optimize_registered
        from servekit.registry import Registry

        with Registry(home) as registry, tempfile.TemporaryDirectory(prefix="servekit-optimize-") as scratch:
            report, found, pushed = optimize_registered(
                registry, source, scratch=Path(scratch), timing_calls=LATENCY_CALLS, **options
            )
        where = f"{found.name}:{found.version}"
    if as_json:
        data = {"source": where, "report": report.to_dict()}
        data["pushed"] = None if pushed is None else {"name": pushed.name, "version": pushed.version}
        print_json(data)
    else:
        _print(report, where, pushed)
    if not report.stored:
        raise typer.Exit(1)


def _print(report: OptimizeReport, where: str, pushed: RegisteredVersion | None) -> None:
    if not report.stored:
        console.print(f"[yellow]{escape(where)}: {escape(report.summary())}[/]", highlight=False, soft_wrap=True)
        return
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 2))
    table.add_row("converter", escape(report.converter or ""))
    table.add_row("inputs", escape(report.input_dtype or ""))
    table.add_row(
        "max abs diff",
        f"{report.max_abs_diff:.2g} (tolerance {report.tolerance:g}, {report.rows_checked} rows from the "
        f"{report.rows_source})",
    )
    if report.latency_ms:
        before, after = report.latency_ms["original"], report.latency_ms["onnx"]
        table.add_row(
            "latency",
            f"{before:.3f} ms → {after:.3f} ms for one row ({before / after:.1f}x faster; median of "
            f"{LATENCY_CALLS} in-process calls, informative only)",
        )
    if report.quantized is not None:
        table.add_row("int8", escape(report.quantized.summary()))
    console.print(f"[green]optimized[/] {escape(where)}: ONNX variant verified and stored", highlight=False)
    console.print(table)
    if pushed is not None:
        console.print(
            f"[green]pushed[/] {pushed.name}:{pushed.version} with the variant; promote it with "
            f"`servekit promote {pushed.name} {pushed.version} --alias ALIAS`",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize_command)
