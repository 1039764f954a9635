"""`optimize_bundle`: convert a bundle's model to ONNX, verify it against the original on the
same rows, and store it in the bundle as the `onnx` variant (optionally also `onnx-int8`).

A conversion that fails or does not verify is reported and stores nothing: the original keeps
serving. Verification rows are the given sample, else rows synthesized from the manifest's
reference profile; with neither, `MissingInformation` asks for a sample.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from servekit.errors import ArtifactError, CorruptArtifact, InvalidInput, ServekitError
from servekit.optimize.converters import Conversion, ConverterSpec, Source, converter_for, library_label
from servekit.optimize.quantize import MAX_RELATIVE_ERROR, MIN_LABEL_AGREEMENT, nothing_to_quantize, quantize_file
from servekit.optimize.report import OptimizeReport, QuantizeReport
from servekit.optimize.rows import Sample, verification_rows
from servekit.optimize.store import scratch_file, store_variant, variant_file_name
from servekit.optimize.verify import Comparison, compare

if TYPE_CHECKING:
    from pathlib import Path

    from servekit.bundle import Bundle
    from servekit.prediction import Prediction
    from servekit.predictor import Predictor
    from servekit.signature import Batch

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_TOLERANCE",
    "INT8_VARIANT",
    "ONNX_VARIANT",
    "OptimizeReport",
    "QuantizeReport",
    "optimize_bundle",
]

ONNX_VARIANT = "onnx"
INT8_VARIANT = "onnx-int8"
DEFAULT_TOLERANCE = 1e-5
DEFAULT_ROWS = 500
_WARMUP_CALLS = 5
_SHOWN_CHARS = 160
logger = logging.getLogger("servekit.optimize")


def optimize_bundle(
    bundle: Bundle,
    *,
    sample: Sample | None = None,
    quantize: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    rows: int = DEFAULT_ROWS,
    trust: bool = False,
    verified_record: bool = False,
    timing_calls: int = 0,
) -> OptimizeReport:
    """Convert, verify and store the ONNX variant of a bundle folder's model.

    `sample` is a table path, DataFrame or array of rows the model takes; `tolerance` the
    largest absolute difference allowed on probabilities (labels must be identical) or values.
    `trust`/`verified_record` are the trust policy for loading the original (see `load_bundle`).
    `timing_calls > 0` also measures single-row latency of both (informative only).
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise InvalidInput(f"the tolerance must be a number >= 0, got {tolerance}")
    if rows < 1:
        raise InvalidInput(f"the number of rows to verify on must be at least 1, got {rows}")
    manifest = bundle.manifest
    if manifest.format == "onnx":
        return OptimizeReport(False, tolerance=tolerance, reason="the model is already ONNX")
    spec = converter_for(manifest.format)
    if spec is None:
        return OptimizeReport(False, tolerance=tolerance, reason=f"no converter for {manifest.format} models")
    bundle.verify()
    batch, rows_source = verification_rows(bundle, sample, rows)
    from servekit.loading import load_bundle

    original = load_bundle(bundle, trust=trust, verified_record=verified_record, optimized=False)
    candidate: Predictor | None = None
    try:
        try:
            reference = original.runtime.predict(batch)
        except Exception as exc:  # the user's model may raise anything; it is the report's reason
            reason = f"the original model failed on the verification rows: {_one_line(exc)}"
            return OptimizeReport(False, tolerance=tolerance, rows_source=rows_source, reason=reason)
        report, candidate = _convert(bundle, spec, original, batch, reference, tolerance)
        report.rows_source = rows_source
        if quantize:
            report.quantized = _quantize(bundle, batch, reference)
        if timing_calls > 0 and candidate is not None:
            one = batch.iloc[:1] if hasattr(batch, "iloc") else batch[:1]
            report.latency_ms = {
                "original": _median_ms(original.predict_batch, one, timing_calls),
                ONNX_VARIANT: _median_ms(candidate.predict_batch, one, timing_calls),
            }
        logger.info("%s: %s", manifest.name, report.summary())
        return report
    finally:
        original.close()
        if candidate is not None:
            candidate.close()


