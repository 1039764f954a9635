"""Writing a verified variant into a bundle folder: its file, its sha256, its manifest entry.

The variant file is moved into place with `os.replace`, then the manifest is rewritten through
a temporary file and a rename, so a reader sees the old manifest or the new one, never half.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servekit.bundle import MANIFEST_NAME, Bundle, sha256_file

__all__ = ["scratch_file", "store_variant", "variant_file_name", "write_manifest_atomically"]


def variant_file_name(bundle: Bundle, wanted: str) -> str:
    """`wanted` (e.g. `model.onnx`), unless the original artifact has that name."""
    if wanted != bundle.manifest.artifact:
        return wanted
    stem, _, suffix = wanted.rpartition(".")
    return f"{stem}.variant.{suffix}"


def scratch_file(bundle: Bundle, name: str) -> Path:
    """An empty hidden file in the bundle folder (same file system, so it can be renamed in),
    with the permissions of the bundle's artifact rather than mkstemp's owner-only ones."""
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=bundle.path)
    os.close(handle)
    shutil.copymode(bundle.artifact_path, path)
    return Path(path)


def store_variant(bundle: Bundle, variant: str, scratch: Path, artifact: str, facts: dict[str, Any]) -> None:
    """Move `scratch` to `artifact` and record it in the manifest as `variant`."""
    target = bundle.path / artifact
    os.replace(scratch, target)
    manifest = bundle.manifest
    manifest.files[artifact] = sha256_file(target)
    manifest.variants[variant] = {
        "artifact": artifact,
        "format": "onnx",
        **facts,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_manifest_atomically(bundle)


def write_manifest_atomically(bundle: Bundle) -> None:
    """Rewrite `servekit.yaml` via a temporary file in the same folder and a rename."""
    scratch = scratch_file(bundle, MANIFEST_NAME)
    try:
        scratch.write_text(bundle.manifest.to_yaml(), encoding="utf-8")
        os.replace(scratch, bundle.path / MANIFEST_NAME)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
