"""The one exception tree of servekit.

Every error carries the HTTP status it maps to as a class attribute and knows nothing of any
web framework; transports (REST routes, the CLI, batch scoring) translate it.

    ServekitError
    ├── InvalidInput                  422  the payload does not fit the model's signature
    │   └── MalformedRequest          400  the body cannot be parsed at all
    ├── PayloadTooLarge               413
    ├── UnsupportedMediaType          415
    ├── NotFound                      404
    │   ├── ModelNotFound
    │   └── VersionNotFound
    ├── InvalidName                   400  a model name or reference that is not allowed
    ├── ArtifactError                 422  a model file that cannot be used
    │   ├── UnknownFormat
    │   ├── CorruptArtifact
    │   ├── UntrustedArtifact              a pickle-based file nobody vouched for
    │   └── TamperedArtifact               a file whose sha256 differs from its record
    ├── InvalidManifest               422  a servekit.yaml with a missing or invalid field
    ├── MissingInformation            422  something pack cannot infer and must be told
    ├── MissingDependency             501  an optional library is not installed
    ├── Conflict                      409  e.g. an output that already exists
    ├── RegistryError                 500
    ├── ModelNotReady                 503
    ├── Overloaded                    503
    ├── PredictionTimeout             504
    └── PredictionFailed              500  the runtime raised; details stay in the server log
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "ArtifactError",
    "CircuitOpen",
    "Conflict",
    "CorruptArtifact",
    "Forbidden",
    "InvalidInput",
    "InvalidManifest",
    "InvalidName",
    "MalformedRequest",
    "MissingDependency",
    "MissingInformation",
    "ModelNotFound",
    "ModelNotReady",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PredictionFailed",
    "PredictionTimeout",
    "RateLimited",
    "RegistryError",
    "ServekitError",
    "TamperedArtifact",
    "Unauthorized",
    "UnknownFormat",
    "UnsupportedMediaType",
    "UntrustedArtifact",
    "VersionNotFound",
]


class ServekitError(Exception):
    """Base of every error servekit raises on purpose.

    `message` says what happened and `hint` what to do about it; both are safe to show a client
    unless `status` is 5xx, in which case transports show only `public_message`.
    """

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    title: str = "Internal error"
    expose: bool | None = None
    """Show `detail` to clients; `None` means: only for 4xx."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def detail(self) -> str:
        """The message with its hint, as one line."""
        return f"{self.message}. {self.hint}" if self.hint else self.message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers this error asks for (e.g. `Retry-After`); none by default."""
        return {}

    @property
    def public_message(self) -> str:
        """What a client may see: the detail for 4xx and for written-for-clients 5xx
        (not ready, overloaded, timed out), else the bare title."""
        expose = self.status < 500 if self.expose is None else self.expose
        return self.detail if expose else self.title

    def __str__(self) -> str:
        return self.detail


class InvalidInput(ServekitError):
    """The request is well-formed but does not fit the model's input contract."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    title = "Invalid input"


class MalformedRequest(InvalidInput):
    """The body cannot be parsed (bad JSON, bad CSV, a lying binary header)."""

    status = HTTPStatus.BAD_REQUEST
    title = "Malformed request"


class PayloadTooLarge(ServekitError):
    """The body or the number of rows is over a configured limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    title = "Payload too large"


class UnsupportedMediaType(ServekitError):
    """A Content-Type the route does not accept."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    title = "Unsupported media type"


class NotFound(ServekitError):
    """Something named in the request does not exist."""

    status = HTTPStatus.NOT_FOUND
    title = "Not found"


class ModelNotFound(NotFound):
    """No model of that name."""

    title = "Model not found"


class VersionNotFound(NotFound):
    """The model exists but not that version or alias."""

    title = "Version not found"


class InvalidName(ServekitError):
    """A model name, alias or reference that servekit does not accept."""

    status = HTTPStatus.BAD_REQUEST
    title = "Invalid name"


class ArtifactError(ServekitError):
    """A model file that cannot be used."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    title = "Unusable model artifact"


class UnknownFormat(ArtifactError):
    """The file is not in any format servekit knows."""

    title = "Unknown model format"


class CorruptArtifact(ArtifactError):
    """The file claims a known format but cannot be read (truncated, corrupt, not a model)."""

    title = "Corrupt model artifact"


class UntrustedArtifact(ArtifactError):
    """A pickle-based file that would run code when loaded and that nobody vouched for."""

    status = HTTPStatus.FORBIDDEN
    title = "Untrusted model artifact"


class TamperedArtifact(ArtifactError):
    """A file whose sha256 differs from the one recorded for it."""

    status = HTTPStatus.FORBIDDEN
    title = "Tampered model artifact"


class InvalidManifest(ServekitError):
    """A bundle manifest (servekit.yaml) with a missing or invalid field."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    title = "Invalid manifest"


class MissingInformation(ServekitError):
    """Packing needs a fact it cannot infer from the model (e.g. a torch module's input width)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    title = "Missing information"


class MissingDependency(ServekitError):
    """An optional library needed for this model format is not installed."""

    status = HTTPStatus.NOT_IMPLEMENTED
    title = "Missing dependency"


class Conflict(ServekitError):
    """The operation would overwrite or contradict existing state."""

    status = HTTPStatus.CONFLICT
    title = "Conflict"


class RegistryError(ServekitError):
    """The registry database or store failed."""

    title = "Registry error"


class ModelNotReady(ServekitError):
    """The model is loading, failed to load, or its circuit is open."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    title = "Model not ready"
    expose = True


class _RetryLater(ServekitError):
    """Refused for now: the client should retry after `retry_after` whole seconds (`Retry-After`)."""

    expose = True

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Overloaded(_RetryLater):
    """The model's queue is full."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    title = "Overloaded"


class CircuitOpen(Overloaded):
    """The model failed repeatedly: requests get a fast 503 until a probe succeeds."""

    title = "Model unavailable"


class Unauthorized(ServekitError):
    """No API key, or one that is unknown, revoked or malformed (401)."""

    status = HTTPStatus.UNAUTHORIZED
    title = "Unauthorized"
    expose = True

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ServekitError):
    """A valid API key without the scope the route needs (403)."""

    status = HTTPStatus.FORBIDDEN
    title = "Forbidden"
    expose = True


class RateLimited(_RetryLater):
    """Too many requests for one key or client (429)."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    title = "Too many requests"


class PredictionTimeout(ServekitError):
    """The prediction did not finish within the configured timeout."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    title = "Prediction timed out"
    expose = True


class PredictionFailed(ServekitError):
    """The runtime raised while predicting."""

    title = "Prediction failed"
