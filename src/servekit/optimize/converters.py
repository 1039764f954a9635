"""Converters to ONNX: one function per source framework, registered by bundle format.

A converter takes the loaded original (its runtime and what the manifest knows) and an input
dtype to try, and returns the serialized ONNX model and the library that made it. It raises
on failure; the caller reports the failure and stores nothing.

    pickle, joblib, skops      scikit-learn estimators and pipelines (skl2onnx); the sklearn
                               wrappers of XGBoost and LightGBM (onnxmltools)
    xgboost, lightgbm          native Boosters (onnxmltools)
    torchscript, torch-export, torch   torch.onnx.export, TorchScript-based exporter
    keras, keras-h5            Keras 3 on the torch backend, exported as a torch module
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from servekit.errors import ArtifactError
from servekit.runtimes.base import Runtime, import_optional
from servekit.signature import Batch, Signature

__all__ = ["CONVERTERS", "Conversion", "ConverterSpec", "Source", "converter_for", "library_label"]

ONNX_OPSET = 17
"""Default-domain opset for torch exports and sklearn pipelines with boosters."""
_ML_OPSET_FOR_BOOSTERS = 3  # onnxmltools' boosters inside skl2onnx pipelines need ai.onnx.ml 3
_DISTRIBUTIONS = {"torch.onnx": "torch"}


@dataclass(frozen=True)
class Source:
    """The loaded original and what the manifest knows about it."""

    runtime: Runtime
    signature: Signature
    task: str
    classes: list[Any] | None
    example: Batch
    """A few rows the model takes, for exporters that trace."""


@dataclass(frozen=True)
class Conversion:
    model: bytes
    """The serialized ONNX `ModelProto`."""
    library: str
    """Distribution name of the converter (`skl2onnx`)."""


Convert = Callable[[Source, str], Conversion]


@dataclass(frozen=True)
class ConverterSpec:
    convert: Convert
    dtypes: tuple[str, ...] = ("float32",)
    """Input dtypes to try, in order: the first whose variant verifies is kept."""


CONVERTERS: dict[str, ConverterSpec] = {}


def register_converter(*formats: str, dtypes: tuple[str, ...] = ("float32",)) -> Callable[[Convert], Convert]:
    """Decorator: convert models of these bundle formats with the decorated function."""

    def add(func: Convert) -> Convert:
        for name in formats:
            if name in CONVERTERS:
                raise ValueError(f"a converter for format {name!r} is already registered")
            CONVERTERS[name] = ConverterSpec(func, dtypes)
        return func

    return add


def converter_for(format_name: str) -> ConverterSpec | None:
    return CONVERTERS.get(format_name)


def library_label(library: str) -> str:
    """`skl2onnx 1.20.0`: the converter's name and installed version."""
    try:
        return f"{library} {version(_DISTRIBUTIONS.get(library, library))}"
    except PackageNotFoundError:
        return library


# -- scikit-learn ---------------------------------------------------------------------------
# float32 first (what tree ensembles compare in, and the fast path); float64 when float32
# rounding does not verify (e.g. linear models on large-valued features).
@register_converter("pickle", "joblib", "skops", dtypes=("float32", "float64"))
def estimator_to_onnx(source: Source, dtype: str) -> Conversion:
    from servekit.runtimes._estimator import final_estimator, is_classifier

    model = source.runtime.model  # type: ignore[attr-defined]
    root = type(final_estimator(model)).__module__.split(".")[0]
    if model is final_estimator(model) and root in ("xgboost", "lightgbm"):
        return _wrapper_to_onnx(model, root, source.signature, dtype)
    skl2onnx = import_optional("skl2onnx", "onnx")
    boosters = _register_boosters(model)
    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    target = {"": ONNX_OPSET, "ai.onnx.ml": _ML_OPSET_FOR_BOOSTERS} if boosters else None
    failure: Exception | None = None
    for inputs in _input_layouts(source.signature, dtype):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                proto = skl2onnx.convert_sklearn(model, initial_types=inputs, options=options, target_opset=target)
            return Conversion(proto.SerializeToString(), "skl2onnx")
        except Exception as exc:  # skl2onnx raises RuntimeError, NameError, TypeError, ...
            failure = failure or exc
    assert failure is not None
    raise failure


def _input_layouts(signature: Signature, dtype: str) -> list[list[tuple[str, Any]]]:
    """One input tensor `[N, n_features]` when every feature is numeric; one `[N, 1]` input
    per column (what a ColumnTransformer over named columns needs) as the alternative."""
    types = import_optional("skl2onnx.common.data_types", "onnx")
    number = types.FloatTensorType if dtype == "float32" else types.DoubleTensorType
    per_column = [
        (f.name, number([None, 1]) if f.numeric else types.StringTensorType([None, 1])) for f in signature.features
    ]
    if all(f.numeric for f in signature.features):
        single = [("input", number([None, *signature.expected_row_shape]))]
        return [single, per_column] if signature.named else [single]
    return [per_column]


