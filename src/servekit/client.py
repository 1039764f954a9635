"""`Client` and `AsyncClient`: call a servekit server's native API from Python.

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        result = client.predict("iris", [5.1, 3.5, 1.4, 0.2])
        result.labels          # ['setosa']

Both clients share everything but the I/O: `_ClientBase` builds requests and reads answers, and
`_Attempts` (driven by a `RetryPolicy`) decides after each attempt whether to give up or how long
to wait. Every call is safe to repeat (reads, and predictions, which are idempotent), so:

- connection failures, broken connections and timeouts are retried with exponential backoff and
  full jitter: attempt *n* waits `uniform(0, min(max_backoff, backoff * 2**n))`;
- 429 and 503 are retried. A `Retry-After` (seconds or HTTP date) is honoured as a floor (plus up
  to `backoff` of jitter so clients told the same value do not all come back at once); when it
  asks for longer than `max_backoff` the client does not sleep that long behind the caller's back:
  it raises at once (`Overloaded.retry_after` / `RateLimited.retry_after` say how long to wait);
- 502 is retried like a connection failure (a proxy in front of the server had a glitch);
- 504 (the server's prediction timeout) is retried once only: a prediction that timed out will
  likely time out again, and repeating it adds load to a server that is already slow;
- every other error (400, 401, 403, 404, 409, 413, 415, 422, 500, ...) is raised at once.

`retries` counts the retries after the first attempt; `timeout` applies to each attempt.
Errors are the classes of `servekit.errors`, chosen by the problem's status and title, with the
problem's `detail` as message, plus these client-side ones:

    ServekitError
    ├── Unreachable          no answer after every attempt (connection refused, reset, ...)
    │   └── TimedOut         the server accepted the request but did not answer within `timeout`
    ├── Unauthorized    401  missing or wrong API key
    │   └── Forbidden   403  the key lacks the scope for this call
    ├── RateLimited     429  the key's request rate is over its limit
    └── UnexpectedResponse   a status or body the native API does not produce (e.g. a proxy's page)
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import quote

import anyio
import httpx
import orjson

from servekit import __version__, errors
from servekit.errors import InvalidInput, Overloaded, ServekitError

__all__ = [
    "AsyncClient",
    "Client",
    "Forbidden",
    "PredictionResult",
    "RateLimited",
    "RetryPolicy",
    "TimedOut",
    "Unauthorized",
    "UnexpectedResponse",
    "Unreachable",
]

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2
DEFAULT_MAX_BACKOFF = 5.0

# Failures after which the request may be sent again: nothing was answered.
_RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.TimeoutException,
)
_RETRYABLE_STATUS = {429, 502, 503, 504}
_RETRIED_ONCE = {504}


class Unreachable(ServekitError):
    """No answer from the server after every attempt."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    title = "Server unreachable"

    def __init__(self, message: str, *, hint: str | None = None, url: str = "", attempts: int = 0) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.attempts = attempts


class TimedOut(Unreachable):
    """The server did not answer within the client's `timeout`, on every attempt."""

    title = "No answer in time"


class Unauthorized(ServekitError):
    """The server wants an API key, or refused the one given."""

    status = HTTPStatus.UNAUTHORIZED
    title = "Unauthorized"


class Forbidden(Unauthorized):
    """The API key is valid but not allowed to make this call."""

    status = HTTPStatus.FORBIDDEN
    title = "Forbidden"


