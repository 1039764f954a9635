"""`servekit build TARGET MODEL -o DIR`: deployment files for a model, and the commands to ship it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from servekit.cli._output import console, err_console

TARGETS_HELP = "docker, heroku, lambda, cloudrun, azure or k8s."


def build_command(
    target: str = typer.Argument(..., help=f"Where to deploy: {TARGETS_HELP}"),
    model: str = typer.Argument(
        ..., help="Bundle folder, model file, or registry ref (name, name:3, name@production)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Build folder (default: ./NAME-TARGET)."),
    image: str | None = typer.Option(
        None, "--image", help="Image reference the manifests deploy, e.g. REGISTRY/servekit-iris:1."
    ),
    port: int | None = typer.Option(None, "--port", "-p", min=1, max=65535, help="Container port (default 8080)."),
    base_image: str | None = typer.Option(
        None, "--base-image", help="Default of the Dockerfile's BASE_IMAGE (default: the official slim Python one)."
    ),
    mount_model: bool = typer.Option(
        False, "--mount-model", help="docker: mount the bundle at run time instead of copying it into the image."
    ),
    replicas: int | None = typer.Option(None, "--replicas", min=1, help="k8s: replicas (default 2)."),
    requirement: list[str] | None = typer.Option(
        None, "--requirement", "-r", help="Extra pip requirement, e.g. 'psycopg\\[binary]' (repeatable)."
    ),
    trust: bool = typer.Option(False, "--trust", help="Vouch for a pickle-based model: the server will load it."),
    home: Path | None = typer.Option(None, "--home", help="Registry home, for registry refs."),
    servekit_wheel: Path | None = typer.Option(
        None, "--servekit-wheel", help="Install servekit from this wheel (shipped in the build folder)."
    ),
    from_pypi: bool = typer.Option(
        False, "--from-pypi", help="Install the released servekit from PyPI even when running from source."
    ),
    force: bool = typer.Option(False, "--force", help="Replace the build folder if it exists."),
) -> None:
    """Write the files that deploy MODEL to TARGET, then print the commands that ship it."""
    from servekit.deploy import build, get_target
    from servekit.sources import parse_source

    get_target(target)  # an unknown target fails before anything else
    folder = output if output is not None else Path(f"{parse_source(model).name}-{target}")
    result = build(
        target,
        model,
        folder,
        trust=trust,
        home=home,
        image=image,
        port=port,
        base_image=base_image,
        mount_model=mount_model,
        replicas=replicas,
        requirements=tuple(requirement or ()),
        servekit_wheel=servekit_wheel,
        from_pypi=from_pypi,
        force=force,
    )
    ctx = result.context
    installed = f"wheel {ctx.servekit_wheel}" if ctx.servekit_wheel else f"servekit=={ctx.servekit_version} from PyPI"
    console.print(
        escape(
            f"wrote {len(result.written.files)} files for {result.target.title} to {folder} "
            f"(model {ctx.name}, {ctx.format}; {installed})"
        ),
        highlight=False,
        soft_wrap=True,
    )
    for missing in result.written.missing_assets:
        err_console.print(
            escape(f"note: no {missing} to ship yet; the compose stack starts without it"),
            highlight=False,
            soft_wrap=True,
        )
    console.print("next:", highlight=False)
    for line in result.commands:
        console.print(escape(f"  {line}"), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("build")(build_command)
