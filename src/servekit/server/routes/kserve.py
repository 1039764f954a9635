"""KServe v1 prediction: `POST /v1/models/{name}:predict` with `{"instances": [...]}`.

The answer is `{"predictions": [...]}`: one label per row for classifiers, one value (or list of
values) per row for regressors. Errors on `:predict` are `{"error": "..."}` like KServe's own
servers; the other `/v1/models/...` routes (the native API) keep `application/problem+json`.
`GET /v1/models/{name}` is the native metadata route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from servekit.errors import InvalidInput
from servekit.prediction import Prediction
from servekit.server.bodies import read_json
from servekit.server.problems import add_error_shape, problem_response
from servekit.server.routes._common import body_limit, dataplane, json_response

__all__ = ["install", "router"]

router = APIRouter(tags=["kserve v1"])

PREFIX = "/v1/models/"
SUFFIX = ":predict"


class KServeError(BaseModel):
    error: str


class KServePredictResponse(BaseModel):
    predictions: list[Any]


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": KServeError, "description": text}
    for status, text in {
        400: "Malformed body",
        404: "Unknown model",
        413: "Body or row count over the limit",
        415: "Unsupported Content-Type",
        422: "Input does not fit the model's signature",
        500: "The model failed (no internals are shown)",
        503: "Model not ready, or overloaded (see Retry-After)",
        504: "Prediction timed out",
    }.items()
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "instances": {
                            "type": "array",
                            "items": {},
                            "minItems": 1,
                            "description": "Rows: lists or objects.",
                        },
                        "inputs": {"type": "array", "items": {}, "minItems": 1, "description": "Same as instances."},
                    },
                    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
                    "example": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
                }
            }
        },
    }
}


def install(app: FastAPI) -> None:
    """`:predict` errors as `{"error": ...}`; other paths under /v1/models/ stay problem+json."""
    add_error_shape(app, PREFIX, error_response)


def error_response(request: Request, status: int, title: str, detail: str) -> Response:
    if not request.url.path.endswith(SUFFIX):
        return problem_response(request, status, title, detail)
    return json_response({"error": detail}, status)


@router.post(
    "/v1/models/{name}:predict",
    response_model=KServePredictResponse,
    responses=_ERRORS,
    openapi_extra=_BODY,
    summary="Predict (KServe v1 protocol)",
)
async def kserve_predict(name: str, request: Request) -> Response:
    plane = dataplane(request)
    runner = plane.runner(name)
    rows = instances(await read_json(request, body_limit(request)), runner.predictor.signature.n_features)
    prediction = await plane.infer_batch(runner, runner.predictor.batch(rows))
    return json_response({"predictions": predictions(prediction)})


def instances(body: Any, n_features: int) -> list[Any]:
    """The rows of `{"instances": [...]}` or `{"inputs": [...]}`; scalars are rows of one-feature models."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise InvalidInput("the body must be a JSON object with either 'instances' or 'inputs' (a list of rows)")
    key = "instances" if "instances" in body else "inputs"
    rows = body[key]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(f"'{key}' must be a non-empty list of rows")
    if n_features == 1 and not any(isinstance(r, list | dict) for r in rows):
        return [[r] for r in rows]
    for number, row in enumerate(rows):
        if not isinstance(row, list | dict):
            raise InvalidInput(f"{key}[{number}] must be a row: a list of feature values or an object of named values")
    return rows


def predictions(prediction: Prediction) -> list[Any]:
    """Labels (classifiers) or values (regressors), one per row, as JSON values."""
    return [record["prediction"] for record in Prediction(prediction.outputs).to_records()]