class RateLimited(ServekitError):
    """Too many requests for this API key; wait `retry_after` seconds."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    title = "Too many requests"

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class UnexpectedResponse(ServekitError):
    """An answer the native API does not give: an unknown status or a body that is not its JSON."""

    title = "Unexpected response"

    def __init__(self, message: str, *, hint: str | None = None, status: int = 500) -> None:
        super().__init__(message, hint=hint)
        self.status = status  # type: ignore[assignment]  # the status actually answered


# --- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionResult:
    """The answer to one predict call: one dict per row in `predictions`, each with `prediction`,
    and for classifiers `probabilities` ({class: p}) and `confidence`."""

    model: str
    version: str | None
    request_id: str
    predictions: list[dict[str, Any]]

    @classmethod
    def from_json(cls, body: Any) -> PredictionResult:
        try:
            return cls(body["model"], body.get("version"), body.get("request_id", ""), list(body["predictions"]))
        except (TypeError, KeyError, AttributeError):
            raise UnexpectedResponse("the server's answer is not a servekit prediction", status=200) from None

    @property
    def labels(self) -> list[Any]:
        """The prediction of each row: a class label, or a value for regressors."""
        return [p["prediction"] for p in self.predictions]

    @property
    def values(self) -> list[Any]:
        """Same as `labels`; reads better for regressors."""
        return self.labels

    @property
    def probabilities(self) -> list[dict[str, float]]:
        """Class probabilities of each row; empty dicts for models that give none (regressors)."""
        return [p.get("probabilities") or {} for p in self.predictions]

    def __len__(self) -> int:
        return len(self.predictions)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.predictions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.predictions[index]


def _error_classes() -> dict[tuple[int, str], type[ServekitError]]:
    classes: list[type[ServekitError]] = [getattr(errors, name) for name in errors.__all__]
    classes += [Unauthorized, Forbidden, RateLimited]
    return {(int(c.status), c.title): c for c in classes}


_BY_TITLE = _error_classes()
_BY_STATUS: dict[int, type[ServekitError]] = {
    400: errors.MalformedRequest,
    401: Unauthorized,
    403: Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
    500: ServekitError,
    501: errors.MissingDependency,
    503: errors.ModelNotReady,
    504: errors.PredictionTimeout,
}


def _error_from_response(response: httpx.Response) -> ServekitError:
    """The servekit error a non-2xx answer stands for, with the problem's `detail` as message."""
    status = response.status_code
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        snippet = " ".join(response.text.split())[:200]
        reason = response.reason_phrase or "error"
        message = f"{status} {reason} from {response.request.method} {response.request.url}"
        cls: type[ServekitError] = _BY_STATUS.get(status, UnexpectedResponse)
        problem = {"detail": f"{message}: {snippet}" if snippet else message}
    else:
        cls = _BY_TITLE.get((status, str(problem.get("title"))), _BY_STATUS.get(status, UnexpectedResponse))
    message = str(problem.get("detail") or problem.get("error") or problem.get("title") or response.reason_phrase)
    retry_after = _retry_after(response.headers.get("retry-after"))
    if status == 503 and cls is errors.ModelNotReady and retry_after is not None and "title" not in problem:
        cls = Overloaded
    error: ServekitError
    if cls is Overloaded:
        error = Overloaded(message, retry_after=round(retry_after or 1))
    elif cls is RateLimited:
        error = RateLimited(message, retry_after=retry_after)
    elif cls is UnexpectedResponse:
        error = UnexpectedResponse(message, status=status)
    else:
        error = cls(message)
    error.problem = problem  # type: ignore[attr-defined]
    error.request_id = problem.get("request_id") or response.headers.get("x-request-id")  # type: ignore[attr-defined]
    return error


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds from now: delay-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponse(
            f"{response.request.method} {response.request.url} answered {response.status_code} without JSON",
            status=response.status_code,
        ) from None


# --- retries -------------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """How many times to retry and how long to wait in between (see the module docstring)."""

    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")

    def backoff_delay(self, retry: int) -> float:
        """Full jitter: a uniform wait in [0, min(max_backoff, backoff * 2**retry)], retry from 0."""
        return self.rng.uniform(0.0, min(self.max_backoff, self.backoff * 2**retry))

    def retry_after_delay(self, retry_after: float) -> float | None:
        """The wait the server asked for plus a little jitter; None when it is over `max_backoff`."""
        if retry_after > self.max_backoff:
            return None
        return min(self.max_backoff, retry_after + self.rng.uniform(0.0, self.backoff))


