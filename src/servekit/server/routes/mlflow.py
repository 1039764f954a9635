"""The MLflow scoring protocol (`mlflow models serve`), answered by the default model.

`POST /invocations` takes JSON with exactly one of `dataframe_split`, `dataframe_records`,
`instances` or `inputs` (plus optional `params`, accepted and ignored), `text/csv` with a header
row, or Parquet; it answers `{"predictions": [...]}`: labels for classifiers, values for
regressors, as MLflow's pyfunc returns the model's `predict` output. `GET /ping` and
`GET /version` complete the protocol. Errors are MLflow's body, `{"error_code", "message"}`,
never with a stack trace; unusable input is 400 `BAD_REQUEST`, as MLflow answers it.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from servekit import __version__
from servekit.errors import InvalidInput, MalformedRequest, UnsupportedMediaType
from servekit.server.bodies import check_identity_encoding, parse_json, read_body
from servekit.server.problems import add_error_shape
from servekit.server.routes._common import body_limit, dataplane, json_response
from servekit.signature import Batch, Signature

__all__ = ["batch_from_csv", "batch_from_json", "batch_from_parquet", "install", "mlflow_error", "router"]

router = APIRouter(tags=["mlflow"])

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"
CONTENT_TYPES = (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV, CONTENT_TYPE_PARQUET)
INPUT_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ROUTES = ("/invocations", "/ping", "/version")

# MLflow's error codes by HTTP status (`mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS`, inverted).
_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class MlflowPredictions(BaseModel):
    predictions: list[Any]


class MlflowError(BaseModel):
    error_code: str
    message: str


_EXAMPLES = {
    "dataframe_split": {"value": {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, 4.0]]}}},
    "dataframe_records": {"value": {"dataframe_records": [{"a": 1.0, "b": 2.0}]}},
    "instances": {"value": {"instances": [[1.0, 2.0], [3.0, 4.0]]}},
    "inputs": {"value": {"inputs": {"a": [1.0, 3.0], "b": [2.0, 4.0]}}},
}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            CONTENT_TYPE_JSON: {
                "schema": {"type": "object", "oneOf": [{"required": [field]} for field in INPUT_FIELDS]},
                "examples": _EXAMPLES,
            },
            CONTENT_TYPE_CSV: {"schema": {"type": "string"}, "example": "a,b\n1.0,2.0\n"},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": MlflowError, "description": d}
    for s, d in {
        400: "Unusable input",
        404: "No default model",
        413: "Body or row count over the limit",
        415: "Unsupported Content-Type",
        503: "Model not ready, or overloaded",
        504: "Prediction timed out",
    }.items()
}


@router.post(
    "/invocations",
    response_model=MlflowPredictions,
    responses=_ERRORS,
    openapi_extra=_OPENAPI,
    summary="Predict (MLflow scoring protocol, default model)",
)
async def invocations(request: Request) -> Response:
    content_type = media_type(request.headers.get("content-type"))
    check_identity_encoding(request.headers.get("content-encoding"))
    plane = dataplane(request)
    runner = plane.runner(plane.default_name)
    body = await read_body(request, body_limit(request))
    signature = runner.predictor.signature
    if content_type == CONTENT_TYPE_CSV:
        batch = batch_from_csv(signature, body)
    elif content_type == CONTENT_TYPE_PARQUET:
        batch = batch_from_parquet(signature, body)
    else:
        batch = batch_from_json(signature, parse_json(body))
    prediction = await plane.infer_batch(runner, batch)
    return json_response({"predictions": prediction.outputs.tolist()})


@router.get(
    "/ping",
    response_class=PlainTextResponse,
    responses={503: {"description": "The model is not ready", "content": {"text/plain": {}}}},
    summary="Health (MLflow scoring protocol)",
)
async def ping(request: Request) -> Response:
    return Response("\n", status_code=200 if dataplane(request).ready else 503, media_type="text/plain")


@router.get("/version", response_class=PlainTextResponse, summary="Server version (MLflow scoring protocol)")
async def version() -> Response:
    return Response(__version__, media_type="text/plain")


def install(app: FastAPI) -> None:
    """Errors on the MLflow routes answer in MLflow's shape."""
    for prefix in ROUTES:
        add_error_shape(app, prefix, mlflow_error)


