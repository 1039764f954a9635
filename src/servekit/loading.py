"""Open a model from a file, a bundle folder or a registry reference and load it.

`servekit.load(...)` is the Python API; the server and batch scoring call the same functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.bundle import MANIFEST_NAME, Bundle
from servekit.errors import ModelNotFound, ServekitError
from servekit.packing import bundle_for_file
from servekit.predictor import Predictor
from servekit.runtimes import get_runtime
from servekit.trust import authorize

if TYPE_CHECKING:
    from servekit.registry import Registry

__all__ = ["DEFAULT_VARIANT", "load", "load_bundle"]

DEFAULT_VARIANT = "onnx"
"""The variant `optimized=True` serves when the bundle has it (see `servekit.optimize`)."""
logger = logging.getLogger("servekit.loading")


def load(
    source: str | Path,
    *,
    trust: bool = False,
    registry: Registry | None = None,
    home: str | Path | None = None,
    optimized: bool | str = True,
    **pack_options: Any,
) -> Predictor:
    """Load a model for in-process predictions.

    `source` is a model file (`model.onnx`), a bundle folder, or a registry reference
    (`iris`, `iris:3`, `iris@production`). Pickle-based files need `trust=True` unless they come
    from the registry and match the sha256 recorded at push. `pack_options` (e.g. `n_features`)
    complete what a bare file cannot tell. `optimized` chooses the bundle's verified variant
    over the original artifact (see `load_bundle`).
    """
    path = Path(source)
    if path.is_dir():
        bundle = Bundle.read(path)
        bundle.verify()
        return load_bundle(bundle, trust=trust, optimized=optimized)
    if path.is_file():
        bundle, runtime = bundle_for_file(path, trust=trust, **pack_options)
        return Predictor(bundle, runtime)
    if isinstance(source, Path) or "/" in str(source) or str(source).endswith(MANIFEST_NAME):
        raise ModelNotFound(f"{source} does not exist")
    from servekit.registry import Registry

    registry = registry or Registry(home)
    version = registry.resolve(str(source))
    bundle = registry.bundle(version)  # verifies every file against the sha256 recorded at push
    return load_bundle(bundle, trust=trust, verified_record=True, optimized=optimized)


def load_bundle(
    bundle: Bundle, *, trust: bool = False, verified_record: bool = False, optimized: bool | str = True
) -> Predictor:
    """Load a bundle whose files were already verified.

    `optimized=True` serves the bundle's `onnx` variant when it has one (ONNX runs no code, so
    it needs no trust); a string names another variant (e.g. `onnx-int8`); `False` always
    loads the original. A variant that is missing or fails to load is logged and the original
    is loaded instead.
    """
    variant = DEFAULT_VARIANT if optimized is True else optimized or None
    if variant is not None:
        predictor = _load_variant(bundle, variant, trust=trust, verified_record=verified_record)
        if predictor is not None:
            return predictor
    manifest = bundle.manifest
    runtime = get_runtime(manifest.format)(bundle.artifact_path, manifest.runtime_options)
    authorize(runtime, trust=trust, verified_record=verified_record)
    runtime.configure(bundle.signature, manifest.classes, manifest.task)
    runtime.load()
    return Predictor(bundle, runtime)


def served_variant(bundle: Bundle, optimized: bool | str) -> str | None:
    """The variant `load_bundle` will try for these options, if the bundle has it."""
    variant = DEFAULT_VARIANT if optimized is True else optimized or None
    return variant if variant in bundle.manifest.variants else None


def _load_variant(bundle: Bundle, variant: str, *, trust: bool, verified_record: bool) -> Predictor | None:
    """The variant's predictor, or `None` (logged) when it is absent or cannot be loaded."""
    manifest = bundle.manifest
    entry = manifest.variants.get(variant)
    if entry is None:
        if variant != DEFAULT_VARIANT:
            logger.warning("%s has no %r variant; serving the original artifact", manifest.name, variant)
        return None
    artifact = str(entry.get("artifact", ""))
    try:
        if not artifact or artifact not in manifest.files or Path(artifact).name != artifact:
            raise ServekitError(f"its file {artifact!r} is not among the files the manifest records")
        options = entry.get("runtime_options") or {}
        runtime = get_runtime(str(entry.get("format", "onnx")))(bundle.path / artifact, options)
        if runtime.needs_trust():
            raise ServekitError(f"its {runtime.format} file would run code when loaded")
        authorize(runtime, trust=trust, verified_record=verified_record)
        runtime.configure(bundle.signature, manifest.classes, manifest.task)
        runtime.load()
    except Exception as exc:  # any failure falls back to the original, which is the reference
        detail = exc.detail if isinstance(exc, ServekitError) else f"{type(exc).__name__}: {exc}"
        logger.warning(
            "%s: cannot load the %r variant (%s); serving the original artifact", manifest.name, variant, detail
        )
        return None
    return Predictor(bundle, runtime, variant=variant)
