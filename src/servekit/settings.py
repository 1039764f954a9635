"""Server settings: pydantic-settings with the `SERVEKIT_` prefix, also read from a YAML file.

Nested sections use `__` in environment variables: `SERVEKIT_RUNNER__MAX_BATCH_SIZE=64`.
Settings are passed into `create_app(...)`; nothing reads them from a global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from servekit.errors import InvalidInput
from servekit.monitoring.drift_settings import DriftSettings

__all__ = ["PredictionLogSettings", "RateLimitSettings", "RunnerSettings", "Settings", "load_settings"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 0.0
DEFAULT_MAX_QUEUE = 1024
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_INLINE_BELOW_MS = 0.3
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_RELOAD_INTERVAL_S = 2.0
DEFAULT_LATENCY_BUDGET_MS = 100.0


class RunnerSettings(BaseModel):
    """How each loaded model version runs its predictions."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(DEFAULT_MAX_BATCH_SIZE, ge=1)
    """Most rows stacked into one `predict` call by adaptive micro-batching."""
    max_latency_ms: float = Field(DEFAULT_MAX_LATENCY_MS, ge=0)
    """Longest a batch waits for more requests to join it, only while the model is under load
    (the previous batch held several requests). 0: stack only what is already waiting."""
    max_queue: int = Field(DEFAULT_MAX_QUEUE, ge=1)
    """Requests waiting per model before new ones get 503 + Retry-After."""
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    """Per-request prediction timeout (504 when exceeded)."""
    batching: bool = True
    """Stack concurrent requests into one predict call."""
    cache_size: int = Field(0, ge=0)
    """Predictions kept in an LRU cache keyed by the exact input rows (0: no cache)."""
    inline_below_ms: float = Field(DEFAULT_INLINE_BELOW_MS, ge=0)
    """Models whose predict calls take less than this (moving average) run on the event loop
    itself: a thread hand-off would cost more than the prediction. 0 disables it."""
    circuit_failures: int = Field(5, ge=1)
    """Consecutive failed predictions that open the model's circuit (fast 503s, not ready)."""
    circuit_reset_s: float = Field(10.0, gt=0)
    """How long an open circuit waits before letting one probe request through."""