def _register_boosters(model: Any) -> bool:
    """Teach skl2onnx the XGBoost/LightGBM sklearn wrappers found in a pipeline."""
    steps = _all_steps(model)
    roots = {type(s).__module__.split(".")[0] for s in steps}
    found = roots & {"xgboost", "lightgbm"}
    if not found:
        return False
    skl2onnx = import_optional("skl2onnx", "onnx")
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    import_optional("onnxmltools", "onnx")
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for step in steps:
        root = type(step).__module__.split(".")[0]
        if root == "xgboost":
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
        elif root == "lightgbm":
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
        else:
            continue
        classifier = hasattr(step, "classes_")
        shapes = calculate_linear_classifier_output_shapes if classifier else calculate_linear_regressor_output_shapes
        alias = f"{'XGBoost' if root == 'xgboost' else 'LightGbm'}{type(step).__name__}"
        skl2onnx.update_registered_converter(
            type(step), alias, shapes, convert, options=options if classifier else None
        )
    return True


def _all_steps(model: Any) -> list[Any]:
    out = [model]
    for _, step in getattr(model, "steps", []):
        out.extend(_all_steps(step))
    for _, transformer, _ in getattr(model, "transformers_", []):
        out.extend(_all_steps(transformer))
    return out


def _wrapper_to_onnx(model: Any, root: str, signature: Signature, dtype: str) -> Conversion:
    if dtype != "float32":
        raise ArtifactError(f"{root} models convert with float32 inputs only")
    tools = import_optional("onnxmltools", "onnx")
    from onnxmltools.convert.common.data_types import FloatTensorType

    inputs = [("input", FloatTensorType([None, signature.n_features]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if root == "xgboost":
            proto = tools.convert_xgboost(model, initial_types=inputs)
        else:
            proto = tools.convert_lightgbm(model, initial_types=inputs, zipmap=False)
    return Conversion(proto.SerializeToString(), "onnxmltools")


# -- native boosters ------------------------------------------------------------------------
@register_converter("xgboost")
def xgboost_to_onnx(source: Source, dtype: str) -> Conversion:
    booster = source.runtime.booster.copy()  # type: ignore[attr-defined]
    start, end = getattr(source.runtime, "_iteration_range", (0, 0))
    if end:  # the sklearn wrapper's best iteration after early stopping, as the runtime predicts
        booster = booster[start:end]
    booster.feature_names = None  # onnxmltools accepts only XGBoost's own f0, f1, ... names
    return _wrapper_to_onnx(booster, "xgboost", source.signature, dtype)


@register_converter("lightgbm")
def lightgbm_to_onnx(source: Source, dtype: str) -> Conversion:
    return _wrapper_to_onnx(source.runtime.booster, "lightgbm", source.signature, dtype)  # type: ignore[attr-defined]


# -- torch and Keras ------------------------------------------------------------------------
@register_converter("torchscript", "torch-export", "torch")
def torch_to_onnx(source: Source, dtype: str) -> Conversion:
    torch = import_optional("torch", "torch")
    logits = source.runtime.options.get("output", "logits") == "logits"
    dtype_ = getattr(source.runtime, "_input_dtype", None) or torch.float32
    return _export(torch, source.runtime.model, source, logits, dtype_)  # type: ignore[attr-defined]


@register_converter("keras", "keras-h5")
def keras_to_onnx(source: Source, dtype: str) -> Conversion:
    keras = import_optional("keras", "keras")
    backend = keras.backend.backend()
    if backend != "torch":
        raise ArtifactError(
            f"no converter for Keras models on the {backend} backend (servekit exports Keras 3 models "
            "on the torch backend)"
        )
    torch = import_optional("torch", "torch")
    output = source.runtime.options.get("output")
    activation = getattr(source.runtime, "_activation", None)
    logits = output == "logits" if output is not None else activation not in ("softmax", "sigmoid")
    return _export(torch, source.runtime.model, source, logits, torch.float32)  # type: ignore[attr-defined]


def _export(torch: Any, model: Any, source: Source, logits: bool, dtype: Any) -> Conversion:
    from servekit.optimize import _torch_heads

    example = torch.from_numpy(np.ascontiguousarray(np.asarray(source.example)[:2])).to(dtype)
    if source.task == "classification":
        with torch.inference_mode():
            width = int(np.prod(model(example).shape[1:]))
        head: Any = _torch_heads.HEADS[(logits, width == 1)](model)
        outputs = ["label", "probabilities"]
    else:
        head = _torch_heads.REGRESSION(model)
        outputs = ["values"]
    if isinstance(model, torch.jit.ScriptModule):
        head = torch.jit.script(head)  # tracing cannot step into a ScriptModule
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated but works
        torch.onnx.export(
            head,
            (example,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]},
            opset_version=ONNX_OPSET,
        )
    return Conversion(buffer.getvalue(), "torch.onnx")
