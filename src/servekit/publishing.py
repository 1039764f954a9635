"""`push`: put a bundle folder or a bare model file into the registry.

Pushing is the act of trust for pickle-based formats: the registry records the file's sha256,
and later loads of exactly that file need no `--trust`. So pushing such a file requires
`trust=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from servekit.bundle import Bundle
from servekit.packing import pack
from servekit.runtimes import get_runtime
from servekit.trust import authorize

if TYPE_CHECKING:
    from servekit.registry import RegisteredVersion, Registry

__all__ = ["push"]


def push(
    registry: Registry,
    source: Path | str,
    *,
    name: str | None = None,
    trust: bool = False,
    scratch: Path | None = None,
    **pack_options: Any,
) -> RegisteredVersion:
    """Push `source` (a bundle folder, or a model file packed on the fly into `scratch`)."""
    source = Path(source)
    if source.is_dir():
        bundle = Bundle.read(source)
        bundle.verify()
        runtime = get_runtime(bundle.manifest.format)(bundle.artifact_path, bundle.manifest.runtime_options)
        authorize(runtime, trust=trust)  # refuses an unvouched pickle before it is recorded as trusted
    else:
        if scratch is None:
            raise ValueError("pushing a bare file needs a scratch folder")
        bundle = pack(source, name=name, output=scratch / "bundle", trust=trust, **pack_options)
    return registry.push(bundle, name=name)
