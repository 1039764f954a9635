"""Entry point of the `servekit` command: every command module adds itself to `app`.

A `ServekitError` ends the command with one line on stderr and exit code 2; so does a usage
error. Tracebacks are shown only with `SERVEKIT_DEBUG=1`.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

import click
import typer
from rich.markup import escape

from servekit import __version__
from servekit.cli._output import err_console
from servekit.errors import ServekitError

app = typer.Typer(
    name="servekit",
    help="Put a trained machine-learning model into production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

_COMMAND_MODULES = (
    "servekit.cli.pack",
    "servekit.cli.registry",
    "servekit.cli.serve",
    "servekit.cli.optimize",
    "servekit.cli.logs",
    "servekit.cli.keys",
    "servekit.cli.drift",
    "servekit.cli.score",
    "servekit.cli.build",
    "servekit.cli.export",
)
EXIT_USAGE = 2


def _version(value: bool) -> None:
    if value:
        print(f"servekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Put a trained machine-learning model into production."""


for _module in _COMMAND_MODULES:
    import_module(_module).register(app)


def _usage_errors() -> tuple[type[Exception], ...]:
    """click's usage errors, and typer's own copies of them (typer 0.29 and later vendor click)."""
    found: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:
        pass
    else:
        found.append(TyperClickException)
    return tuple(found)


_USAGE_ERRORS = _usage_errors()
_ABORTS = (click.Abort, typer.Abort, KeyboardInterrupt)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 2 with one clear line on any servekit or usage error."""
    try:
        code = app(args=argv, standalone_mode=False)
    except ServekitError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.detail)}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except _USAGE_ERRORS as exc:
        context = getattr(exc, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context is not None else ""
        message = exc.format_message().replace("\n", " ")
        err_console.print(f"[bold red]error:[/] {escape(message)}{escape(where)}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except _ABORTS:
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("SERVEKIT_DEBUG"):
            raise
        err_console.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc} (set SERVEKIT_DEBUG=1 to see the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
