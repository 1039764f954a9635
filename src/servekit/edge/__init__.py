"""Edge export: `servekit export MODEL --format onnx -o DIR`.

The export folder runs where servekit is not installed: `model.onnx` (the bundle's verified
ONNX variant, or one converted and verified now, optionally int8-quantized), `predictor.py`
(`standalone.py`, copied as it is: onnxruntime, numpy and the standard library only),
`signature.json` and `README.md`.
"""

from __future__ import annotations

from servekit.edge.export import FORMATS, ExportResult, export_model

__all__ = ["FORMATS", "ExportResult", "export_model"]
