"""Dynamic int8 quantization of an ONNX variant (`onnxruntime.quantization.quantize_dynamic`).

Only weights of MatMul/Gemm-like nodes are quantized, so tree ensembles and skl2onnx's linear
models have nothing to gain: they are reported as such. A quantized variant is kept when at
least `MIN_LABEL_AGREEMENT` of the labels equal the original's (classifiers), or every value is
within `MAX_RELATIVE_ERROR` of the range of the original's values (regressors).
"""

from __future__ import annotations

import logging
from pathlib import Path

from servekit.runtimes.base import import_optional

__all__ = ["MAX_RELATIVE_ERROR", "MIN_LABEL_AGREEMENT", "nothing_to_quantize", "quantize_file"]

MIN_LABEL_AGREEMENT = 0.99
MAX_RELATIVE_ERROR = 0.01
_QUANTIZABLE = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Attention", "LSTM", "GRU", "Gather"})


def nothing_to_quantize(path: Path) -> bool:
    """True when the graph has no node whose weights dynamic quantization would shrink."""
    onnx = import_optional("onnx", "onnx")
    graph = onnx.load_model(str(path), load_external_data=False).graph
    return not any(node.op_type in _QUANTIZABLE and node.domain in ("", "ai.onnx") for node in graph.node)


def quantize_file(source: Path, target: Path) -> None:
    """Write the int8 dynamic quantization of `source` to `target`."""
    quantization = import_optional("onnxruntime.quantization", "onnx")
    root = logging.getLogger()
    quiet = _DropAdvice()
    root.addFilter(quiet)  # it advises "pre-processing" through the root logger on every call
    try:
        quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8)
    finally:
        root.removeFilter(quiet)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()
