"""`export_model`: a folder that predicts with only onnxruntime and numpy installed.

The folder holds `model.onnx`, `predictor.py` (servekit's standalone predictor, copied as it
is), `signature.json` and `README.md`. It is assembled under a temporary name next to its
destination, checked (the standalone predictor must answer exactly as servekit's ONNX runtime
does on the same file), then renamed into place: it appears whole or not at all, and an
existing folder is replaced only with `force`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from servekit.bundle import Bundle
from servekit.deploy.model import resolve_model
from servekit.deploy.write import check_output
from servekit.edge.document import readme, signature_document
from servekit.edge.variant import OnnxFile, onnx_file
from servekit.errors import InvalidInput, MissingInformation, ServekitError
from servekit.optimize.rows import Sample, verification_rows
from servekit.staging import staged_folder

__all__ = ["FORMATS", "ExportResult", "export_model"]

FORMATS = ("onnx",)
MODEL_FILE = "model.onnx"
PREDICTOR_FILE = "predictor.py"
SIGNATURE_FILE = "signature.json"
README_FILE = "README.md"
_CHECK_ROWS = 200
_CHECK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how the model was checked."""

    output: Path
    onnx: OnnxFile
    signature: dict[str, Any]
    """The content of `signature.json`."""
    files: list[str]
    rows_checked: int
    """Rows on which the standalone predictor was checked against servekit (0: none available)."""


def export_model(
    model: str,
    output: Path,
    *,
    format: str = "onnx",
    quantize: bool = False,
    sample: Sample | None = None,
    trust: bool = False,
    home: Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Export `model` (a bundle folder, a model file or a registry reference) into `output`.

    `sample` gives rows to verify a conversion on when the bundle has no reference profile;
    `trust` vouches for a pickle-based model that must be loaded to be converted.
    """
    if format not in FORMATS:
        raise InvalidInput(f"unknown export format {format!r}", hint=f"Choose one of: {', '.join(FORMATS)}")
    output = Path(output).absolute()
    check_output(output, force=force)  # before any slow step
    with tempfile.TemporaryDirectory(prefix="servekit-export-") as scratch:
        resolved = resolve_model(model, trust=trust, home=home, scratch=Path(scratch))
        bundle = resolved.bundle
        chosen = onnx_file(bundle, quantize=quantize, trust=resolved.trusted, sample=sample, scratch=Path(scratch))
        document = signature_document(bundle, chosen)
        texts = {
            PREDICTOR_FILE: standalone_source(),
            SIGNATURE_FILE: json.dumps(document, indent=2, ensure_ascii=False) + "\n",
            README_FILE: readme(document),
        }
        rows_checked = _write(output, chosen.path, texts, bundle=bundle, sample=sample, force=force)
    return ExportResult(output, chosen, document, sorted([MODEL_FILE, *texts]), rows_checked)


def standalone_source() -> str:
    """The text of `servekit/edge/standalone.py`, shipped as `predictor.py`."""
    return resources.files("servekit.edge").joinpath("standalone.py").read_text(encoding="utf-8")


def _write(
    output: Path, model: Path, texts: dict[str, str], *, bundle: Bundle, sample: Sample | None, force: bool
) -> int:
    check_output(output, force=force)
    try:
        with staged_folder(output, mode=0o755) as staging:
            shutil.copyfile(model, staging / MODEL_FILE)
            for name, text in texts.items():
                (staging / name).write_text(text, encoding="utf-8")
            rows_checked = _check_standalone(staging, bundle, sample)
    except OSError as exc:
        raise ServekitError(f"could not write the export folder {output}: {exc.strerror or exc}") from None
    return rows_checked


def _check_standalone(folder: Path, bundle: Bundle, sample: Sample | None) -> int:
    """Run the folder's `predictor.py` and servekit's ONNX runtime on the same rows; any
    difference is servekit's bug, reported before anything is shipped."""
    from servekit.runtimes import get_runtime

    batch = _check_rows(bundle, sample)
    if batch is None:
        return 0
    runtime = get_runtime("onnx")(folder / MODEL_FILE)
    runtime.configure(bundle.signature, bundle.manifest.classes, bundle.manifest.task)
    runtime.load()
    try:
        expected = runtime.predict(batch).to_records()
    finally:
        runtime.unload()
    spec = importlib.util.spec_from_file_location("servekit_exported_predictor", folder / PREDICTOR_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = batch.to_dict("records") if hasattr(batch, "to_dict") else batch
    got = module.Predictor(folder).predict(rows)
    for number, (want, have) in enumerate(zip(expected, got, strict=True)):
        if not _same(want, have):
            raise ServekitError(
                f"the exported predictor.py answers {have} for row {number} where servekit answers {want}",
                hint="This is a bug in servekit export: please report it",
            )
    return len(expected)


def _check_rows(bundle: Bundle, sample: Sample | None) -> Any:
    """Rows to check on: the sample or the reference profile, else seeded random numbers."""
    try:
        return verification_rows(bundle, sample, _CHECK_ROWS)[0]
    except MissingInformation:
        signature = bundle.signature
        if signature.input_kind != "array":
            return None  # text columns: nothing sensible to invent
        rows = np.random.default_rng(0).normal(size=(_CHECK_ROWS // 4, *signature.expected_row_shape))
        return signature.batch_from_array(rows)


def _same(want: dict[str, Any], have: dict[str, Any]) -> bool:
    if want.keys() != have.keys():
        return False
    if "probabilities" in want:
        if want["prediction"] != have["prediction"] or want["probabilities"].keys() != have["probabilities"].keys():
            return False
        return all(_close(p, have["probabilities"][c]) for c, p in want["probabilities"].items())
    return _close(want["prediction"], have["prediction"])


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=_CHECK_TOLERANCE, abs_tol=_CHECK_TOLERANCE)
    return a == b