class _Attempts:
    """The retry state of one call. After each attempt it returns the wait before the next one,
    None when the answer is final, or raises the error to give the caller."""

    def __init__(self, policy: RetryPolicy, method: str, url: str) -> None:
        self.policy = policy
        self.method = method
        self.url = url
        self.made = 0
        self.retried: dict[int, int] = {}

    def failed(self, exc: httpx.TransportError) -> float:
        self.made += 1
        if isinstance(exc, _RETRYABLE_TRANSPORT) and self.made <= self.policy.retries:
            return self.policy.backoff_delay(self.made - 1)
        raise self._unreachable(exc) from exc

    def answered(self, response: httpx.Response) -> float | None:
        self.made += 1
        if response.is_success:
            return None
        status = response.status_code
        error = _error_from_response(response)
        if status not in _RETRYABLE_STATUS or self.made > self.policy.retries:
            raise error
        if status in _RETRIED_ONCE and self.retried.get(status):
            raise error
        self.retried[status] = self.retried.get(status, 0) + 1
        retry_after = _retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            return self.policy.backoff_delay(self.made - 1)
        delay = self.policy.retry_after_delay(retry_after)
        if delay is None:
            raise error
        return delay

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        tries = f"{self.made} attempt{'s' if self.made != 1 else ''}"
        if isinstance(exc, httpx.TimeoutException):
            return TimedOut(
                f"no answer from {self.method} {self.url} in time ({tries}: {type(exc).__name__})",
                hint="Raise the client's timeout, or check the server's load",
                url=self.url,
                attempts=self.made,
            )
        reason = str(exc) or type(exc).__name__
        return Unreachable(
            f"cannot reach {self.url} ({tries}): {reason}",
            hint="Check that the server is running and the URL is right",
            url=self.url,
            attempts=self.made,
        )


# --- requests ------------------------------------------------------------------------------------


def _rows_body(data: Any, *, batch: bool) -> dict[str, Any]:
    """`{"features": row}` for one row, `{"instances": rows}` for many."""
    pandas = sys.modules.get("pandas")  # not imported: `data` cannot be a pandas object
    if pandas is not None and isinstance(data, pandas.DataFrame):
        named = all(isinstance(c, str) for c in data.columns)
        return {"instances": data.to_dict(orient="records") if named else data.to_numpy().tolist()}
    if pandas is not None and isinstance(data, pandas.Series):
        data = data.to_dict() if all(isinstance(i, str) for i in data.index) else data.to_numpy()
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(data, numpy.ndarray):
        if data.ndim == 2:
            return {"instances": data}
        if data.ndim != 1:
            raise InvalidInput(f"expected one row (1-D) or rows (2-D), got an array of shape {data.shape}")
        data = data.tolist()
    if isinstance(data, Mapping):
        row: Any = dict(data)
    elif isinstance(data, list | tuple):
        if data and all(_is_row(r) for r in data):
            return {"instances": [r if isinstance(r, Mapping) else list(r) for r in data]}
        row = list(data)
    else:
        raise InvalidInput(f"expected a row (list or dict), rows, an array or a DataFrame, got {type(data).__name__}")
    if batch:
        raise InvalidInput("predict_batch takes a list of rows; for one row use predict()")
    return {"features": row}


def _is_row(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) or (hasattr(value, "ndim") and value.ndim == 1)


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)
    except TypeError as exc:
        raise InvalidInput(f"the rows cannot be sent as JSON: {exc}") from None


def _plain(value: Any) -> Any:
    """numpy/pandas values orjson does not take natively (non-contiguous arrays, object dtype)."""
    for method in ("tolist", "item"):
        if hasattr(value, method):
            return getattr(value, method)()
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _segment(value: str) -> str:
    return quote(str(value), safe="")


