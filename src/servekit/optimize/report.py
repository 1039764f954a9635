"""What `optimize_bundle` did: which variant it stored, how it was checked, and why not."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OptimizeReport", "QuantizeReport"]


@dataclass
class QuantizeReport:
    """The outcome of dynamic int8 quantization of the ONNX variant."""

    stored: bool
    variant: str = "onnx-int8"
    label_agreement: float | None = None
    """Share of rows whose label equals the original's (classifiers)."""
    max_abs_diff: float | None = None
    """Largest difference from the original's probabilities (or values)."""
    rows_checked: int = 0
    reason: str | None = None
    """Why nothing was stored."""

    def summary(self) -> str:
        if not self.stored:
            return f"not quantized: {self.reason}"
        agreement = "" if self.label_agreement is None else f"labels agree {self.label_agreement:.1%}, "
        return f"quantized: {self.variant} ({agreement}max diff {self.max_abs_diff:.2g})"


@dataclass
class OptimizeReport:
    """The outcome of converting a bundle's model to ONNX and verifying it."""

    stored: bool
    variant: str | None = None
    """`onnx` when a verified variant was written into the bundle."""
    converter: str | None = None
    """The library that converted the model, with its version (`skl2onnx 1.20.0`)."""
    input_dtype: str | None = None
    max_abs_diff: float | None = None
    """Largest difference between the original's and the variant's probabilities (or values)."""
    rows_checked: int = 0
    rows_source: str | None = None
    """`sample` or `profile` (rows synthesized from the manifest's reference profile)."""
    tolerance: float | None = None
    reason: str | None = None
    """Why no variant was stored."""
    attempts: list[str] = field(default_factory=list)
    """One line per conversion that failed or did not verify, e.g. `float32: max diff 4e-05 > 1e-05`."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Median single-row predict latency in-process, `original` and `onnx` (informative only)."""
    quantized: QuantizeReport | None = None

    def summary(self) -> str:
        """One line for the CLI: `optimized: onnx (max diff 3e-08)` or `not optimized: <reason>`."""
        if not self.stored:
            return f"not optimized: {self.reason}"
        return f"optimized: {self.variant} (max diff {self.max_abs_diff:.2g} on {self.rows_checked} rows)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
