"""Open Inference Protocol v2 (KServe / Triton / MLServer "V2" REST) under /v2.

Clients such as `tritonclient.http` work unchanged: no Content-Type is required, the binary
tensor data extension is supported both ways, the request `id` is echoed, and every error is
`{"error": "..."}` with a 4xx/5xx status. Inputs map to the model's signature: one tensor of
shape [n, *row] (or one row), or one [n] / [n, 1] tensor per named feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from servekit import __version__
from servekit.dataplane import DataPlane
from servekit.errors import InvalidInput, MalformedRequest
from servekit.prediction import Prediction
from servekit.predictor import Predictor
from servekit.server.bodies import read_body
from servekit.server.hotroutes import HotRoute
from servekit.server.oip_codec import (
    BYTES,
    DATATYPES,
    NUMBER_TYPES,
    InferenceRequest,
    OutputTensor,
    Tensor,
    decompress,
    encode_response,
    output_tensor,
    parse_request,
    split_body,
)
from servekit.server.problems import add_error_shape
from servekit.server.routes._common import answer_from, body_limit, dataplane, json_response, request_id
from servekit.signature import Batch, Signature

__all__ = ["install", "router"]

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])

SERVER_NAME = "servekit"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT_NAME = "input"
CLASSIFIER_OUTPUTS = ("label", "probabilities")
REGRESSOR_OUTPUTS = ("predictions",)
_DATATYPES = {"float16": "FP16", "float32": "FP32", "float64": "FP64"}


class OipError(BaseModel):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OipError, "description": text}
    for status, text in {
        400: "Malformed request (bad JSON, lying binary sizes, unknown output)",
        404: "Unknown model or version",
        413: "Body or row count over the limit",
        422: "Input does not fit the model's signature",
        500: "The model failed (no internals are shown)",
        503: "Model not ready, or overloaded (see Retry-After)",
        504: "Prediction timed out",
    }.items()
}
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "An OIP `$inference_request`; with `Inference-Header-Content-Length`, the JSON is followed "
        "by the binary tensor data of the inputs that give `parameters.binary_data_size`.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                    "datatype": {"enum": list(DATATYPES)},
                                    "data": {"type": "array", "items": {}},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                            },
                        },
                    },
                    "example": {
                        "id": "42",
                        "inputs": [
                            {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
                        ],
                    },
                }
            }
        },
    }
}


def install(app: FastAPI) -> None:
    """Every error under /v2 answers `{"error": "..."}`."""
    add_error_shape(app, "/v2", error_response)


def error_response(request: Request, status: int, title: str, detail: str) -> Response:
    """The OIP error object; `detail` is already the public message (no internals for 5xx)."""
    return json_response({"error": detail}, status)


# -- health and metadata ----------------------------------------------------------------------
@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> Response:
    return json_response({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


@router.get("/health/live", summary="The server is live")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", responses={503: {"description": "A model is loading or failed"}}, summary="Server ready")
async def ready(request: Request) -> Response:
    is_ready = dataplane(request).ready
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


@router.get("/models/{model}", response_model=ModelMetadata, responses=_ERRORS, summary="Model metadata")
async def model_metadata(model: str, request: Request) -> Response:
    return json_response(_metadata(dataplane(request).runner(model).predictor))


@router.get(
    "/models/{model}/versions/{version}", response_model=ModelMetadata, responses=_ERRORS, summary="Model metadata"
)
async def model_version_metadata(model: str, version: str, request: Request) -> Response:
    return json_response(_metadata(dataplane(request).runner(model, version).predictor))


@router.get("/models/{model}/ready", responses=_ERRORS, summary="Model ready")
async def model_ready(model: str, request: Request) -> Response:
    return _model_ready(request, model, None)


@router.get("/models/{model}/versions/{version}/ready", responses=_ERRORS, summary="Model version ready")
async def model_version_ready(model: str, version: str, request: Request) -> Response:
    return _model_ready(request, model, version)


def _model_ready(request: Request, model: str, version: str | None) -> Response:
    plane = dataplane(request)
    served = plane.model(model)  # 404 for an unknown model
    if served.runner is None or served.status != "ready":
        return json_response({"name": model, "ready": False}, 503)
    plane.runner(model, version)  # 404 for a version that is not served
    return json_response({"name": model, "ready": True})


def _metadata(predictor: Predictor) -> dict[str, Any]:
    signature = predictor.signature
    manifest = predictor.manifest
    if signature.input_kind == "frame":
        inputs = [
            {"name": f.name, "datatype": _DATATYPES.get(f.dtype, "FP64") if f.numeric else BYTES, "shape": [-1]}
            for f in signature.features
        ]
    else:
        datatype = _DATATYPES.get(signature.array_dtype, "FP64")
        inputs = [{"name": INPUT_NAME, "datatype": datatype, "shape": [-1, *signature.expected_row_shape]}]
    if predictor.task == "classification":
        outputs = [{"name": "label", "datatype": _label_datatype(predictor.classes), "shape": [-1]}]
        if predictor.classes:
            outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(predictor.classes)]})
    else:
        outputs = [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
    return {
        "name": predictor.name,
        "versions": [] if predictor.version is None else [str(predictor.version)],
        "platform": f"{manifest.framework}_{manifest.format}",
        "inputs": inputs,
        "outputs": outputs,
    }


def _label_datatype(classes: list[Any] | None) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if classes and all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return BYTES


# -- inference --------------------------------------------------------------------------------
@router.post(
    "/models/{model}/infer", responses=_ERRORS, openapi_extra=_INFER_BODY, summary="Infer with the served version"
)
async def infer(model: str, request: Request) -> Response:
    return await _infer(request, model=model)


@router.post(
    "/models/{model}/versions/{version}/infer",
    responses=_ERRORS,
    openapi_extra=_INFER_BODY,
    summary="Infer with a given version or alias",
)
async def infer_version(model: str, version: str, request: Request) -> Response:
    return await _infer(request, model=model, version=version)


async def _infer(request: Request, **params: str) -> Response:
    body = await read_body(request, body_limit(request))
    headers = {k: request.headers[k] for k in (HEADER_LENGTH.lower(), "content-encoding") if k in request.headers}
    content, media, extra = await answer_infer(dataplane(request), body, headers, request_id(request), **params)
    return Response(content, media_type=media, headers=extra)


def submit_infer(
    plane: DataPlane,
    body: bytes,
    headers: Mapping[str, str],
    request_id: str,
    *,
    model: str,
    version: str | None = None,
) -> tuple[Awaitable[Prediction], Callable[[Prediction], tuple[bytes, str, dict[str, str]]]]:
    """The infer route's logic on raw bytes, in two halves around its wait (see `answer_infer`)."""
    runner = plane.runner(model, version)
    limit = plane.settings.max_body_bytes
    body = decompress(body, headers.get("content-encoding"), limit)
    parsed = parse_request(*split_body(body, headers.get(HEADER_LENGTH.lower())))
    predictor = runner.predictor
    wanted = _wanted_outputs(parsed, predictor)
    pending = plane.submit_batch(runner, to_batch(predictor.signature, parsed.inputs))

    def finish(prediction: Prediction) -> tuple[bytes, str, dict[str, str]]:
        produced = _outputs(plane.complete(pending, prediction), predictor)
        chosen = [(name, parsed.binary_output) for name in produced] if wanted is None else wanted
        missing = [name for name, _ in chosen if name not in produced]
        if missing:
            raise InvalidInput(f"this model gives no {missing[0]!r} output", hint=f"It gives: {', '.join(produced)}")
        header: dict[str, Any] = {"model_name": predictor.name}
        if predictor.version is not None:
            header["model_version"] = str(predictor.version)
        header["id"] = parsed.id if parsed.id is not None else request_id
        content, header_length = encode_response(header, [(produced[name], binary) for name, binary in chosen])
        if header_length is None:
            return content, "application/json", {}
        return content, "application/octet-stream", {HEADER_LENGTH: str(header_length)}

    return pending.answer, finish


