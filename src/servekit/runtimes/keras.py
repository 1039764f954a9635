"""Keras 3 models: the `.keras` zip format and the legacy HDF5 `.h5` format.

Keras runs on its torch backend (`KERAS_BACKEND=torch`, set before keras is first imported,
unless the environment chose another backend). Models load with `safe_mode=True`; a model with
a `Lambda` layer holding Python bytecode would run that code when loaded, so such a file needs
trust like a pickle, and loads with `safe_mode=False` only once trusted.

The task comes from the last layer: a softmax or sigmoid activation makes a classifier whose
outputs are probabilities (one sigmoid unit is the probability of class 1); anything else
makes a regressor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from servekit.errors import ArtifactError, CorruptArtifact, UntrustedArtifact
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes.base import ModelDescription, Runtime, Task, import_optional
from servekit.runtimes.torch import tensor_prediction
from servekit.signature import Batch, Signature

__all__ = ["KerasH5Runtime", "KerasRuntime"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_PROBABILITY_ACTIVATIONS = frozenset({"softmax", "sigmoid"})


def import_keras() -> Any:
    """keras, on the torch backend unless `KERAS_BACKEND` says otherwise."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return import_optional("keras", "keras")


class _KerasModel(Runtime):
    """What both Keras file formats share once the model is in memory."""

    extra: ClassVar[str | None] = "keras"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self.model: Any = None
        self._activation: str | None = None
        self._needs_trust: bool | None = None

    def needs_trust(self) -> bool:
        """True when the model's config holds a Python lambda (a `Lambda` layer)."""
        if self._needs_trust is None:
            self._needs_trust = _has_python_lambda(self._read_config())
        return self._needs_trust

    def _read_config(self) -> Any:
        """The model's architecture as stored in the file, or `None` when it cannot be read."""
        raise NotImplementedError

    def load(self) -> None:
        keras = import_keras()
        safe_mode = not self.needs_trust()
        try:
            model = keras.saving.load_model(str(self.path), compile=False, safe_mode=safe_mode)
        except ValueError as exc:
            if "safe_mode" in str(exc):
                raise UntrustedArtifact(
                    f"{self.path.name} contains Python code (a Lambda layer) that would run when the model is loaded",
                    hint="Replace the Lambda layer with a registered custom layer, or load it "
                    "only if you trust its source (--trust)",
                ) from None
            raise self._corrupt(exc) from None
        except Exception as exc:  # keras, h5py and zipfile raise many types for a bad file
            raise self._corrupt(exc) from None
        inputs = getattr(model, "inputs", None) or []
        if len(inputs) > 1:
            raise ArtifactError(
                f"{self.path.name} is a model with {len(inputs)} inputs; servekit serves models that take one tensor",
                hint="Concatenate the inputs into one tensor in the model",
            )
        self.model = model
        self._activation = _final_activation(model)

    def _corrupt(self, exc: BaseException, *, hint: str | None = None) -> CorruptArtifact:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if any(marker in text.lower() for marker in ("could not locate", "unknown layer", "unknown object")):
            hint = hint or (
                "The model uses a custom layer or function: import the module that defines it "
                "(decorated with @keras.saving.register_keras_serializable) before loading"
            )
        return CorruptArtifact(
            f"{self.path.name} cannot be loaded as a Keras model ({type(exc).__name__}: {text})",
            hint=hint
            or "The file is truncated or corrupt, or holds only weights; save the "
            "whole model again with model.save(...)",
        )

    @property
    def _task(self) -> Task:
        if self.task is not None:
            return self.task
        return "classification" if self._activation in _PROBABILITY_ACTIVATIONS else "regression"

    def predict(self, batch: Batch) -> Prediction:
        import keras

        x = np.ascontiguousarray(batch, dtype=self._input_dtype())
        with _no_grad():
            out = self.model(x, training=False)
        if isinstance(out, list | tuple):
            out = out[0]
        scores = keras.ops.convert_to_numpy(out)
        task = self._task
        if task == "classification" and not self._outputs_probabilities():
            scores = _to_probabilities(scores)
        return tensor_prediction(scores, task, self.classes)

    def _outputs_probabilities(self) -> bool:
        output = self.options.get("output")
        if output is not None:
            return output == "probabilities"
        return self._activation in _PROBABILITY_ACTIVATIONS

    def _input_dtype(self) -> str:
        dtype = str(getattr(self.model.inputs[0], "dtype", "float32")) if _has_inputs(self.model) else ""
        return dtype if dtype.startswith("float") else "float32"

    def describe(self) -> ModelDescription:
        import keras

        task = self._task
        classes = self.classes
        k = _output_units(self.model)
        if task == "classification" and classes is None and k is not None:
            classes = list(range(k)) if k > 1 else [0, 1]
        return ModelDescription(
            task=task,
            framework="keras",
            framework_version=str(keras.__version__),
            signature=self._signature() or self.signature,
            classes=classes,
            extra={"backend": keras.backend.backend(), "final_activation": self._activation},
        )

    def _signature(self) -> Signature | None:
        if not _has_inputs(self.model):
            return None
        shape = tuple(self.model.inputs[0].shape)[1:]
        if not shape or any(d is None for d in shape):
            return None
        row_shape = tuple(int(d) for d in shape)
        return Signature.positional(
            math.prod(row_shape),
            row_shape=row_shape if len(row_shape) > 1 else None,
            array_dtype=self._input_dtype(),
        )

    def unload(self) -> None:
        self.model = None


