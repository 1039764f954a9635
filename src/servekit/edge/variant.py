"""The ONNX file an export ships: the bundle's verified variant, or one made and verified now.

A bundle that already has the wanted variant (`onnx`, or `onnx-int8` with `quantize`) ships
it as it is: it was verified against the original when it was stored, and its sha256 was just
checked. Otherwise a copy of the bundle in a scratch folder is optimized exactly as
`servekit optimize` does (convert, verify on the sample or the reference profile, quantize);
the user's bundle is never changed. A model that is ONNX already ships its own artifact.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servekit.bundle import MANIFEST_NAME, Bundle
from servekit.errors import ArtifactError
from servekit.optimize import DEFAULT_ROWS, INT8_VARIANT, ONNX_VARIANT, optimize_bundle
from servekit.optimize.quantize import MAX_RELATIVE_ERROR, MIN_LABEL_AGREEMENT, nothing_to_quantize, quantize_file
from servekit.optimize.rows import Sample, verification_rows
from servekit.optimize.verify import compare
from servekit.runtimes.base import import_optional

__all__ = ["ORIGINAL", "OnnxFile", "onnx_file"]

ORIGINAL = "original"
"""The variant name of a bundle whose own artifact is the ONNX file shipped."""
# The converter library of each format (see servekit.optimize.converters) that comes with the
# `onnx` extra; torch and Keras models convert with the library that loads them.
_CONVERTER_LIBRARIES = {
    "pickle": "skl2onnx",
    "joblib": "skl2onnx",
    "skops": "skl2onnx",
    "xgboost": "onnxmltools",
    "lightgbm": "onnxmltools",
}
_FACTS = ("converter", "input_dtype", "max_abs_diff", "rows_checked", "tolerance", "label_agreement")


@dataclass(frozen=True)
class OnnxFile:
    """The file to ship and how it relates to the bundle's original model."""

    path: Path
    variant: str
    """`onnx`, `onnx-int8`, or `original` (the bundle's artifact is ONNX)."""
    converted: bool
    """Made during this export (False: taken from the bundle as stored)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """How it was verified against the original: `max_abs_diff`, `rows_checked`, ..."""


def onnx_file(bundle: Bundle, *, quantize: bool, trust: bool, sample: Sample | None, scratch: Path) -> OnnxFile:
    """The ONNX file to export for a verified `bundle` (scratch files go under `scratch`).

    Raises `ArtifactError` with the reason when the model does not convert, does not verify,
    or (with `quantize`) cannot be quantized accurately.
    """
    import_optional("onnxruntime", "onnx")  # every export runs the file it ships
    manifest = bundle.manifest
    wanted = INT8_VARIANT if quantize else ONNX_VARIANT
    entry = manifest.variants.get(wanted)
    if entry is not None and _shippable(bundle, entry):
        return OnnxFile(bundle.path / str(entry["artifact"]), wanted, False, _facts(entry))
    if manifest.format == "onnx":
        if not quantize:
            return OnnxFile(bundle.artifact_path, ORIGINAL, False)
        return _quantize_original(bundle, sample, scratch)
    library = _CONVERTER_LIBRARIES.get(manifest.format)
    if library is not None:
        import_optional(library, "onnx")  # else each attempt fails with the reason cut short
    copy = _scratch_copy(bundle, scratch / "bundle")
    report = optimize_bundle(copy, sample=sample, quantize=quantize, trust=trust)
    if not report.stored:
        raise ArtifactError(
            f"cannot export {manifest.name} to ONNX: {report.reason}",
            hint="servekit optimize --help lists what converts; give --sample FILE for rows to verify on",
        )
    if quantize and (report.quantized is None or not report.quantized.stored):
        reason = report.quantized.reason if report.quantized is not None else "no quantization was attempted"
        raise ArtifactError(f"cannot export {manifest.name} quantized: {reason}", hint="Export it without --quantize")
    stored = copy.manifest.variants[wanted]
    return OnnxFile(copy.path / str(stored["artifact"]), wanted, True, _facts(stored))


def _shippable(bundle: Bundle, entry: dict[str, Any]) -> bool:
    """A variant entry naming an ONNX file that the manifest records (so it was verified)."""
    artifact = str(entry.get("artifact", ""))
    return (
        str(entry.get("format", "onnx")) == "onnx"
        and artifact in bundle.manifest.files
        and Path(artifact).name == artifact
        and (bundle.path / artifact).is_file()
    )


def _facts(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: entry[key] for key in _FACTS if key in entry}


def _scratch_copy(bundle: Bundle, folder: Path) -> Bundle:
    """The bundle's manifest and recorded files copied to `folder`, checked again there."""
    folder.mkdir(parents=True)
    for relative in [*bundle.manifest.files, MANIFEST_NAME]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle.path / relative, folder / relative)
    copy = Bundle(folder, bundle.manifest.model_copy(deep=True))
    copy.verify()
    return copy


def _quantize_original(bundle: Bundle, sample: Sample | None, scratch: Path) -> OnnxFile:
    """int8 dynamic quantization of an ONNX model file, checked against it as `optimize` checks
    its `onnx-int8` variant (labels agree on enough rows, or values stay close)."""
    from servekit.loading import load_bundle
    from servekit.runtimes import get_runtime

    name = bundle.manifest.name
    if nothing_to_quantize(bundle.artifact_path):
        raise ArtifactError(
            f"cannot export {name} quantized: nothing to quantize: the ONNX graph has no MatMul, Gemm or Conv weights",
            hint="Export it without --quantize",
        )
    batch, _ = verification_rows(bundle, sample, DEFAULT_ROWS)
    target = scratch / "model.int8.onnx"
    quantize_file(bundle.artifact_path, target)
    with load_bundle(bundle, optimized=False) as original:
        reference = original.runtime.predict(batch)
    candidate = get_runtime("onnx")(target)
    candidate.configure(bundle.signature, bundle.manifest.classes, bundle.manifest.task)
    candidate.load()
    try:
        comparison = compare(reference, candidate.predict(batch))
    finally:
        candidate.unload()
    problem = comparison.problem
    if problem is None and comparison.label_agreement is not None:
        if comparison.label_agreement < MIN_LABEL_AGREEMENT:
            problem = f"labels agree on {comparison.label_agreement:.1%} of rows, below {MIN_LABEL_AGREEMENT:.0%}"
    elif problem is None:
        values = np.asarray(reference.outputs, dtype="float64")
        scale = float(np.ptp(values)) or float(np.max(np.abs(values), initial=0.0)) or 1.0
        if comparison.max_abs_diff > MAX_RELATIVE_ERROR * scale:
            problem = (
                f"max diff {comparison.max_abs_diff:.2g} is more than {MAX_RELATIVE_ERROR:.0%} of the values' range"
            )
    if problem is not None:
        raise ArtifactError(f"cannot export {name} quantized: {problem}", hint="Export it without --quantize")
    facts = {"max_abs_diff": comparison.max_abs_diff, "rows_checked": comparison.rows}
    if comparison.label_agreement is not None:
        facts["label_agreement"] = comparison.label_agreement
    return OnnxFile(target, INT8_VARIANT, True, facts)
