"""Request and response shapes, for the OpenAPI document only.

Bodies are parsed with orjson straight into the model's `Signature` (no per-element pydantic
objects on the hot path); these models keep `/docs` complete and accurate.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

Value = float | int | str | bool | None
Row = Annotated[list[Value], Field(min_length=1)] | dict[str, Value]
"""One row: values in feature order, or an object of named values."""


class NativeRow(BaseModel):
    """One row."""

    features: Row


class NativeRows(BaseModel):
    """Many rows."""

    instances: Annotated[list[Row], Field(min_length=1)]


def _native_schema(schema: dict[str, Any]) -> None:
    # `oneOf`, not pydantic's `anyOf`: a body with both keys matches both, and is refused.
    schema["oneOf"] = schema.pop("anyOf")
    schema["examples"] = [
        {"features": [5.1, 3.5, 1.4, 0.2]},
        {"features": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}},
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
    ]


class NativePredictRequest(RootModel[NativeRow | NativeRows]):
    """One row as `features` (a list in feature order, or an object of named features), or many
    rows as `instances` (a list of lists or of objects): exactly one of the two."""

    model_config = ConfigDict(json_schema_extra=_native_schema)


class PredictionRecord(BaseModel):
    prediction: Any = Field(description="Predicted label (classifiers) or value (regressors).")
    probabilities: dict[str, float] | None = Field(None, description="Probability of each class (classifiers).")
    confidence: float | None = Field(None, description="The highest class probability (classifiers).")


class NativePredictResponse(BaseModel):
    model: str
    version: int | None
    predictions: list[PredictionRecord]
    request_id: str


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None


class SeedPredictRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"features": [5.1, 3.5, 1.4, 0.2]}]})

    features: Row


class SeedPredictResponse(BaseModel):
    prediction: Any
    probabilities: list[float] | None = None
    confidence: float | None = None


class SeedHealth(BaseModel):
    status: str = Field(examples=["healthy"])
    model_loaded: bool


class Status(BaseModel):
    status: str
    models: dict[str, str] = Field(default_factory=dict, description="State of each model: loading, ready or failed.")


class FeatureDriftAnswer(BaseModel):
    feature: str
    kind: str = Field(description="numeric or categorical")
    state: str = Field(description="ok, drift or not_assessable")
    reason: str | None = Field(None, description="Why the feature could not be assessed, or what drifted")
    n_current: int
    n_missing: int
    n_reference: int
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    chi2_statistic: float | None = None
    chi2_pvalue: float | None = None
    psi: float | None = Field(None, description="Population stability index over the reference bins")
    threshold: float | None = Field(None, description="p-value threshold applied to this feature")
    score: float | None = None


class DriftAnswer(BaseModel):
    model: str
    version: int | None
    status: str = Field(description="ok, drift, or no_reference when the bundle has no profile")
    window: dict[str, int] = Field(description="Rows in the sliding window, its size and the minimum assessed")
    features: list[FeatureDriftAnswer]
    rows: int | None = None
    generated_at: str | None = None
    drift: bool | None = None
    drifted: list[str] | None = None
    assessed: int | None = None
    thresholds: dict[str, float] | None = None
    detail: str | None = None


class SeedModelInfo(BaseModel):
    model_name: str
    model_version: str | None
    training_date: str | None
    features: list[str]
    accuracy: float | None
    framework: str
    framework_version: str
    python_version: str
    task: str
    classes: list[Any] | None


class ModelSummary(BaseModel):
    name: str
    version: int | None
    state: str
    format: str | None
    task: str | None
    alias: str | None = None


class ModelDetail(ModelSummary):
    source: str
    error: str | None = None
    signature: dict[str, Any] | None = None
    classes: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    reloads: list[dict[str, Any]] = Field(default_factory=list)


BODY_SCHEMAS: dict[str, type[BaseModel]] = {
    "NativePredictRequest": NativePredictRequest,
    "SeedPredictRequest": SeedPredictRequest,
}


def json_body(schema: str, *, array: bool = False) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body that the route parses itself."""
    ref: dict[str, Any] = {"$ref": f"#/components/schemas/{schema}"}
    if array:
        ref = {"type": "array", "items": ref, "minItems": 1}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document problem+json answers for the given statuses."""
    descriptions = {
        400: "Malformed body (not JSON, wrong nesting)",
        404: "Unknown model or version",
        413: "Body or row count over the limit",
        415: "Unsupported Content-Type",
        422: "Input does not fit the model's signature",
        500: "The model failed (no internals are shown)",
        503: "Model not ready, or overloaded (see Retry-After)",
        504: "Prediction timed out",
    }
    return {
        s: {"model": Problem, "description": descriptions[s], "content": {"application/problem+json": {}}}
        for s in statuses
    }