def _convert(
    bundle: Bundle, spec: ConverterSpec, original: Predictor, batch: Batch, reference: Prediction, tolerance: float
) -> tuple[OptimizeReport, Predictor | None]:
    """Try each input dtype the converter offers; store the first variant that verifies."""
    manifest = bundle.manifest
    example = batch.iloc[:2] if hasattr(batch, "iloc") else batch[:2]
    source = Source(original.runtime, bundle.signature, manifest.task, manifest.classes, example)
    report = OptimizeReport(False, tolerance=tolerance, rows_checked=len(reference))
    best: Comparison | None = None
    for dtype in spec.dtypes:
        scratch = scratch_file(bundle, "model.onnx")
        candidate: Predictor | None = None
        try:
            conversion: Conversion = spec.convert(source, dtype)
            scratch.write_bytes(conversion.model)
            candidate = _load_candidate(bundle, scratch, ONNX_VARIANT)
            comparison = compare(reference, candidate.runtime.predict(batch))
        except Exception as exc:  # converters and onnxruntime raise anything; each is one attempt
            scratch.unlink(missing_ok=True)
            if candidate is not None:
                candidate.close()
            report.attempts.append(f"{dtype}: {_one_line(exc)}")
            continue
        label = library_label(conversion.library)
        if comparison.verified(tolerance):
            facts = {
                "converter": label,
                "input_dtype": _input_types(candidate),
                "max_abs_diff": comparison.max_abs_diff,
                "rows_checked": comparison.rows,
                "tolerance": tolerance,
                **_runtime_options(candidate),
            }
            store_variant(bundle, ONNX_VARIANT, scratch, variant_file_name(bundle, "model.onnx"), facts)
            report.stored, report.variant, report.converter = True, ONNX_VARIANT, label
            report.input_dtype, report.max_abs_diff = facts["input_dtype"], comparison.max_abs_diff
            return report, candidate
        candidate.close()
        scratch.unlink(missing_ok=True)
        report.attempts.append(f"{dtype}: {comparison.explain(tolerance)}")
        if best is None or comparison.max_abs_diff < best.max_abs_diff:
            best = comparison
            report.converter, report.max_abs_diff = label, comparison.max_abs_diff
    verb = "did not verify" if best is not None else "failed"
    report.reason = f"the ONNX conversion {verb} ({_merge(report.attempts)})"
    return report, None


def _merge(attempts: list[str]) -> str:
    """`float32: X; float64: X` as `float32, float64: X`."""
    by_reason: dict[str, list[str]] = {}
    for attempt in attempts:
        dtype, _, reason = attempt.partition(": ")
        by_reason.setdefault(reason, []).append(dtype)
    return "; ".join(f"{', '.join(dtypes)}: {reason}" for reason, dtypes in by_reason.items())


