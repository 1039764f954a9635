"""Open a model from a file, a bundle folder or a registry reference and load it.

`servekit.load(...)` is the Python API; the server and batch scoring call the same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.bundle import MANIFEST_NAME, Bundle
from servekit.errors import ModelNotFound
from servekit.packing import bundle_for_file
from servekit.predictor import Predictor
from servekit.runtimes import get_runtime
from servekit.trust import authorize

if TYPE_CHECKING:
    from servekit.registry import Registry

__all__ = ["load", "load_bundle"]


def load(
    source: str | Path,
    *,
    trust: bool = False,
    registry: Registry | None = None,
    home: str | Path | None = None,
    **pack_options: Any,
) -> Predictor:
    """Load a model for in-process predictions.

    `source` is a model file (`model.onnx`), a bundle folder, or a registry reference
    (`iris`, `iris:3`, `iris@production`). Pickle-based files need `trust=True` unless they come
    from the registry and match the sha256 recorded at push. `pack_options` (e.g. `n_features`)
    complete what a bare file cannot tell.
    """
    path = Path(source)
    if path.is_dir():
        bundle = Bundle.read(path)
        bundle.verify()
        return load_bundle(bundle, trust=trust)
    if path.is_file():
        bundle, runtime = bundle_for_file(path, trust=trust, **pack_options)
        return Predictor(bundle, runtime)
    if isinstance(source, Path) or "/" in str(source) or str(source).endswith(MANIFEST_NAME):
        raise ModelNotFound(f"{source} does not exist")
    from servekit.registry import Registry

    registry = registry or Registry(home)
    version = registry.resolve(str(source))
    bundle = registry.bundle(version)  # verifies every file against the sha256 recorded at push
    return load_bundle(bundle, trust=trust, verified_record=True)


def load_bundle(bundle: Bundle, *, trust: bool = False, verified_record: bool = False) -> Predictor:
    """Load a bundle whose files were already verified."""
    manifest = bundle.manifest
    runtime = get_runtime(manifest.format)(bundle.artifact_path, manifest.runtime_options)
    authorize(runtime, trust=trust, verified_record=verified_record)
    runtime.configure(bundle.signature, manifest.classes, manifest.task)
    runtime.load()
    return Predictor(bundle, runtime)
