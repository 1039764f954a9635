"""ONNX models, run by onnxruntime on the CPU.

An ONNX file is a protobuf `ModelProto` with no magic number; every writer (onnx, skl2onnx,
torch.onnx, tf2onnx) serializes field 1 (`ir_version`) first, so the file starts with the varint
tag `0x08`, a small version number and the tag of the next field. That is what `sniff` checks.

Classifiers converted by skl2onnx have two outputs: a label tensor (int64 or string) and the
probabilities, either a float tensor `(n, k)` (`options={id(model): {"zipmap": False}}`) or,
by default, a ZipMap: a list of `{class: probability}` dicts. Regressors have one float output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from servekit.errors import ArtifactError, CorruptArtifact, InvalidManifest
from servekit.prediction import Prediction
from servekit.runtimes import register_runtime
from servekit.runtimes.base import ModelDescription, Runtime, import_optional
from servekit.signature import Batch, Feature, Signature

# Tags of the ModelProto fields that can follow `ir_version` (field number << 3 | wire type).
_NEXT_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA, 0xD2})
_MAX_IR_VERSION = 64
_TENSOR_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint64)": "uint64",
    "tensor(uint32)": "uint32",
    "tensor(uint16)": "uint16",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}
_LABEL_TYPES = frozenset({"tensor(int64)", "tensor(int32)", "tensor(string)"})
_FLOAT_TYPES = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_strings", "classlabels_ints")


def looks_like_onnx(head: bytes) -> bool:
    """True when `head` starts like a serialized ONNX `ModelProto`."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= _MAX_IR_VERSION and head[2] in _NEXT_FIELD_TAGS


@dataclass(frozen=True)
class _Input:
    name: str
    dtype: str  # a signature dtype: numpy name or "string"
    shape: tuple[Any, ...]

    @property
    def numpy_dtype(self) -> Any:
        return object if self.dtype == "string" else np.dtype(self.dtype)


