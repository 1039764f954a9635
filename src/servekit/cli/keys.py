"""`servekit keys create|list|revoke`: API keys in the registry database."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from servekit.cli._output import console, err_console, print_json
from servekit.cli.registry import HOME_HELP

keys_app = typer.Typer(
    name="keys",
    help="Create, list and revoke the API keys the server accepts (stored hashed in the registry).",
    no_args_is_help=True,
)


def _store(home: Path | None):
    from servekit.security.keys import KeyStore

    return KeyStore.at_home(home)


@keys_app.command("create")
def create_command(
    name: str = typer.Argument(..., help="A name for the key, e.g. who or what uses it."),
    scope: list[str] = typer.Option(
        ["predict"], "--scope", "-s", help="predict (call models) or admin; repeat for both."
    ),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the key and its record as JSON."),
) -> None:
    """Create an API key and print it, once: only its hash is stored."""
    with _store(home) as store:
        record, key = store.create(name, scope)
    if as_json:
        print_json({**_record_json(record), "key": key})
        return
    err_console.print(
        f"[green]created[/] API key {record.name} (id {record.id}, scopes: {', '.join(sorted(record.scopes))}); "
        "copy it now, it cannot be shown again:",
        highlight=False,
        soft_wrap=True,
    )
    print(key)  # alone on stdout, unwrapped: `KEY=$(servekit keys create ci)` works


@keys_app.command("list")
def list_command(
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the API keys (never the keys themselves), revoked ones included."""
    with _store(home) as store:
        records = store.list()
    if as_json:
        print_json([_record_json(r) for r in records])
        return
    if not records:
        console.print("no API keys yet: create one with `servekit keys create NAME`", highlight=False)
        return
    table = Table("id", "name", "scopes", "created", "revoked")
    for r in records:
        table.add_row(r.id, r.name, ", ".join(sorted(r.scopes)), _when(r.created_at), _when(r.revoked_at))
    console.print(table)


@keys_app.command("revoke")
def revoke_command(
    id_or_name: str = typer.Argument(..., metavar="ID_OR_NAME", help="The key's id, or the name of an active key."),
    home: Path | None = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the revoked key's record as JSON."),
) -> None:
    """Revoke an API key; running servers refuse it within their key cache TTL (5 s by default)."""
    with _store(home) as store:
        record = store.revoke(id_or_name)
    if as_json:
        print_json(_record_json(record))
    else:
        console.print(f"[green]revoked[/] API key {record.id} ({record.name})", highlight=False)


def _record_json(record) -> dict:
    return {
        "id": record.id,
        "name": record.name,
        "scopes": sorted(record.scopes),
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