@register_runtime
class KerasRuntime(_KerasModel):
    """A model saved with `model.save("model.keras")` (a zip of config, metadata and weights)."""

    format: ClassVar[str] = "keras"
    extensions: ClassVar[tuple[str, ...]] = (".keras",)
    description: ClassVar[str] = "Keras 3 model (.keras)"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return bool(members) and {"config.json", "metadata.json"} <= members  # type: ignore[operator]

    def _read_config(self) -> Any:
        try:
            with zipfile.ZipFile(self.path) as archive:
                return json.loads(archive.read("config.json"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None  # `load` reports the broken file


@register_runtime
class KerasH5Runtime(_KerasModel):
    """A model saved in the legacy HDF5 format (`model.save("model.h5")`, tf.keras 2 or Keras 3)."""

    format: ClassVar[str] = "keras-h5"
    extensions: ClassVar[tuple[str, ...]] = (".h5", ".hdf5")
    description: ClassVar[str] = "Keras model in the legacy HDF5 format (.h5)"

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return head.startswith(HDF5_MAGIC)

    def _read_config(self) -> Any:
        h5py = import_optional("h5py", self.extra)
        try:
            with h5py.File(self.path, "r") as handle:
                config = handle.attrs.get("model_config")
        except (OSError, ValueError) as exc:
            raise self._corrupt(exc) from None
        if isinstance(config, bytes):
            config = config.decode("utf-8", "replace")
        try:
            return json.loads(config) if isinstance(config, str) else None
        except ValueError:
            return None

    def load(self) -> None:
        if self._read_config() is None:
            raise CorruptArtifact(
                f"{self.path.name} is an HDF5 file without a Keras model config (only weights, or not a Keras file)",
                hint="Save the whole model with model.save('model.keras'), not save_weights",
            )
        super().load()


def _has_python_lambda(config: Any) -> bool:
    """Whether a Keras config holds a lambda serialized as bytecode (Keras 3 or tf.keras 2)."""
    if isinstance(config, dict):
        if config.get("class_name") == "__lambda__" or config.get("function_type") == "lambda":
            return True
        return any(_has_python_lambda(v) for v in config.values())
    if isinstance(config, list):
        return any(_has_python_lambda(v) for v in config)
    return False


def _final_activation(model: Any) -> str | None:
    """The name of the activation applied last (`softmax`, `sigmoid`, `linear`, …)."""
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if getattr(last, "layers", None):
        return _final_activation(last)
    if type(last).__name__ == "Softmax":
        return "softmax"
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def _output_units(model: Any) -> int | None:
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return None
    last = outputs[0].shape[-1]
    return int(last) if last is not None else None


def _has_inputs(model: Any) -> bool:
    try:
        return bool(model.inputs)
    except AttributeError:  # a subclassed or never-built model
        return False


def _to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax over logits (sigmoid for one column), in the scores' own precision."""
    scores = scores.reshape(scores.shape[0], -1)
    if scores.shape[1] == 1:
        return 0.5 * (1 + np.tanh(scores / 2))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _no_grad() -> contextlib.AbstractContextManager[Any]:
    """torch.no_grad on the torch backend: inference needs no autograd graph."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
