"""The native, versioned API under /v1: model listing, metadata and predictions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from servekit.dataplane import DataPlane, ServedModel
from servekit.errors import InvalidInput
from servekit.prediction import Prediction
from servekit.server.hotroutes import HotRoute
from servekit.server.routes._common import answer_from, answer_json, dataplane, json_response
from servekit.server.schemas import (
    ModelDetail,
    ModelSummary,
    NativePredictResponse,
    error_responses,
    json_body,
)

router = APIRouter(prefix="/v1", tags=["models"])
_PREDICT_ERRORS = error_responses(400, 404, 413, 415, 422, 500, 503, 504)


@router.get("/models", response_model=list[ModelSummary], summary="List served models")
async def list_models(request: Request) -> Response:
    return json_response([_summary(m) for m in dataplane(request).models.values()])


@router.get("/models/{name}", response_model=ModelDetail, responses=error_responses(404), summary="Model metadata")
async def model_detail(name: str, request: Request) -> Response:
    model = dataplane(request).model(name)
    detail = _summary(model)
    detail.update(source=model.source.text, error=model.error, reloads=model.history)
    if model.runner is not None:
        predictor = model.runner.predictor
        detail.update(signature=predictor.signature.to_dict(), classes=predictor.classes, metadata=predictor.metadata())
    return json_response(detail)


@router.post(
    "/models/{name}/predict",
    response_model=NativePredictResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=json_body("NativePredictRequest"),
    summary="Predict with the served version",
)
async def predict(name: str, request: Request) -> Response:
    return await answer_json(request, answer_predict, name=name)


@router.post(
    "/models/{name}/versions/{version}/predict",
    response_model=NativePredictResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=json_body("NativePredictRequest"),
    summary="Predict with a given version or alias",
)
async def predict_version(name: str, version: str, request: Request) -> Response:
    return await answer_json(request, answer_predict, name=name, version=version)


def submit_predict(
    plane: DataPlane, body: Any, request_id: str, *, name: str, version: str | None = None
) -> tuple[Awaitable[Prediction], Callable[[Prediction], dict[str, Any]]]:
    pending = plane.submit(name, version, native_rows(body))

    def finish(prediction: Prediction) -> dict[str, Any]:
        predictor = pending.predictor
        return {
            "model": predictor.name,
            "version": predictor.version,
            "predictions": plane.complete(pending, prediction).to_records(),
            "request_id": request_id,
        }

    return pending.answer, finish


answer_predict = answer_from(submit_predict)

HOT = (
    HotRoute("/v1/models/{name}/predict", answer_predict, submit=submit_predict),
    HotRoute("/v1/models/{name}/versions/{version}/predict", answer_predict, submit=submit_predict),
)
"""Routes the raw hot path answers itself (see `servekit.server.hotpath`)."""


def native_rows(body: Any) -> Any:
    """The rows of a native request body: `features` (one row) or `instances` (many)."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object with 'features' or 'instances'")
    if ("features" in body) == ("instances" in body):
        raise InvalidInput("give exactly one of 'features' (one row) or 'instances' (a list of rows)")
    if "features" in body:
        features = body["features"]
        if not isinstance(features, list | dict):
            raise InvalidInput("'features' must be a list of values or an object of named values")
        if isinstance(features, list) and features and isinstance(features[0], list | dict):
            raise InvalidInput("'features' holds one row; send several rows as 'instances'")
        return features
    instances = body["instances"]
    if not isinstance(instances, list) or not all(isinstance(r, list | dict) for r in instances):
        raise InvalidInput("'instances' must be a list of rows (lists or objects)")
    if not instances:
        raise InvalidInput("'instances' is empty")
    return instances


def _summary(model: ServedModel) -> dict[str, Any]:
    predictor = model.runner.predictor if model.runner else None
    return {
        "name": model.name,
        "version": predictor.version if predictor else None,
        "state": model.status,
        "format": predictor.runtime.format if predictor else None,
        "task": predictor.task if predictor else None,
        "alias": model.source.alias,
    }