answer_infer = answer_from(submit_infer)
"""The infer route's logic on raw bytes, shared by the endpoint and the raw hot path."""


def error_body(instance: str, status: int, title: str, detail: str, request_id: str | None) -> tuple[bytes, bytes]:
    """The OIP error object for the raw hot path."""
    return b"application/json", orjson.dumps({"error": detail})


HOT = (
    HotRoute("/v2/models/{model}/infer", answer_infer, raw=True, error_body=error_body, submit=submit_infer),
    HotRoute(
        "/v2/models/{model}/versions/{version}/infer",
        answer_infer,
        raw=True,
        error_body=error_body,
        submit=submit_infer,
    ),
)
"""Routes the raw hot path answers itself (see `servekit.server.hotpath`)."""


def _wanted_outputs(parsed: InferenceRequest, predictor: Predictor) -> list[tuple[str, bool]] | None:
    """(name, binary) of each requested output, checked before the model runs; `None`: all of them."""
    names = CLASSIFIER_OUTPUTS if predictor.task == "classification" else REGRESSOR_OUTPUTS
    if parsed.outputs is None:
        return None
    wanted: list[tuple[str, bool]] = []
    for output in parsed.outputs:
        if output.name not in names:
            raise MalformedRequest(f"unknown output {output.name!r}; this model gives {', '.join(names)}")
        if all(output.name != name for name, _ in wanted):
            wanted.append((output.name, parsed.binary_output if output.binary is None else output.binary))
    return wanted


def _outputs(prediction: Prediction, predictor: Predictor) -> dict[str, OutputTensor]:
    if predictor.task != "classification":
        return {"predictions": output_tensor("predictions", prediction.outputs)}
    outputs = {"label": output_tensor("label", prediction.outputs)}
    if prediction.probabilities is not None:
        outputs["probabilities"] = output_tensor("probabilities", prediction.probabilities)
    return outputs


def to_batch(signature: Signature, inputs: list[Tensor]) -> Batch:
    """One tensor of rows, or one [n] / [n, 1] tensor per feature, as a batch for the model."""
    if len(inputs) == 1 and not signature.has_feature(inputs[0].name):
        tensor = inputs[0]
        if tensor.datatype not in NUMBER_TYPES:
            _check_datatype(signature, tensor, text_ok=any(not f.numeric for f in signature.features))
        return signature.batch_from_array(tensor.data)
    if signature.row_shape is not None:
        raise InvalidInput(
            f"this model takes one input tensor of shape {[-1, *signature.row_shape]}, got {len(inputs)} inputs"
        )
    features = {f.name: f for f in signature.features}
    columns: dict[str, np.ndarray] = {}
    for tensor in inputs:
        feature = features.get(tensor.name)
        _check_datatype(signature, tensor, text_ok=feature is not None and not feature.numeric)
        shape = tensor.data.shape
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(
                f"input {tensor.name!r} has shape {list(shape)}; an input per feature must have shape [n] or [n, 1]"
            )
        columns[tensor.name] = tensor.data.reshape(-1)
    return signature.batch_from_columns(columns)


def _check_datatype(signature: Signature, tensor: Tensor, *, text_ok: bool) -> None:
    if tensor.datatype in NUMBER_TYPES:
        return
    if tensor.datatype == BYTES and text_ok and signature.input_kind == "frame":
        return
    raise InvalidInput(
        f"input {tensor.name!r} is {tensor.datatype}; this model takes numbers: send an INT*, UINT* or FP* tensor"
    )
