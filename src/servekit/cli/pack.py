"""`servekit pack`: write a bundle folder for a model file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from servekit.cli._output import console, parse_json_object, parse_list, parse_metrics, parse_pairs, print_json

TRUST_HELP = "Vouch for a pickle-based file: loading it runs code. Needed for pickle/joblib."


def pack_options_from_cli(
    *,
    features: str | None,
    n_features: int | None,
    task: str | None,
    classes: str | None,
    module: str | None,
    module_kwargs: str | None,
    allow_nan: bool | None,
) -> dict:
    """Keyword arguments of `servekit.packing.pack` from the shared CLI options."""
    runtime_options = {}
    if module:
        runtime_options["module"] = module
    if module_kwargs:
        runtime_options["module_kwargs"] = parse_json_object(module_kwargs, "--module-kwargs")
    return {
        "features": parse_list(features) and [str(f) for f in parse_list(features)],
        "n_features": n_features,
        "task": task,
        "classes": parse_list(classes),
        "runtime_options": runtime_options or None,
        "allow_nan": allow_nan,
    }


def pack_command(
    model: Path = typer.Argument(
        ..., help="The model file (joblib, pickle, skops, ONNX, Keras, torch, XGBoost, LightGBM)."
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Model name (default: the file name)."),
    version: int | None = typer.Option(None, "--version", "-v", help="Version number to record."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Bundle folder to write (default: ./NAME.bundle)."),
    sample: Path | None = typer.Option(
        None, "--sample", help="Training data sample (CSV/Parquet/JSONL) for the drift reference profile."
    ),
    metrics: list[str] | None = typer.Option(
        None, "--metrics", help="Metric as NAME=VALUE, e.g. accuracy=0.95 (repeatable)."
    ),
    tag: list[str] | None = typer.Option(None, "--tag", help="Free-form tag KEY=VALUE (repeatable)."),
    training_date: str | None = typer.Option(None, "--training-date", help="When the model was trained (ISO date)."),
    description: str | None = typer.Option(None, "--description", help="One-line description."),
    features: str | None = typer.Option(None, "--features", help="Feature names in order, comma-separated."),
    n_features: int | None = typer.Option(
        None, "--n-features", help="Input width, for models that cannot tell (torch)."
    ),
    task: str | None = typer.Option(None, "--task", help="classification or regression, when it cannot be inferred."),
    classes: str | None = typer.Option(None, "--classes", help="Class labels in output order, comma-separated."),
    module: str | None = typer.Option(
        None, "--module", help="torch state_dict: import path of the module class, package.module:Class."
    ),
    module_kwargs: str | None = typer.Option(
        None, "--module-kwargs", help="torch state_dict: constructor arguments as a JSON object."
    ),
    allow_nan: bool | None = typer.Option(
        None, "--allow-nan/--no-allow-nan", help="Accept missing values (null/NaN) in inputs."
    ),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP),
    force: bool = typer.Option(False, "--force", help="Replace the output folder if it exists."),
    optimize: bool = typer.Option(
        True,
        "--optimize/--no-optimize",
        help="With --sample: add an ONNX variant verified on the sample when the model converts.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Pack a model file into a bundle: the artifact plus a servekit.yaml manifest."""
    from servekit.packing import pack

    bundle = pack(
        model,
        name=name,
        version=version,
        output=output,
        sample=sample,
        metrics=parse_metrics(metrics),
        tags=parse_pairs(tag, "--tag"),
        trust=trust,
        training_date=training_date,
        description=description,
        force=force,
        optimize=optimize,
        **pack_options_from_cli(
            features=features,
            n_features=n_features,
            task=task,
            classes=classes,
            module=module,
            module_kwargs=module_kwargs,
            allow_nan=allow_nan,
        ),
    )
    manifest = bundle.manifest
    report = bundle.optimization
    if as_json:
        data = {"path": str(bundle.path), "manifest": manifest.model_dump(mode="json")}
        if report is not None:
            data["optimization"] = report.to_dict()
        print_json(data)
        return
    signature = bundle.signature
    console.print(
        f"[green]packed[/] {manifest.name} ({manifest.format}, {manifest.task}, "
        f"{signature.n_features} features) → {escape(str(bundle.path))}",
        highlight=False,
    )
    if report is not None:
        style = "green" if report.stored else "yellow"
        console.print(f"[{style}]{escape(report.summary())}[/]", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("pack")(pack_command)
