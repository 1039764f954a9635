"""`servekit export MODEL --format onnx -o DIR`: a portable ONNX file and a standalone predictor."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.markup import escape

from servekit.cli._output import console
from servekit.cli.pack import TRUST_HELP


def export_command(
    model: str = typer.Argument(
        ..., help="Bundle folder, model file, or registry ref (name, name:3, name@production)."
    ),
    format: str = typer.Option("onnx", "--format", "-f", help="What to export: onnx."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Export folder (default: ./NAME-edge)."),
    quantize: bool = typer.Option(
        False, "--quantize", help="Ship the int8-quantized model (kept only if its labels or values stay close)."
    ),
    sample: Path | None = typer.Option(
        None, "--sample", help="Rows to verify a conversion on (CSV/Parquet/JSONL); default: the bundle's profile."
    ),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    home: Path | None = typer.Option(None, "--home", help="Registry home, for registry refs."),
    force: bool = typer.Option(False, "--force", help="Replace the export folder if it exists."),
) -> None:
    """Write MODEL as an ONNX file plus a predictor that needs only onnxruntime and numpy."""
    from servekit.edge import export_model
    from servekit.edge.export import FORMATS
    from servekit.errors import InvalidInput
    from servekit.sources import parse_source

    if format not in FORMATS:  # an unknown format fails before anything else
        raise InvalidInput(f"unknown export format {format!r}", hint=f"Choose one of: {', '.join(FORMATS)}")
    folder = output if output is not None else Path(f"{parse_source(model).name}-edge")
    result = export_model(
        model, folder, format=format, quantize=quantize, sample=sample, trust=trust, home=home, force=force
    )
    onnx, facts = result.onnx, result.onnx.facts
    if onnx.variant == "original":
        how = "the model's own ONNX file"
    else:
        made = "converted now" if onnx.converted else "from the bundle"
        agree = f"labels agree {facts['label_agreement']:.1%}, " if "label_agreement" in facts else ""
        diff = f"max diff {facts['max_abs_diff']:.2g}" if "max_abs_diff" in facts else "verified"
        rows = f" on {facts['rows_checked']} rows" if "rows_checked" in facts else ""
        how = f"{onnx.variant} variant {made}; {agree}{diff}{rows} against the original"
    console.print(escape(f"exported {result.signature['name']} to {folder} ({how})"), highlight=False, soft_wrap=True)
    console.print("next, on any machine with Python:", highlight=False)
    predictor = shlex.quote(str(folder / "predictor.py"))
    for line in ("python -m pip install onnxruntime numpy", f"python {predictor} rows.json"):
        console.print(escape(f"  {line}"), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
