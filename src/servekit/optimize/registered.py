"""Optimizing a registry version. Versions never change, so the variant goes into a NEW
version: the stored bundle is copied to a scratch folder, optimized there and pushed. Aliases
do not move; promote the new version when it suits you."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.bundle import MANIFEST_NAME, Bundle
from servekit.optimize import OptimizeReport, optimize_bundle

if TYPE_CHECKING:
    from servekit.registry import RegisteredVersion, Registry

__all__ = ["optimize_registered"]


def optimize_registered(
    registry: Registry, ref: str, *, scratch: Path, **options: Any
) -> tuple[OptimizeReport, RegisteredVersion, RegisteredVersion | None]:
    """Optimize the version `ref` names; returns the report, that version, and the new version
    pushed with the variant (`None` when nothing was stored, so nothing was pushed).

    `options` are those of `optimize_bundle` but `verified_record`: the copy is checked against
    the sha256 the registry recorded at push, which vouches for a pickle-based artifact.
    """
    found = registry.resolve(ref)
    stored = registry.bundle(found)  # verifies every file against its record
    copy = Path(scratch) / "bundle"
    copy.mkdir(parents=True)
    for relative in [*found.files, MANIFEST_NAME]:
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stored.path / relative, copy / relative)
    bundle = Bundle(copy, stored.manifest.model_copy(deep=True, update={"version": None}))
    bundle.verify(found.files)
    report = optimize_bundle(bundle, verified_record=True, **options)
    if not report.stored:
        return report, found, None
    return report, found, registry.push(bundle, name=found.name)
