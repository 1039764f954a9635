"""Where a served model comes from: a file, a bundle folder, or a registry reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from servekit.errors import ModelNotFound
from servekit.loading import load, load_bundle, served_variant
from servekit.predictor import Predictor
from servekit.settings import Settings

__all__ = ["ModelSource", "parse_source"]


@dataclass(frozen=True)
class ModelSource:
    """A model to serve, as the operator named it."""

    text: str
    path: Path | None = None
    name: str = ""
    alias: str | None = None
    version: int | None = None

    def load(self, settings: Settings, registry: Callable[[], Any]) -> Predictor:
        """Load the model (blocking: call from a thread)."""
        if self.path is not None:
            return load(self.path, trust=settings.trust, optimized=settings.optimized)
        found = registry().resolve(self.text if self.version is None else f"{self.name}:{self.version}")
        bundle = registry().bundle(found)
        return load_bundle(bundle, trust=settings.trust, verified_record=True, optimized=settings.optimized)

    def check(self, settings: Settings, registry: Callable[[], Any]) -> None:
        """Cheap checks before a server starts: the file's format is known and it may be
        loaded under the trust policy, or the registry reference resolves. Loads nothing."""
        if self.path is None:
            registry().bundle(registry().resolve(self.text))  # verifies the recorded sha256
            return
        from servekit.bundle import Bundle
        from servekit.formats import detect_format
        from servekit.runtimes import get_runtime
        from servekit.trust import authorize

        if self.path.is_dir():
            bundle = Bundle.read(self.path)
            bundle.verify()
            if served_variant(bundle, settings.optimized) is not None:
                return  # the ONNX variant will answer: it runs no code, so needs no trust
            runtime = get_runtime(bundle.manifest.format)(bundle.artifact_path, bundle.manifest.runtime_options)
        else:
            runtime = get_runtime(detect_format(self.path))(self.path)
        authorize(runtime, trust=settings.trust)

    def pinned(self, version: int) -> ModelSource:
        """The same registry model, at one exact version."""
        return replace(self, version=version)


def parse_source(text: str) -> ModelSource:
    """A path if it exists on disk, else a registry reference."""
    path = Path(text).expanduser()
    if path.exists():
        name = _name_of_path(path)
        return ModelSource(text, path=path, name=name)
    if "/" in text or text.endswith((".joblib", ".pkl", ".onnx", ".pt", ".keras", ".h5", ".skops")):
        raise ModelNotFound(f"{text} does not exist", hint="Give a model file, a bundle folder, or a registry ref")
    from servekit.refs import parse_ref

    ref = parse_ref(text)
    return ModelSource(text, name=ref.name, alias=ref.alias, version=ref.version)


def _name_of_path(path: Path) -> str:
    from servekit.bundle import MANIFEST_NAME, Manifest
    from servekit.packing import name_from_path

    manifest = path / MANIFEST_NAME
    if manifest.is_file():
        return Manifest.from_yaml(manifest.read_text(encoding="utf-8"), str(manifest)).name
    return name_from_path(path)
