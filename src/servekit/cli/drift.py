"""`servekit drift`: compare live inputs with a model's reference profile and write an HTML report.

Exit code 0: no drift; 1: at least one feature drifted; 2: error (one line on stderr).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from servekit.cli._output import console, err_console, print_json
from servekit.errors import InvalidInput, MissingInformation, ModelNotFound, ServekitError

if TYPE_CHECKING:
    import pandas as pd

    from servekit.bundle import Manifest
    from servekit.monitoring.drift import DriftReport

HOME_HELP = "Registry home (default: $SERVEKIT_HOME or ~/.servekit)."
EXIT_DRIFT = 1
_SINCE = re.compile(r"\s*(\d+)\s*([mhd])\s*")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def drift_command(
    name: str = typer.Argument(..., help="Registry reference (iris, iris:3, iris@production) or a bundle folder."),
    current: Path | None = typer.Option(
        None, "--current", "-c", help="Live inputs to compare: a CSV, Parquet or JSONL file with feature columns."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Instead of --current: inputs from the prediction log of the last 30m, 1h, 24h, 7d…"
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="HTML report to write (default: drift-NAME.html; with --json: none)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Test every feature of live inputs for drift from the model's training profile."""
    from servekit.monitoring.drift import assess
    from servekit.monitoring.report import render_report

    if (current is None) == (since is None):
        raise InvalidInput("give the live inputs with either --current FILE or --since 24h")
    manifest = _manifest(name, home)
    if not manifest.profile or not manifest.profile.get("features"):
        raise MissingInformation(
            f"{manifest.name} has no reference profile to compare with",
            hint="Pack the model with --sample TRAINING_DATA.csv and push it again",
        )
    features = manifest.to_signature().names
    frame = _current_frame(current, features) if current is not None else _logged_inputs(manifest, since, home)
    report = assess(manifest.profile, frame, model=manifest.name, version=manifest.version, features=features)
    if output is None and not as_json:
        output = Path(f"drift-{manifest.name}.html")
    if output is not None:
        try:
            output.write_text(render_report(report, manifest.profile, frame), encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot write {output}: {exc.strerror or exc}") from None
    if as_json:
        print_json(report.to_dict())
    else:
        _print_summary(report, output)
    if report.drifted:
        raise typer.Exit(EXIT_DRIFT)


def _manifest(name: str, home: Path | None) -> Manifest:
    """The manifest of a bundle folder, or of the registry version `name` refers to."""
    from servekit.bundle import Bundle

    path = Path(name)
    if path.is_dir():
        return Bundle.read(path).manifest
    if path.exists():
        raise InvalidInput(f"{name} is a file; servekit drift takes a bundle folder or a registry reference")
    if "/" in name or "\\" in name:
        raise ModelNotFound(f"{name} does not exist")
    from servekit.registry import Registry

    with Registry(home) as registry:
        return registry.resolve(name).manifest


def _current_frame(path: Path, features: list[str]) -> pd.DataFrame:
    from servekit.profile import read_table

    frame = read_table(path).rename(columns=str)
    if not any(name in frame.columns for name in features):
        shown = ", ".join(features[:8]) + ("…" if len(features) > 8 else "")
        raise InvalidInput(
            f"{path.name} has none of the model's feature columns ({shown})",
            hint="Name the columns as the model's features (servekit models NAME shows them)",
        )
    return frame


def _logged_inputs(manifest: Manifest, since: str | None, home: Path | None) -> pd.DataFrame:
    """Inputs of `manifest.name` from the prediction log in the registry's database."""
    start = datetime.now(UTC) - parse_since(since or "")
    try:
        from servekit.monitoring.predlog import load_inputs
    except ImportError:
        raise ServekitError("this servekit has no prediction log to read", hint="Use --current FILE") from None
    from servekit.registry import Registry

    with Registry(home) as registry:
        url = registry.database_url
    frame = load_inputs(url, manifest.name, start)
    if len(frame) == 0:
        err_console.print(f"[yellow]no inputs of {escape(manifest.name)} logged since {start:%Y-%m-%d %H:%M} UTC[/]")
    return frame


def parse_since(text: str) -> timedelta:
    """`30m`, `1h`, `24h` or `7d` as a duration."""
    match = _SINCE.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise InvalidInput(f"--since takes a duration such as 30m, 1h, 24h or 7d, not {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _print_summary(report: DriftReport, output: Path | None) -> None:
    table = Table("feature", "kind", "state", "p-value", "PSI", "live values", "note", title=_title(report))
    styles = {"drift": "bold red", "ok": "green", "not_assessable": "dim"}
    for f in report.features:
        pvalue = "" if f.pvalue is None else f"{f.pvalue:.2g}"
        psi = "" if f.psi is None else f"{f.psi:.3f}"
        state = f"[{styles[f.state]}]{f.state.replace('_', ' ')}[/]"
        table.add_row(escape(f.feature), f.kind, state, pvalue, psi, str(f.n_current), escape(f.reason or ""))
    console.print(table)
    if report.drifted:
        verdict = f"[bold red]drift[/] in {len(report.drifted)} of {report.assessed} assessed features"
    else:
        verdict = f"[green]no drift[/] in {report.assessed} assessed features"
    where = f" → {escape(str(output))}" if output is not None else ""
    console.print(f"{verdict} ({report.rows} rows){where}", highlight=False, soft_wrap=True)


def _title(report: DriftReport) -> str:
    version = f":{report.version}" if report.version is not None else ""
    return escape(f"drift of {report.model}{version}")


def register(app: typer.Typer) -> None:
    app.command("drift")(drift_command)
