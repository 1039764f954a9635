"""Registry commands: `push`, `models`, `promote`, `rollback`, `rm`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.table import Table

from servekit.cli._output import console, print_json
from servekit.cli.pack import TRUST_HELP, pack_options_from_cli

HOME_HELP = "Registry home (default: $SERVEKIT_HOME or ~/.servekit)."


def _registry(home: Path | None):
    from servekit.registry import Registry

    return Registry(home)


def push_command(
    source: Path = typer.Argument(..., help="A bundle folder (from `servekit pack`) or a model file."),
    name: str | None = typer.Option(None, "--name", "-n", help="Model name (default: the manifest's or file's)."),
    trust: bool = typer.Option(False, "--trust", help=TRUST_HELP + " The registry records its sha256 as trusted."),
    features: str | None = typer.Option(None, "--features", help="Feature names in order (bare files)."),
    n_features: int | None = typer.Option(None, "--n-features", help="Input width (bare torch files)."),
    task: str | None = typer.Option(None, "--task", help="classification or regression (bare files)."),
    classes: str | None = typer.Option(None, "--classes", help="Class labels, comma-separated (bare files)."),
    module: str | None = typer.Option(None, "--module", help="torch state_dict module class, package.module:Class."),
    module_kwargs: str | None = typer.Option(None, "--module-kwargs", help="torch module arguments, JSON object."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the pushed version as JSON."),
) -> None:
    """Push a bundle or a model file into the registry as a new immutable version."""
    from servekit.publishing import push

    options = pack_options_from_cli(
        features=features,
        n_features=n_features,
        task=task,
        classes=classes,
        module=module,
        module_kwargs=module_kwargs,
        allow_nan=None,
    )
    registry = _registry(home)
    with tempfile.TemporaryDirectory(prefix="servekit-push-") as scratch:
        pushed = push(registry, source, name=name, trust=trust, scratch=Path(scratch), **options)
    if as_json:
        print_json(_version_json(pushed))
    else:
        console.print(f"[green]pushed[/] {pushed.name}:{pushed.version} ({pushed.format})", highlight=False)
    registry.close()


def models_command(
    name: str | None = typer.Argument(None, help="Show the versions of this model."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the registry's models, or the versions of one model."""
    registry = _registry(home)
    if name is None:
        summaries = registry.models()
        if as_json:
            print_json([_summary_json(s) for s in summaries])
            return
        table = Table("name", "latest", "versions", "aliases", "updated")
        for s in summaries:
            aliases = ", ".join(f"{a}→{v}" for a, v in sorted(s.aliases.items()))
            table.add_row(s.name, str(s.latest_version), str(s.versions), aliases, _when(s.updated_at))
        console.print(table if summaries else "no models yet: push one with `servekit push MODEL`")
        return
    versions = registry.versions(name)
    if as_json:
        print_json([_version_json(v) for v in versions])
        return
    table = Table("version", "format", "task", "aliases", "created", "sha256", title=name)
    for v in versions:
        table.add_row(
            str(v.version),
            v.format,
            v.manifest.task,
            ", ".join(v.aliases),
            _when(v.created_at),
            v.files.get(v.manifest.artifact, "")[:12],
        )
    console.print(table)


def promote_command(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to point the alias at."),
    alias: str = typer.Option("production", "--alias", "-a", help="Alias to move."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Point an alias (default: production) at a version."""
    registry = _registry(home)
    moved = registry.promote(name, version, alias)
    _report_alias(moved, alias, as_json)


def rollback_command(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option("production", "--alias", "-a", help="Alias to move back."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Move an alias back to the version it pointed at before the last promote."""
    registry = _registry(home)
    moved = registry.rollback(name, alias)
    _report_alias(moved, alias, as_json)


def rm_command(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to delete."),
    force: bool = typer.Option(False, "--force", help="Delete even if an alias points at it (the alias goes too)."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
) -> None:
    """Delete one version of a model from the registry."""
    registry = _registry(home)
    registry.remove(name, version, force=force)
    console.print(f"[green]removed[/] {name}:{version}", highlight=False)


def _report_alias(moved, alias: str, as_json: bool) -> None:
    if as_json:
        print_json(_version_json(moved))
    else:
        console.print(f"[green]{moved.name}@{alias}[/] → version {moved.version}", highlight=False)


def _version_json(v) -> dict:
    return {
        "name": v.name,
        "version": v.version,
        "format": v.format,
        "task": v.manifest.task,
        "aliases": list(v.aliases),
        "created_at": v.created_at.isoformat(),
        "sha256": v.files,
        "path": str(v.path),
    }


def _summary_json(s) -> dict:
    return {
        "name": s.name,
        "latest_version": s.latest_version,
        "versions": s.versions,
        "aliases": s.aliases,
        "updated_at": s.updated_at.isoformat() if s.updated_at else None,
    }


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
    app.command("models")(models_command)
    app.command("promote")(promote_command)
    app.command("rollback")(rollback_command)
    app.command("rm")(rm_command)
