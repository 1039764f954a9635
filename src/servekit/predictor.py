"""`Predictor`: one loaded model version — the single predict path that the Python API, the
server's Runner and batch scoring all use."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from servekit.bundle import Bundle, Manifest
from servekit.errors import InvalidInput, PredictionFailed, ServekitError
from servekit.prediction import Prediction
from servekit.runtimes import Runtime
from servekit.signature import Batch, Signature

__all__ = ["Predictor"]

logger = logging.getLogger("servekit.predictor")


class Predictor:
    """A model version loaded into memory, with its manifest and input signature."""

    def __init__(self, bundle: Bundle, runtime: Runtime, *, variant: str | None = None) -> None:
        self.bundle = bundle
        self.runtime = runtime
        self.variant = variant
        """The manifest variant answering (e.g. `onnx`), or `None` for the original artifact."""
        self.signature: Signature = bundle.signature

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int | None:
        return self.manifest.version

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def classes(self) -> list[Any] | None:
        return self.manifest.classes

    def batch(self, payload: Any) -> Batch:
        """Validate any accepted input shape into a batch (raises `InvalidInput`)."""
        if type(payload) is not list and hasattr(payload, "columns") and hasattr(payload, "iloc"):
            return self.signature.batch_from_frame(payload)
        return self.signature.batch(payload)

    def predict(self, payload: Any) -> Prediction:
        """Predict on one row, many rows (lists or mappings), a numpy array or a DataFrame."""
        return self.predict_batch(self.batch(payload))

    def predict_batch(self, batch: Batch) -> Prediction:
        """Predict on a batch already produced by the signature."""
        try:
            prediction = self.runtime.predict(batch)
        except ServekitError:
            raise
        except Exception as exc:
            logger.exception("model %s version %s failed to predict", self.name, self.version)
            raise PredictionFailed(f"the model raised {type(exc).__name__} while predicting") from exc
        _check_finite(prediction)
        return prediction

    def metadata(self) -> dict[str, Any]:
        """Manifest facts for metadata endpoints (no file paths, no profile)."""
        data = self.manifest.model_dump(mode="json", exclude={"profile", "files", "runtime_options"})
        data["runtime"] = self.runtime.format
        data["variant"] = self.variant
        return data

    def close(self) -> None:
        """Unload the model."""
        self.runtime.unload()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        variant = f", variant {self.variant}" if self.variant else ""
        return f"<Predictor {self.name} v{self.version} ({self.runtime.format}{variant})>"


def _check_finite(prediction: Prediction) -> None:
    """`InvalidInput` when an output or probability is NaN or infinite (JSON would carry null)."""
    for values in (prediction.outputs, prediction.probabilities):
        # One sum is finite exactly when every value is, unless huge values overflow it: then look.
        if (
            values is not None
            and values.dtype.kind == "f"
            and not (math.isfinite(values.sum()) or np.isfinite(values).all())
        ):
            row = int(np.argwhere(~np.isfinite(values))[0][0])
            raise InvalidInput(
                f"the model's output for row {row} is not a finite number",
                hint="The input is probably far outside the range the model was trained on",
            )