class PredictionLogSettings(BaseModel):
    """The durable log of every prediction (inputs, outputs, version, latency, request id)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    url: str | None = None
    """SQLAlchemy database URL; default: the registry database (`{home}/registry.db`). Use one
    PostgreSQL URL for several replicas."""
    sample_rate: float = Field(1.0, ge=0, le=1)
    """Share of predictions logged (1: all of them)."""
    retention_days: float | None = Field(30.0, gt=0)
    """Rows older than this are deleted (none: keep everything)."""
    max_pending: int = Field(20_000, ge=1)
    """Requests kept in memory while the database is slow or unreachable; beyond, they are counted lost."""
    max_pending_rows: int = Field(200_000, ge=1)
    """Input rows kept in memory likewise (bounds memory when requests carry many rows)."""
    batch_size: int = Field(1000, ge=1)
    """Rows written per transaction."""
    flush_interval_s: float = Field(1.0, gt=0)
    """Longest a row waits before it is written."""
    retry_s: float = Field(30.0, gt=0)
    """How long a batch that cannot be written (database locked, full, unreachable) is retried
    before its rows are counted lost."""


class RateLimitSettings(BaseModel):
    """Token-bucket rate limit per API key (per client address when authentication is off)."""

    model_config = ConfigDict(extra="forbid")

    rate_per_s: float | None = Field(None, gt=0)
    """Sustained requests per second allowed; none (the default): no rate limit."""
    burst: int = Field(50, ge=1)
    """Requests allowed at once above the sustained rate."""


class Settings(BaseSettings):
    """Everything `servekit serve` can be told, by flag, environment or YAML file."""

    model_config = SettingsConfigDict(env_prefix="SERVEKIT_", env_nested_delimiter="__", extra="forbid")

    models: list[str] = Field(default_factory=list)
    """What to serve: model files, bundle folders or registry refs (`name`, `name:3`, `name@alias`)."""
    home: Path | None = None
    """Registry home; default `~/.servekit`."""
    database_url: str | None = None
    """The registry database as a SQLAlchemy URL (e.g. `postgresql://...`), shared by several
    servers; default: `{home}/registry.db`. API keys and the prediction log live there too."""
    store_url: str | None = None
    """Where the registry keeps artifacts, as an fsspec URL (e.g. `s3://bucket/models`);
    default: `{home}/models`."""
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    reuse_port: bool = True
    """With several workers on Linux, each listens on its own socket (`SO_REUSEPORT`) and the
    kernel spreads connections evenly; `false`: one socket shared by all, as uvicorn does."""
    trust: bool = False
    """Trust pickle-based files given as paths (same as --trust / SERVEKIT_TRUST_PICKLE=1)."""
    optimized: bool | str = True
    """Serve a bundle's verified ONNX variant when it has one (`servekit optimize`); `false`
    always serves the original artifact; a name picks another variant, e.g. `onnx-int8`."""
    default_model: str | None = None
    """Model answering the seed-compatible routes (/predict); default: the first one."""
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1)
    """Most rows accepted in one request (413 beyond)."""
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Largest request body accepted (413 beyond)."""
    reload_interval_s: float = Field(DEFAULT_RELOAD_INTERVAL_S, gt=0)
    """How often alias references (`name@production`) are checked for a new version."""
    docs: bool = True
    """Serve the interactive API documentation at /docs."""
    cors_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API (CORS), e.g. `https://app.example.com`, or `*`;
    empty (the default): no CORS headers, browsers on other origins are refused."""
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """API keys accepted besides those created with `servekit keys create`, each `KEY` or
    `KEY:predict`, `KEY:admin`, `KEY:predict+admin` (scope predict by default). As an environment
    variable: `SERVEKIT_API_KEYS=key1,key2:admin`."""
    auth: bool | None = None
    """Require an API key on every route but health and docs; default: on as soon as a key is
    configured here or stored in the registry (`servekit keys create`)."""
    api_key_cache_s: float = Field(5.0, ge=0)
    """How long a stored key's check is cached: a revoked key stops working within this time."""
    metrics_require_key: bool = False
    """Serve /metrics only to keys with the `admin` scope (default: open, for Prometheus)."""
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    security_headers: bool = True
    """nosniff, frame denial, no-referrer, no-store and a Content-Security-Policy on every answer
    (plus HSTS under TLS)."""
    ssl_certfile: Path | None = None
    """Serve HTTPS with this certificate chain (PEM); needs `ssl_keyfile`."""
    ssl_keyfile: Path | None = None
    """The private key (PEM) of `ssl_certfile`."""
    log_level: str = "info"
    log_format: Literal["json", "text"] = "json"
    """servekit's log lines, including the one access-log line per request, as JSON or plain text."""
    access_log: bool = True
    """One log line per request: request id, route, status, latency, model, version, rows."""
    metrics: bool = True
    """Serve Prometheus metrics at /metrics."""
    latency_budgets_ms: dict[str, float] = Field(default_factory=lambda: {"default": DEFAULT_LATENCY_BUDGET_MS})
    """Latency budget per route template (e.g. `/v1/models/{name}/predict`) or `default`;
    requests over budget are counted in `servekit_requests_over_budget_total`."""
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    prediction_log: PredictionLogSettings = Field(default_factory=PredictionLogSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    """Live inputs against each bundle's reference profile (window, thresholds, check interval)."""

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> Settings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("TLS needs both ssl_certfile and ssl_keyfile")
        return self


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from explicit overrides, `SERVEKIT_*` variables and a YAML file, in that order."""
    file_values: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise InvalidInput(f"cannot read the config file {config}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise InvalidInput(f"cannot read the config file {config}: {where}{problem}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"the config file {config} must be a mapping of settings")
        file_values = loaded
    flags = {k: v for k, v in overrides.items() if v is not None}
    try:
        # Precedence: flags, then SERVEKIT_* variables, then the file, then defaults.
        env_values = Settings().model_dump(exclude_unset=True)
        return Settings(**_merge(_merge(file_values, env_values), flags))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid setting {where!r}: {first['msg']}") from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, section by section (nested mappings merge key by key)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