def _quantize(bundle: Bundle, batch: Batch, reference: Prediction) -> QuantizeReport:
    entry = bundle.manifest.variants.get(ONNX_VARIANT)
    if entry is None:
        return QuantizeReport(False, reason="there is no verified ONNX variant to quantize")
    source_path = bundle.path / str(entry["artifact"])
    if nothing_to_quantize(source_path):
        return QuantizeReport(False, reason="nothing to quantize: the ONNX graph has no MatMul, Gemm or Conv weights")
    scratch = scratch_file(bundle, "model.int8.onnx")
    candidate: Predictor | None = None
    try:
        quantize_file(source_path, scratch)
        candidate = _load_candidate(bundle, scratch, INT8_VARIANT)
        comparison = compare(reference, candidate.runtime.predict(batch))
        options = _runtime_options(candidate)
    except Exception as exc:
        scratch.unlink(missing_ok=True)
        return QuantizeReport(False, reason=f"quantization failed: {_one_line(exc)}")
    finally:
        if candidate is not None:
            candidate.close()
    report = QuantizeReport(
        False,
        label_agreement=comparison.label_agreement,
        max_abs_diff=comparison.max_abs_diff,
        rows_checked=comparison.rows,
    )
    problem = _quantization_problem(comparison, reference)
    if problem is not None:
        scratch.unlink(missing_ok=True)
        report.reason = problem
        return report
    facts = {
        "converter": f"{library_label('onnxruntime')} quantize_dynamic (int8 weights)",
        "source_variant": ONNX_VARIANT,
        "label_agreement": comparison.label_agreement,
        "max_abs_diff": comparison.max_abs_diff,
        "rows_checked": comparison.rows,
        **options,
    }
    store_variant(bundle, INT8_VARIANT, scratch, variant_file_name(bundle, "model.int8.onnx"), facts)
    report.stored = True
    return report


def _quantization_problem(comparison: Comparison, reference: Prediction) -> str | None:
    if comparison.problem is not None:
        return comparison.problem
    if comparison.label_agreement is not None:
        if comparison.label_agreement < MIN_LABEL_AGREEMENT:
            return f"labels agree on {comparison.label_agreement:.1%} of rows, below {MIN_LABEL_AGREEMENT:.0%}"
        return None
    values = np.asarray(reference.outputs, dtype="float64")
    scale = float(np.ptp(values)) if values.size else 0.0
    scale = scale or float(np.max(np.abs(values), initial=0.0)) or 1.0
    if comparison.max_abs_diff > MAX_RELATIVE_ERROR * scale:
        return (
            f"max diff {comparison.max_abs_diff:.2g} is more than {MAX_RELATIVE_ERROR:.0%} "
            f"of the range of the values ({scale:.3g})"
        )
    return None


def _runtime_options(candidate: Predictor) -> dict[str, Any]:
    """What the variant's runtime may read from the manifest instead of the file: a classifier's
    labels from its graph, so that serving it needs onnxruntime only (the `onnx` package that
    parses graphs costs every server process ~13 MB)."""
    classes = getattr(candidate.runtime, "graph_classes", None)
    return {"runtime_options": {"classes": list(classes)}} if classes else {}


def _load_candidate(bundle: Bundle, path: Path, variant: str) -> Predictor:
    """The candidate file loaded by the ONNX runtime exactly as `load_bundle` will serve it."""
    from servekit.predictor import Predictor
    from servekit.runtimes import get_runtime

    runtime = get_runtime("onnx")(path)
    runtime.configure(bundle.signature, bundle.manifest.classes, bundle.manifest.task)
    try:
        runtime.load()
    except CorruptArtifact as exc:  # the message names the scratch file; what matters is why
        _, _, why = exc.message.partition("failed:")
        raise ArtifactError(f"onnxruntime cannot load the converted graph ({why.strip() or exc.message})") from None
    return Predictor(bundle, runtime, variant=variant)


def _input_types(predictor: Predictor) -> str:
    inputs = predictor.runtime.describe().extra.get("inputs", [])
    return ", ".join(dict.fromkeys(str(i["type"]) for i in inputs))


def _median_ms(predict: Callable[[Any], Any], batch: Batch, calls: int) -> float:
    for _ in range(_WARMUP_CALLS):
        predict(batch)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _one_line(exc: BaseException) -> str:
    """A converter's error as one short line, with its cause (the real reason is often there)."""
    if isinstance(exc, ServekitError):
        return _cut(exc.detail, _SHOWN_CHARS)
    text = _cut(f"{type(exc).__name__}: {_first_line(exc)}", _SHOWN_CHARS)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and _first_line(cause):
        text += f" ({type(cause).__name__}: {_cut(_first_line(cause), _SHOWN_CHARS)})"
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
