"""The model a build deploys: a bundle folder, a bare model file (packed now), or a registry ref."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servekit.bundle import MANIFEST_NAME, Bundle
from servekit.errors import InvalidName
from servekit.refs import validate_name
from servekit.registry.store import safe_relative
from servekit.sources import parse_source

__all__ = ["ResolvedModel", "bundle_files", "resolve_model"]


@dataclass(frozen=True)
class ResolvedModel:
    """A verified bundle and whether its pickle-based artifact, if any, may be served."""

    bundle: Bundle
    trusted: bool
    origin: str
    """What the user named, for messages."""


def resolve_model(ref: str, *, trust: bool, home: Path | None, scratch: Path) -> ResolvedModel:
    """Open `ref` as a bundle whose files match their recorded sha256.

    A bare model file is packed into `scratch` (pickle-based ones need `trust`, as for
    `servekit pack`). A registry reference is trusted: its files were just checked against the
    sha256 recorded when it was pushed.
    """
    source = parse_source(ref)
    if source.path is not None and source.path.is_dir():
        bundle = Bundle.read(source.path)
        bundle.verify()
        _check_name(bundle)
        return ResolvedModel(bundle, trust, ref)
    if source.path is not None:
        from servekit.packing import pack

        packed = pack(source.path, output=scratch / "packed" / source.name, trust=trust, force=True)
        return ResolvedModel(packed, trust, ref)
    from servekit.registry import Registry

    with Registry(home) as registry:
        bundle = registry.bundle(registry.resolve(ref))
    return ResolvedModel(bundle, True, ref)


def _check_name(bundle: Bundle) -> None:
    """The name becomes a folder (`models/NAME`) and reaches shells and YAML: a manifest edited
    by hand to, say, `../../x` must not write outside the build folder."""
    try:
        validate_name(bundle.manifest.name)
    except InvalidName as exc:
        raise InvalidName(
            f"{bundle.path / MANIFEST_NAME} names the model {bundle.manifest.name!r}, which is not a valid model name",
            hint=exc.hint,
        ) from None


def bundle_files(bundle: Bundle) -> list[str]:
    """The manifest and every file it records, as relative POSIX paths (nothing else is shipped)."""
    for relative in bundle.manifest.files:
        safe_relative(relative)
    return [MANIFEST_NAME, *sorted(bundle.manifest.files)]
