"""`build`: resolve the model, decide the context, render the target, write the folder."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from servekit.deploy.context import DeployContext, check_image, check_requirement, context_for
from servekit.deploy.model import resolve_model
from servekit.deploy.targets import Target, get_target
from servekit.deploy.wheel import servekit_source, source_checkout
from servekit.deploy.write import Written, check_output, monitoring_assets, write_build

__all__ = ["BuildResult", "build"]


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote and what to run next."""

    target: Target
    context: DeployContext
    written: Written
    commands: list[str]


def build(
    target_name: str,
    model: str,
    output: Path,
    *,
    trust: bool = False,
    home: Path | None = None,
    image: str | None = None,
    port: int | None = None,
    base_image: str | None = None,
    mount_model: bool = False,
    replicas: int | None = None,
    requirements: tuple[str, ...] = (),
    servekit_wheel: Path | None = None,
    from_pypi: bool = False,
    force: bool = False,
) -> BuildResult:
    """Write everything `target_name` needs to deploy `model` into `output`.

    `model` is a bundle folder, a model file (packed on the fly) or a registry reference.
    """
    target = get_target(target_name)
    for reference, option in ((image, "--image"), (base_image, "--base-image")):
        if reference is not None:
            check_image(reference, option)
    requirements = tuple(check_requirement(line) for line in requirements)
    output = Path(output)
    check_output(output, force=force)  # before any slow step
    with tempfile.TemporaryDirectory(prefix="servekit-build-") as scratch:
        resolved = resolve_model(model, trust=trust, home=home, scratch=Path(scratch))
        ctx = context_for(  # refuses an untrusted pickle before the slow wheel build
            resolved.bundle,
            trusted=resolved.trusted,
            image=image,
            port=port,
            base_image=base_image,
            mount_model=mount_model,
            replicas=replicas,
            extra_requirements=tuple(requirements) or None,
        )
        source = servekit_source(wheel=servekit_wheel, pypi=from_pypi, scratch=Path(scratch))
        ctx = ctx.with_options(
            servekit_version=source.version, servekit_wheel=source.wheel.name if source.wheel else None
        )
        ctx = target.context(ctx)
        files = target.render(ctx)
        written = write_build(
            output,
            files,
            bundle=resolved.bundle,
            model_name=ctx.name,
            wheel=source.wheel,
            executables=target.executables,
            assets=monitoring_assets(source_checkout()) if target.monitoring else None,
            force=force,
        )
    return BuildResult(target, ctx, written, target.commands(ctx, str(output)))
