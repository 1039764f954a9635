"""Serve one model inside an existing Flask application.

    from flask import Flask
    from servekit.integrations.flask import blueprint

    app = Flask(__name__)
    app.register_blueprint(blueprint("iris.bundle", url_prefix="/iris"))

The routes mirror the native API for that one model — `POST /predict` (`features` or
`instances`), `GET /model`, `GET /health` — with the same bodies and the same
`application/problem+json` errors as the ASGI app. The body limit is Flask's
`MAX_CONTENT_LENGTH` (or `request.max_content_length`) when set, else servekit's default.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from servekit.errors import MalformedRequest, PayloadTooLarge, ServekitError, UnsupportedMediaType
from servekit.loading import load
from servekit.predictor import Predictor
from servekit.runtimes.base import import_optional
from servekit.server.bodies import JSON_TYPES, parse_json
from servekit.server.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE
from servekit.server.routes._common import JSON_OPTIONS
from servekit.server.routes.native import native_rows
from servekit.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS

if TYPE_CHECKING:
    import flask

__all__ = ["blueprint"]

logger = logging.getLogger("servekit.flask")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SLUG = re.compile(r"[^a-z0-9]+")
_ROUTES = {"predict": "POST", "model": "GET", "health": "GET"}
_CHUNK = 64 * 1024


def blueprint(
    model: Predictor | str | Path,
    *,
    name: str | None = None,
    trust: bool = False,
    url_prefix: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> flask.Blueprint:
    """A Flask blueprint serving `model`: a loaded `Predictor`, a model file, a bundle folder or
    a registry reference (loaded now with `servekit.load`; pickle-based files need `trust=True`).

    `name` is the blueprint's name (default: the model's). With `url_prefix`, unknown paths under
    it answer a problem+json 404 too.
    """
    flask = import_optional("flask", None)
    predictor = model if isinstance(model, Predictor) else load(model, trust=trust)
    source = None if isinstance(model, Predictor) else str(model)
    bp = flask.Blueprint(name or predictor.name.replace(".", "_"), __name__, url_prefix=url_prefix)

    @bp.before_request
    def _request_id() -> None:
        given = flask.request.headers.get(REQUEST_ID_HEADER, "")
        flask.g.servekit_request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex

    @bp.after_request
    def _echo_request_id(response: flask.Response) -> flask.Response:
        response.headers[REQUEST_ID_HEADER] = _request_id_of(flask)
        return response

    @bp.post("/predict")
    def predict() -> flask.Response:
        rows = native_rows(_read_json(flask.request))
        batch = predictor.batch(rows)
        if len(batch) > max_rows:
            raise PayloadTooLarge(
                f"the request has {len(batch)} rows; this server accepts at most {max_rows}",
                hint="Split it into smaller requests or use `servekit score` for files",
            )
        prediction = predictor.predict_batch(batch)
        body = {
            "model": predictor.name,
            "version": predictor.version,
            "predictions": prediction.to_records(),
            "request_id": _request_id_of(flask),
        }
        return _json(flask, body)

    @bp.get("/model")
    def model_detail() -> flask.Response:
        return _json(flask, _detail(predictor, source))

    @bp.get("/health")
    def health() -> flask.Response:
        return _json(flask, {"status": "ready", "models": {predictor.name: "ready"}})

    if url_prefix:

        @bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def unknown(rest: str) -> flask.Response:
            allowed = _ROUTES.get(rest.strip("/"))
            if allowed:
                response = _problem(flask, 405, HTTPStatus.METHOD_NOT_ALLOWED.phrase, "Method Not Allowed")
                response.headers["Allow"] = allowed
                return response
            return _problem(flask, 404, "Not Found", f"no route {flask.request.path}")

    @bp.errorhandler(ServekitError)
    def _servekit_error(exc: ServekitError) -> flask.Response:
        if exc.status >= 500:
            logger.error("%s %s failed: %s", flask.request.method, flask.request.path, exc.detail)
        return _problem(flask, int(exc.status), exc.title, exc.public_message)

    @bp.errorhandler(Exception)
    def _unexpected_error(exc: Exception) -> flask.Response:
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException) and exc.code is not None:
            phrase = HTTPStatus(exc.code).phrase
            return _problem(flask, exc.code, phrase, exc.description or phrase)
        logger.exception("%s %s raised", flask.request.method, flask.request.path)
        return _problem(flask, 500, "Internal error", "The server failed to answer this request; see the server log")

    return bp


def _read_json(request: flask.Request) -> Any:
    """The body parsed as JSON, with the same checks and messages as the ASGI routes."""
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in JSON_TYPES and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not accepted here; send application/json")
    limit = request.max_content_length or DEFAULT_MAX_BODY_BYTES
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; this server accepts at most {limit}")
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    chunks: list[bytes] = []
    received = 0
    try:
        while chunk := request.stream.read(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the body is over {limit} bytes, the most this server accepts")
            chunks.append(chunk)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is over {limit} bytes, the most this server accepts") from None
    except (HTTPException, OSError, ValueError) as exc:
        raise MalformedRequest(f"the request body could not be read: {type(exc).__name__}") from None
    return parse_json(b"".join(chunks))


def _detail(predictor: Predictor, source: str | None) -> dict[str, Any]:
    """The native `GET /v1/models/{name}` body for this one model."""
    return {
        "name": predictor.name,
        "version": predictor.version,
        "state": "ready",
        "format": predictor.runtime.format,
        "task": predictor.task,
        "alias": None,
        "source": source or predictor.name,
        "error": None,
        "reloads": [],
        "signature": predictor.signature.to_dict(),
        "classes": predictor.classes,
        "metadata": predictor.metadata(),
    }


def _request_id_of(flask: Any) -> str:
    if "servekit_request_id" not in flask.g:
        flask.g.servekit_request_id = uuid.uuid4().hex
    return str(flask.g.servekit_request_id)


def _json(flask: Any, data: Any, status: int = 200) -> flask.Response:
    return flask.Response(orjson.dumps(data, option=JSON_OPTIONS), status=status, mimetype="application/json")


def _problem(flask: Any, status: int, title: str, detail: str) -> flask.Response:
    """The same problem document as `servekit.server.problems.problem_response`."""
    body = {
        "type": PROBLEM_TYPE_BASE + _SLUG.sub("-", title.lower()).strip("-"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": flask.request.path,
        "request_id": _request_id_of(flask),
    }
    return flask.Response(orjson.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
