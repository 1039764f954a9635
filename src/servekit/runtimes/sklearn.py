"""pickle and joblib files (any joblib compression) holding an estimator-like object.

Unpickling runs code, so these runtimes always need trust (see `servekit.trust`).
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path
from typing import Any, ClassVar

from servekit.errors import CorruptArtifact, MissingDependency
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes._estimator import check_estimator, describe_estimator, predict_estimator
from servekit.runtimes.base import ModelDescription, Runtime
from servekit.signature import Batch

# joblib's compressors: zlib, gzip, bz2, xz, lzma, lz4.
_COMPRESSED_MAGIC = (
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"\x5d\x00\x00",
    b"\x04\x22\x4d\x18",
)


class _PickledEstimator(Runtime):
    """An estimator saved with `pickle.dump` or `joblib.dump`."""

    def needs_trust(self) -> bool:
        return True

    def load(self) -> None:
        self.model = check_estimator(load_pickled(self.path), self.path.name)

    def predict(self, batch: Batch) -> Prediction:
        return predict_estimator(self.model, batch, self.classes)

    def describe(self) -> ModelDescription:
        return describe_estimator(self.model)

    def unload(self) -> None:
        self.model = None


def load_pickled(path: Path) -> Any:
    """joblib.load (which reads plain pickles too), with errors that say what went wrong."""
    import joblib

    try:
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        raise MissingDependency(
            f"{path.name} was pickled with the Python package {exc.name!r}, which is not installed",
            hint=f"Install the package the model was trained with (pip install {exc.name})",
        ) from None
    except (
        EOFError,
        pickle.UnpicklingError,
        zlib.error,
        ValueError,
        IndexError,
        KeyError,
        AttributeError,
        TypeError,
        OSError,
    ) as exc:
        raise CorruptArtifact(
            f"{path.name} cannot be unpickled ({type(exc).__name__}: {exc}); it is truncated, "
            "corrupt, or was saved by an incompatible library version",
            hint="Save the model again with joblib.dump or pickle.dump",
        ) from None


def is_pickle(head: bytes) -> bool:
    """A pickle of protocol 2 or later starts with PROTO (0x80) and the protocol number."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


@register_runtime
class PickleRuntime(_PickledEstimator):
    format: ClassVar[str] = "pickle"
    extensions: ClassVar[tuple[str, ...]] = (".pkl", ".pickle")
    description: ClassVar[str] = "Python pickle of a scikit-learn-compatible estimator"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return is_pickle(head) and path.suffix.lower() in cls.extensions


@register_runtime
class JoblibRuntime(_PickledEstimator):
    format: ClassVar[str] = "joblib"
    extensions: ClassVar[tuple[str, ...]] = (".joblib",)
    description: ClassVar[str] = "joblib dump (plain or compressed) of a scikit-learn-compatible estimator"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        if is_pickle(head):
            return path.suffix.lower() not in PickleRuntime.extensions
        return members is None and head.startswith(_COMPRESSED_MAGIC)