class _ClientBase:
    """Configuration and the I/O-free half of every call, shared by both clients."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        headers: Mapping[str, str] | None = None,
        transport: Any = None,
    ) -> None:
        self.base_url = str(base_url).rstrip("/")
        self.policy = RetryPolicy(retries, backoff, max_backoff)
        self._headers = {"User-Agent": f"servekit-client/{__version__}", "Accept": "application/json"}
        self._headers.update(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http = self._open(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport, follow_redirects=False
        )

    def _open(self, **options: Any) -> Any:
        """The httpx client doing the I/O."""
        raise NotImplementedError

    def _attempts(self, method: str, path: str) -> _Attempts:
        return _Attempts(self.policy, method, self.base_url + path)

    @staticmethod
    def _predict_request(model: str, data: Any, version: str | None, *, batch: bool) -> tuple[str, bytes]:
        path = f"/v1/models/{_segment(model)}"
        if version is not None:
            path += f"/versions/{_segment(version)}"
        return path + "/predict", _encode(_rows_body(data, batch=batch))

    @staticmethod
    def _model_path(name: str) -> str:
        return f"/v1/models/{_segment(name)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


_JSON_HEADERS = {"Content-Type": "application/json"}


class Client(_ClientBase):
    """A synchronous client of the native API. Thread-safe; use it as a context manager or
    `close()` it. `transport` is passed to httpx (e.g. `httpx.WSGITransport`, custom TLS).
    `api_key` is sent as `Authorization: Bearer <key>`; `headers` are added to every request."""

    _http: httpx.Client

    def _open(self, **options: Any) -> httpx.Client:
        return httpx.Client(**options)

    def predict(self, model: str, features_or_rows: Any, *, version: str | None = None) -> PredictionResult:
        """Predict one row (a list or a dict of named values) or many (a list of rows, a 2-D
        numpy array, a DataFrame) with `model`, at `version` (a version or alias) if given."""
        path, body = self._predict_request(model, features_or_rows, version, batch=False)
        return PredictionResult.from_json(self._send("POST", path, body))

    def predict_batch(self, model: str, rows: Any, *, version: str | None = None) -> PredictionResult:
        """Predict many rows; raises `InvalidInput` when given a single row."""
        path, body = self._predict_request(model, rows, version, batch=True)
        return PredictionResult.from_json(self._send("POST", path, body))

    def models(self) -> list[dict[str, Any]]:
        """A summary of every served model."""
        return self._send("GET", "/v1/models")

    def model(self, name: str) -> dict[str, Any]:
        """Metadata of one model: versions, signature, classes, ..."""
        return self._send("GET", self._model_path(name))

    def ready(self) -> bool:
        """Whether every model is loaded; one attempt, False when the server cannot be reached."""
        return self._probe("/health/ready")

    def live(self) -> bool:
        """Whether the server process answers; one attempt, False when it cannot be reached."""
        return self._probe("/health/live")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: bytes | None = None) -> Any:
        attempts = self._attempts(method, path)
        headers = _JSON_HEADERS if body is not None else None
        while True:
            try:
                response = self._http.request(method, path, content=body, headers=headers)
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                delay = attempts.answered(response)
                if delay is None:
                    return _json(response)
            time.sleep(delay)

    def _probe(self, path: str) -> bool:
        try:
            return self._http.get(path).status_code == 200
        except httpx.TransportError:
            return False


class AsyncClient(_ClientBase):
    """The same client for asyncio or trio: every method is a coroutine. Use `async with` or
    `await close()`. `transport` must be an async one (e.g. `httpx.ASGITransport(app)`)."""

    _http: httpx.AsyncClient

    def _open(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def predict(self, model: str, features_or_rows: Any, *, version: str | None = None) -> PredictionResult:
        """See `Client.predict`."""
        path, body = self._predict_request(model, features_or_rows, version, batch=False)
        return PredictionResult.from_json(await self._send("POST", path, body))

    async def predict_batch(self, model: str, rows: Any, *, version: str | None = None) -> PredictionResult:
        """See `Client.predict_batch`."""
        path, body = self._predict_request(model, rows, version, batch=True)
        return PredictionResult.from_json(await self._send("POST", path, body))

    async def models(self) -> list[dict[str, Any]]:
        return await self._send("GET", "/v1/models")

    async def model(self, name: str) -> dict[str, Any]:
        return await self._send("GET", self._model_path(name))

    async def ready(self) -> bool:
        return await self._probe("/health/ready")

    async def live(self) -> bool:
        return await self._probe("/health/live")

    async def close(self) -> None:
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, method: str, path: str, body: bytes | None = None) -> Any:
        attempts = self._attempts(method, path)
        headers = _JSON_HEADERS if body is not None else None
        while True:
            try:
                response = await self._http.request(method, path, content=body, headers=headers)
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                delay = attempts.answered(response)
                if delay is None:
                    return _json(response)
            await anyio.sleep(delay)

    async def _probe(self, path: str) -> bool:
        try:
            return (await self._http.get(path)).status_code == 200
        except httpx.TransportError:
            return False