def mlflow_error(request: Request, status: int, title: str, detail: str) -> Response:
    """MLflow's error body. MLflow answers any unusable input with 400, so 422 becomes 400."""
    if status == 422:
        status = 400
    code = _ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return Response(
        orjson.dumps({"error_code": code, "message": detail}), status_code=status, media_type=CONTENT_TYPE_JSON
    )


# -- parsing (pure: no HTTP below) ---------------------------------------------------------------
def media_type(header: str | None) -> str:
    """The request's media type; 415 for anything MLflow would not read (a missing header is JSON)."""
    if not header:
        return CONTENT_TYPE_JSON
    mime, *parameters = (part.strip() for part in header.split(";"))
    mime = mime.lower()
    if mime not in CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {mime!r} is not accepted here", hint=f"Send one of {', '.join(CONTENT_TYPES)}"
        )
    for parameter in filter(None, parameters):
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise UnsupportedMediaType(f"unknown Content-Type parameter {key.strip()!r}; only 'charset' is read")
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("this server reads UTF-8 only", hint="Send charset=utf-8")
    return mime


def batch_from_json(signature: Signature, body: Any) -> Batch:
    """A batch from a parsed MLflow JSON body."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object with exactly one of {', '.join(INPUT_FIELDS)}")
    given = [field for field in INPUT_FIELDS if field in body]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise InvalidInput(f"the body must have exactly one of {', '.join(INPUT_FIELDS)}; it has {found}")
    field = given[0]
    data = body[field]
    if field == "dataframe_split":
        return _split(signature, data)
    if field == "dataframe_records":
        if not isinstance(data, list) or not all(isinstance(r, dict | list) for r in data):
            raise InvalidInput("'dataframe_records' must be a list of records (objects of column values)")
        return signature.batch(data) if data else _no_rows()
    if isinstance(data, dict):
        return _columns(signature, field, data)
    if not isinstance(data, list):
        raise InvalidInput(f"'{field}' must be a list of rows or an object of columns")
    return signature.batch(data) if data else _no_rows()


def batch_from_csv(signature: Signature, body: bytes) -> Batch:
    """A batch from CSV text: a header row of feature names, then one line per row."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedRequest("the CSV body is not UTF-8 text") from None
    if signature.input_kind == "array" and all(f.numeric for f in signature.features):
        fast = _numeric_csv(signature, text)
        if fast is not None:
            return fast
    try:
        lines = [line for line in csv.reader(io.StringIO(text)) if line]
    except csv.Error as exc:
        raise MalformedRequest(f"the body is not valid CSV: {exc}") from None
    if not lines:
        raise MalformedRequest("the CSV body is empty", hint="Send a header row of feature names, then the rows")
    header, rows = [name.strip() for name in lines[0]], lines[1:]
    _check_widths(rows, len(header), "row")
    rows = _reorder(signature, header, rows)
    if not rows:
        _no_rows()
    return signature.batch_from_rows(_csv_values(signature, rows))