@register_runtime
class OnnxRuntime(Runtime):
    """An ONNX model (`.onnx`), run by an `onnxruntime.InferenceSession` on the CPU.

    Options: `intra_op_threads` (default 1: the Runner parallelizes across requests).

    Classes come from the graph (the ZipMap or classifier node labels). When the graph has none,
    the manifest's classes are used, else the integer range `0..k-1` for `k` probability
    columns; labels are always the model's own label output.
    """

    format: ClassVar[str] = "onnx"
    extensions: ClassVar[tuple[str, ...]] = (".onnx",)
    extra: ClassVar[str | None] = "onnx"
    description: ClassVar[str] = "ONNX model run by onnxruntime (e.g. converted with skl2onnx)"

    def __init__(self, path: Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self.session: Any = None
        self._inputs: list[_Input] = []
        self._label_output: str | None = None
        self._proba_output: str | None = None
        self._value_output: str | None = None
        self._model_classes: list[Any] | None = None
        self._meta: dict[str, Any] = {}

    @classmethod
    def sniff(cls, path: Path, head: bytes, members: frozenset[str] | None) -> bool:
        return members is None and looks_like_onnx(head)

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        ort = import_optional("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.options.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: warnings are not the user's business
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors derive from Exception directly
            raise CorruptArtifact(
                f"{self.path.name} cannot be loaded by onnxruntime {ort.__version__} "
                f"({_one_line(exc)}); it is truncated, corrupt, or uses an unsupported operator",
                hint="Export the model again (e.g. skl2onnx.to_onnx) and check it with onnx.checker",
            ) from None
        self._inputs = [_read_input(i) for i in session.get_inputs()]
        self._check_inputs()
        self._read_outputs(session.get_outputs())
        meta = session.get_modelmeta()
        self._meta = {"producer": meta.producer_name, "producer_version": meta.version}
        self.session = session
        # The binding's own `run` skips the Python wrapper's per-call feed checks (~10 µs a call):
        # the feeds are built here from the model's own input list, so they always fit.
        binding = getattr(session, "_sess", None)
        self._run = (lambda names, feeds: binding.run(names, feeds, None)) if binding is not None else session.run
        if self._label_output is not None:
            recorded = self.options.get("classes")  # written by `servekit optimize` for this very file
            self._model_classes = list(recorded) if isinstance(recorded, list) and recorded else self._graph_classes()
            self._check_manifest_classes()

    def _check_inputs(self) -> None:
        if len(self._inputs) == 1:
            return
        for inp in self._inputs:
            if inp.shape[1:] not in ((), (1,)):
                raise ArtifactError(
                    f"ONNX models with {len(self._inputs)} inputs are supported only when every "
                    f"input is one column of shape [N, 1]; input {inp.name!r} has shape "
                    f"{list(inp.shape)}",
                    hint="Convert the model with a single input tensor",
                )

    def _read_outputs(self, outputs: list[Any]) -> None:
        self._label_output = self._proba_output = self._value_output = None
        for out in outputs:
            if out.type in _LABEL_TYPES and self._label_output is None:
                self._label_output = out.name
            elif out.type.startswith("seq(map(") and self._proba_output is None:
                self._proba_output = out.name
            elif out.type in _FLOAT_TYPES and self._value_output is None:
                self._value_output = out.name
        if self._label_output is not None and self._proba_output is None:
            self._proba_output = self._value_output  # the probability tensor (zipmap=False)
        if self._label_output is None and self._value_output is None:
            raise ArtifactError(
                f"{self.path.name} has no numeric or label output "
                f"(outputs: {', '.join(f'{o.name} {o.type}' for o in outputs)})",
                hint="servekit serves ONNX classifiers (label + probabilities) and regressors",
            )

    @property
    def graph_classes(self) -> list[Any] | None:
        """A classifier's labels as its graph states them (`None` when it does not)."""
        return self._model_classes

    def _graph_classes(self) -> list[Any] | None:
        """Class labels from the ZipMap node, else the last classifier node of the graph."""
        onnx = import_optional("onnx", "onnx")
        try:
            graph = onnx.load_model(str(self.path), load_external_data=False).graph
        except Exception:  # onnxruntime read it; a stricter parser's complaint is not fatal
            return None
        found: list[Any] | None = None
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.name in _CLASS_ATTRIBUTES:
                    value = onnx.helper.get_attribute_value(attribute)
                    labels = [v.decode() if isinstance(v, bytes) else int(v) for v in value]
                    if node.op_type == "ZipMap":
                        return labels
                    found = labels
        return found

    def _check_manifest_classes(self) -> None:
        k = self._n_classes()
        if self.classes is not None and k is not None and len(self.classes) != k:
            raise InvalidManifest(
                f"the manifest lists {len(self.classes)} classes but {self.path.name} predicts {k}",
                hint="Fix `classes` in servekit.yaml",
            )

    def _n_classes(self) -> int | None:
        if self._model_classes is not None:
            return len(self._model_classes)
        out = next((o for o in self.session.get_outputs() if o.name == self._proba_output), None)
        if out is not None and len(out.shape) == 2 and isinstance(out.shape[1], int):
            return int(out.shape[1])
        return None

    # -- description --------------------------------------------------------------------------
    def describe(self) -> ModelDescription:
        ort = import_optional("onnxruntime", "onnx")
        classifier = self._label_output is not None
        classes = None
        if classifier:
            k = self._n_classes()
            classes = self._model_classes or self.classes or (list(range(k)) if k else None)
        return ModelDescription(
            task="classification" if classifier else "regression",
            framework="onnxruntime",
            framework_version=str(ort.__version__),
            signature=self._signature(),
            classes=classes,
            extra={
                **self._meta,
                "inputs": [{"name": i.name, "type": i.dtype, "shape": list(i.shape)} for i in self._inputs],
            },
        )

    def _signature(self) -> Signature | None:
        if len(self._inputs) > 1:
            return Signature(tuple(Feature(i.name, i.dtype) for i in self._inputs), input_kind="frame", named=True)
        inp = self._inputs[0]
        dims = inp.shape[1:]
        if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
            return None  # a symbolic width: pack must be told
        width = math.prod(dims)
        if inp.dtype == "string":
            return Signature(tuple(Feature(f"x{i}", "string") for i in range(width)), input_kind="frame")
        row_shape = tuple(dims) if len(dims) > 1 else None
        return Signature(
            tuple(Feature(f"x{i}", inp.dtype) for i in range(width)),
            row_shape=row_shape,
            array_dtype=inp.dtype,
        )

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, batch: Batch) -> Prediction:
        feeds = self._feeds(batch)
        if self._label_output is None:
            (values,) = self._run([self._value_output], feeds)
            values = np.asarray(values, dtype="float64")
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            return Prediction(values)
        wanted = [self._label_output] + ([self._proba_output] if self._proba_output else [])
        results = self._run(wanted, feeds)
        labels = np.asarray(results[0]).reshape(-1)
        if len(results) == 1:
            return Prediction(labels)
        probabilities = self._probabilities(results[1])
        model_classes = self._model_classes or list(range(probabilities.shape[1]))
        classes = self.classes if self.classes is not None else model_classes
        if list(classes) != list(model_classes):
            labels = _rename(labels, model_classes, classes, probabilities)
        return Prediction(labels, probabilities, classes)

    def _probabilities(self, raw: Any) -> np.ndarray:
        if isinstance(raw, list):  # ZipMap: one {class: probability} dict per row
            keys = self._model_classes if self._model_classes is not None else list(raw[0])
            rows = [[row[k] for k in keys] for row in raw]
            return np.asarray(rows, dtype="float64").reshape(len(raw), len(keys))
        return np.asarray(raw, dtype="float64")

    def _feeds(self, batch: Batch) -> dict[str, np.ndarray]:
        if len(self._inputs) == 1:
            inp = self._inputs[0]
            array = batch.to_numpy() if hasattr(batch, "to_numpy") else np.asarray(batch)
            return {inp.name: array.astype(inp.numpy_dtype, copy=False)}
        feeds = {}
        for number, inp in enumerate(self._inputs):
            column = batch[inp.name] if hasattr(batch, "columns") else np.asarray(batch)[:, number]
            array = np.asarray(column).astype(inp.numpy_dtype, copy=False)
            feeds[inp.name] = array.reshape(-1, 1) if len(inp.shape) == 2 else array.reshape(-1)
        return feeds

    def unload(self) -> None:
        self.session = None

    def info(self) -> dict[str, Any]:
        return {**super().info(), **self._meta}


def _read_input(node: Any) -> _Input:
    dtype = _TENSOR_DTYPES.get(node.type)
    if dtype is None:
        raise ArtifactError(
            f"ONNX input {node.name!r} has type {node.type}, which servekit cannot feed",
            hint="servekit feeds numeric and string tensors",
        )
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)
    return _Input(node.name, dtype, shape)


def _rename(labels: np.ndarray, model: list[Any], manifest: list[Any], proba: np.ndarray) -> np.ndarray:
    """The model's labels under the manifest's names for its classes (same positions)."""
    position = {c: i for i, c in enumerate(model)}
    try:
        return np.asarray(manifest)[[position[label] for label in labels.tolist()]]
    except KeyError:  # labels that are not the assumed 0..k-1: fall back to the argmax
        return np.asarray(manifest)[proba.argmax(axis=1)]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
