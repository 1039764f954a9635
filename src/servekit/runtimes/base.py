"""The `Runtime` interface every model format implements.

A runtime wraps one artifact file. It is synchronous and knows nothing of HTTP, threads or
batching: the Runner decides those. Heavy libraries are imported inside `load`, so that
registering every runtime costs nothing and a missing library fails only when it is needed,
with `MissingDependency` naming the extra to install.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

from servekit.errors import MissingDependency
from servekit.prediction import Prediction
from servekit.signature import Batch, Signature

__all__ = ["ModelDescription", "Runtime", "import_optional"]

Task = Literal["classification", "regression"]


@dataclass
class ModelDescription:
    """What a loaded model tells about itself; `pack` turns it into a manifest.

    `signature` is `None` when the model cannot tell its input width (e.g. a torch module):
    packing then asks for it explicitly.
    """

    task: Task
    framework: str
    framework_version: str
    signature: Signature | None = None
    classes: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    """Loads one artifact of one format and predicts on canonical batches.

    Subclasses set `format` (the manifest's `format` value), `extensions` (file suffixes that
    suggest it) and `extra` (the `pip install servekit[extra]` that brings its library), and
    register themselves with `@register_runtime`.
    """

    format: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.options: dict[str, Any] = dict(options or {})
        self.signature: Signature | None = None
        self.classes: list[Any] | None = None
        self.task: Task | None = None
        self.trusted = False
        """Set by the loader when the operator vouched for the file (`--trust`)."""

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        """True when the file's content says it is in this format.

        `head` is the first bytes of the file; `members` the names inside it when it is a zip
        archive (skops, .keras, torch files), else `None`.
        """
        return False

    def needs_trust(self) -> bool:
        """True when loading this artifact can execute arbitrary code (pickle-based files)."""
        return False

    def configure(self, signature: Signature | None, classes: list[Any] | None, task: Task | None) -> None:
        """Give the runtime what the manifest knows before `load` (used by tensor runtimes)."""
        self.signature = signature
        self.classes = classes
        self.task = task

    @abstractmethod
    def load(self) -> None:
        """Read the artifact into memory; raise `CorruptArtifact` when it cannot be read."""

    @abstractmethod
    def predict(self, batch: Batch) -> Prediction:
        """Predict on a batch produced by the model's `Signature`."""

    @abstractmethod
    def describe(self) -> ModelDescription:
        """After `load`: the task, classes, signature and framework the model reveals."""

    def unload(self) -> None:
        """Free the model's memory; the runtime may be loaded again."""
        return None

    def info(self) -> dict[str, Any]:
        """Facts about the loaded runtime for metadata endpoints."""
        return {"format": self.format, "path": self.path.name}


ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def quiet_onnxruntime() -> None:
    """Keep ONNX Runtime from sending usage telemetry. Its official builds do so on Linux and macOS
    too (a process event, then session, model and runtime events) and keep a device id and an
    offline event store under `~/.cache/Microsoft`; a model server should not report on the models
    it serves. Off unless the operator set `ORT_DISABLE_TELEMETRY` themselves; onnxruntime reads
    it once, when it is first imported in the process."""
    os.environ.setdefault(ORT_TELEMETRY_ENV, "1")


def import_optional(module: str, extra: str | None) -> ModuleType:
    """Import a library a format needs, or raise `MissingDependency` naming the extra."""
    if module.partition(".")[0] == "onnxruntime":
        quiet_onnxruntime()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = f"pip install 'servekit[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependency(
            f"this model needs the Python package {module!r}, which cannot be imported ({exc})",
            hint=f"Install it with: {install}",
        ) from None