def _numeric_csv(signature: Signature, text: str) -> Batch | None:
    """pandas' C parser for the common case (all numbers, no gaps, plain header); `None` sends
    anything else to the exact, slower path that names the bad cell."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ParserWarning means pandas would drop or shift cells
            frame = pd.read_csv(io.StringIO(text), index_col=False, low_memory=False)
        header = next(csv.reader(io.StringIO(text)))
    except Exception:
        return None
    if [str(c) for c in frame.columns] != header or not len(frame):
        return None  # pandas renamed a column (a duplicate), or there are no rows
    if any(dtype.kind not in "fi" for dtype in frame.dtypes):
        return None
    array = frame.to_numpy(dtype="float64")
    if np.isnan(array).any():
        return None  # empty cells: the exact path says "missing value" and where
    order = _order(signature, [name.strip() for name in header])
    return signature.batch_from_array(array if order is None else array[:, order])


def batch_from_parquet(signature: Signature, body: bytes) -> Batch:
    """A batch from a Parquet file (`DataFrame.to_parquet()`), matched by column name."""
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(body))
    except ImportError:
        from servekit.runtimes.base import import_optional

        import_optional("pyarrow", None)  # raises MissingDependency naming the package
        raise
    except Exception:
        raise MalformedRequest(
            "the body is not a Parquet file", hint="Send the bytes of DataFrame.to_parquet(), or use JSON or CSV"
        ) from None
    columns = [str(c) for c in frame.columns]
    return signature.batch_from_rows(_reorder(signature, columns, frame.to_numpy(dtype=object).tolist()))


def _split(signature: Signature, split: Any) -> Batch:
    """pandas `orient="split"`: `data`, optional `columns` and `index` (ignored)."""
    if not isinstance(split, dict) or "data" not in split or set(split) - {"columns", "data", "index"}:
        raise InvalidInput("'dataframe_split' must be an object with 'data' and optionally 'columns' and 'index'")
    rows, columns, index = split["data"], split.get("columns"), split.get("index")
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise InvalidInput("'dataframe_split.data' must be a list of rows (lists of values)")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise InvalidInput(f"'dataframe_split.index' must be a list of one label per row ({len(rows)})")
    if not rows:
        _no_rows()
    if columns is None:
        return signature.batch_from_rows(rows)
    if not isinstance(columns, list) or not all(isinstance(c, str | int) for c in columns):
        raise InvalidInput("'dataframe_split.columns' must be a list of column names")
    _check_widths(rows, len(columns), "row")
    return signature.batch_from_rows(_reorder(signature, [str(c) for c in columns], rows))


def _columns(signature: Signature, field: str, data: dict[str, Any]) -> Batch:
    """An object of columns (`{"a": [1, 2], "b": [3, 4]}`), or of one row's values."""
    values = list(data.values())
    if values and not any(isinstance(v, list) for v in values):
        return signature.batch_from_records([data])
    if not values or not all(isinstance(v, list) for v in values):
        raise InvalidInput(f"'{field}' as an object must map each column name to a list of values")
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise InvalidInput(f"the columns of '{field}' have different lengths")
    rows = [list(row) for row in zip(*values, strict=True)]
    if not rows:
        _no_rows()
    return signature.batch_from_rows(_reorder(signature, list(data), rows))


def _reorder(signature: Signature, names: list[str], rows: list[list[Any]]) -> list[list[Any]]:
    """Rows with their columns in the model's feature order."""
    order = _order(signature, names)
    return rows if order is None else [[row[i] for i in order] for row in rows]


def _order(signature: Signature, names: list[str]) -> list[int] | None:
    """Where each feature is among `names` (`None`: already in order).

    Names must match the features, in any order. Columns named 0..n-1 — a DataFrame built from
    an array, as MLflow's client sends it — are taken in order."""
    expected = signature.names
    if names == expected or names == [str(i) for i in range(signature.n_features)]:
        return None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"column(s) {', '.join(map(repr, duplicates))} appear more than once")
    if set(names) != set(expected):
        signature.batch_from_columns({name: [] for name in names})  # raises the precise name mismatch
    return [names.index(name) for name in expected]


def _check_widths(rows: Sequence[Sequence[Any]], width: int, what: str) -> None:
    for number, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput(f"{what} {number} has {len(row)} values for {width} columns")


def _csv_values(signature: Signature, rows: list[list[str]]) -> list[list[Any]]:
    """CSV cells as numbers for numeric features, strings for text ones; an empty cell is missing."""
    numeric = [f.numeric for f in signature.features]
    out = []
    for number, row in enumerate(rows):
        values: list[Any] = []
        for column, cell in enumerate(row):
            text = cell.strip()
            if not text:
                values.append(None)
            elif not numeric[column]:
                values.append(cell)
            else:
                try:
                    values.append(float(text))
                except ValueError:
                    name = signature.features[column].name
                    shown = text if len(text) <= 20 else text[:20] + "…"
                    raise InvalidInput(
                        f"row {number}, feature {name!r}: expected a number, got string {shown!r}"
                    ) from None
        out.append(values)
    return out


def _no_rows() -> NoReturn:
    raise InvalidInput("the request has no rows")
