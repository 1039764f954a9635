"""`DriftSettings`: how live inputs are compared with the reference profile (no numpy here, so
the server's settings import fast)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DriftSettings"]

DEFAULT_WINDOW_SIZE = 1000
DEFAULT_MIN_ROWS = 100
DEFAULT_KS_PVALUE = 0.01
DEFAULT_CHI2_PVALUE = 0.01
DEFAULT_PSI = 0.1
DEFAULT_CHECK_INTERVAL_S = 30.0


class DriftSettings(BaseModel):
    """How live inputs are compared with the reference profile."""

    model_config = ConfigDict(extra="forbid")

    window_size: int = Field(DEFAULT_WINDOW_SIZE, ge=1)
    """Live input rows kept per model: the latest ones are compared with the reference."""
    min_rows: int = Field(DEFAULT_MIN_ROWS, ge=1)
    """Fewer usable values than this and a feature is not assessable."""
    ks_pvalue: float = Field(DEFAULT_KS_PVALUE, gt=0, lt=1)
    """Numeric features: family-wise KS p-value threshold (divided by the number of features)."""
    chi2_pvalue: float = Field(DEFAULT_CHI2_PVALUE, gt=0, lt=1)
    """Categorical features: family-wise chi-squared p-value threshold (divided likewise)."""
    psi: float = Field(DEFAULT_PSI, ge=0)
    """Smallest PSI that counts as drift, on top of the test: ignores tiny, significant shifts."""
    check_interval_s: float = Field(DEFAULT_CHECK_INTERVAL_S, gt=0)
    """Seconds between two drift checks of a served model."""

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> DriftSettings:
        if self.min_rows > self.window_size:
            raise ValueError(f"min_rows ({self.min_rows}) is larger than window_size ({self.window_size})")
        return self
