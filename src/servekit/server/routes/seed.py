"""Seed-compatible routes: the shapes tutorials teach, answered by the default model.

`POST /predict` and `POST /v1/predict` take `{"features": [...]}` and answer
`{"prediction", "probabilities", "confidence"}`; `POST /predict/batch` takes a list of those.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from servekit.dataplane import DataPlane
from servekit.errors import InvalidInput
from servekit.prediction import Prediction
from servekit.server.hotroutes import HotRoute
from servekit.server.routes._common import answer_from, answer_json, dataplane, json_response
from servekit.server.schemas import (
    SeedHealth,
    SeedModelInfo,
    SeedPredictResponse,
    error_responses,
    json_body,
)

router = APIRouter(tags=["compatible"])
_ERRORS = error_responses(400, 404, 413, 415, 422, 500, 503, 504)


@router.post(
    "/predict",
    response_model=SeedPredictResponse,
    responses=_ERRORS,
    openapi_extra=json_body("SeedPredictRequest"),
    summary="Predict one row (default model)",
)
async def predict(request: Request) -> Response:
    return await answer_json(request, answer_one)


@router.post(
    "/v1/predict",
    response_model=SeedPredictResponse,
    responses=_ERRORS,
    openapi_extra=json_body("SeedPredictRequest"),
    summary="Predict one row (default model)",
)
async def predict_v1(request: Request) -> Response:
    return await answer_json(request, answer_one)


@router.post(
    "/predict/batch",
    response_model=list[SeedPredictResponse],
    responses=_ERRORS,
    openapi_extra=json_body("SeedPredictRequest", array=True),
    summary="Predict many rows (default model)",
)
async def predict_batch(request: Request) -> Response:
    return await answer_json(request, answer_batch)


def submit_one(
    plane: DataPlane, body: Any, request_id: str
) -> tuple[Awaitable[Prediction], Callable[[Prediction], dict[str, Any]]]:
    pending = plane.submit(plane.default_name, None, _features(body, "the body"))
    return pending.answer, lambda prediction: _seed_records(plane.complete(pending, prediction))[0]


def submit_batch(
    plane: DataPlane, body: Any, request_id: str
) -> tuple[Awaitable[Prediction], Callable[[Prediction], list[dict[str, Any]]]]:
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        rows = body["instances"]
    elif isinstance(body, list):
        rows = [_features(item, f"item {i}") for i, item in enumerate(body)]
    else:
        raise InvalidInput('send a list of {"features": [...]} objects')
    if not rows:
        raise InvalidInput("the batch is empty")
    pending = plane.submit(plane.default_name, None, rows)
    return pending.answer, lambda prediction: _seed_records(plane.complete(pending, prediction))


answer_one = answer_from(submit_one)
answer_batch = answer_from(submit_batch)

HOT = (
    HotRoute("/predict", answer_one, submit=submit_one),
    HotRoute("/v1/predict", answer_one, submit=submit_one),
    HotRoute("/predict/batch", answer_batch, submit=submit_batch),
)
"""Routes the raw hot path answers itself (see `servekit.server.hotpath`)."""


@router.get("/health", response_model=SeedHealth, summary="Health (tutorial shape)")
async def health(request: Request) -> Response:
    loaded = dataplane(request).ready
    return json_response({"status": "healthy" if loaded else "loading", "model_loaded": loaded}, 200 if loaded else 503)


@router.get("/model/info", response_model=SeedModelInfo, responses=error_responses(503), summary="Default model info")
async def model_info(request: Request) -> Response:
    plane = dataplane(request)
    predictor = plane.runner(plane.default_name).predictor
    manifest = predictor.manifest
    return json_response(
        {
            "model_name": manifest.name,
            "model_version": None if manifest.version is None else str(manifest.version),
            "training_date": manifest.training_date,
            "features": predictor.signature.names,
            "accuracy": manifest.metrics.get("accuracy"),
            "framework": manifest.framework,
            "framework_version": manifest.framework_version,
            "python_version": manifest.python_version,
            "serving_python_version": platform.python_version(),
            "task": manifest.task,
            "classes": manifest.classes,
            "metrics": manifest.metrics,
        }
    )


def _features(body: Any, where: str) -> Any:
    if not isinstance(body, dict) or "features" not in body:
        raise InvalidInput(f'{where} must be an object like {{"features": [...]}}')
    features = body["features"]
    if not isinstance(features, list | dict) or (
        isinstance(features, list) and features and isinstance(features[0], list | dict)
    ):
        raise InvalidInput(f"{where}: 'features' must be one row: a list of values or an object of named values")
    return features


def _seed_records(prediction: Prediction) -> list[dict[str, Any]]:
    labels = prediction.values()
    if prediction.probabilities is None:
        return [{"prediction": label} for label in labels]
    return [
        {"prediction": label, "probabilities": row, "confidence": max(row)}
        for label, row in zip(labels, prediction.probabilities.tolist(), strict=True)
    ]
