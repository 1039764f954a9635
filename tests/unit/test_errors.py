"""The exception tree: statuses, what a client may see, `Overloaded.retry_after`."""

from __future__ import annotations

import inspect
from http import HTTPStatus

import pytest

from servekit import errors
from servekit.errors import (
    ArtifactError,
    CircuitOpen,
    Conflict,
    CorruptArtifact,
    Forbidden,
    InvalidInput,
    InvalidManifest,
    InvalidName,
    MalformedRequest,
    MissingDependency,
    MissingInformation,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PredictionFailed,
    PredictionTimeout,
    RateLimited,
    RegistryError,
    ServekitError,
    TamperedArtifact,
    Unauthorized,
    UnknownFormat,
    UnsupportedMediaType,
    UntrustedArtifact,
    VersionNotFound,
)

STATUSES: dict[type[ServekitError], int] = {
    ServekitError: 500,
    InvalidInput: 422,
    MalformedRequest: 400,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    NotFound: 404,
    ModelNotFound: 404,
    VersionNotFound: 404,
    InvalidName: 400,
    ArtifactError: 422,
    UnknownFormat: 422,
    CorruptArtifact: 422,
    UntrustedArtifact: 403,
    TamperedArtifact: 403,
    InvalidManifest: 422,
    MissingInformation: 422,
    MissingDependency: 501,
    Conflict: 409,
    RegistryError: 500,
    ModelNotReady: 503,
    Overloaded: 503,
    CircuitOpen: 503,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    PredictionTimeout: 504,
    PredictionFailed: 500,
}


def test_every_exported_class_is_covered() -> None:
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == set(STATUSES)


@pytest.mark.parametrize(("cls", "status"), STATUSES.items(), ids=[c.__name__ for c in STATUSES])
def test_status(cls: type[ServekitError], status: int) -> None:
    assert issubclass(cls, ServekitError)
    assert isinstance(cls.status, HTTPStatus)
    assert cls.status == status
    assert cls.title
    assert inspect.getdoc(cls)


def test_tree_shape() -> None:
    assert issubclass(MalformedRequest, InvalidInput)
    assert issubclass(ModelNotFound, NotFound)
    assert issubclass(VersionNotFound, NotFound)
    for cls in (UnknownFormat, CorruptArtifact, UntrustedArtifact, TamperedArtifact):
        assert issubclass(cls, ArtifactError)


@pytest.mark.parametrize("cls", [c for c, s in STATUSES.items() if s < 500], ids=lambda c: c.__name__)
def test_public_message_of_4xx_is_the_detail(cls: type[ServekitError]) -> None:
    error = cls("row 0 has 2 values", hint="Send 4 values")
    assert error.public_message == error.detail == "row 0 has 2 values. Send 4 values"


HIDDEN_5XX = [ServekitError, MissingDependency, RegistryError, PredictionFailed]
EXPOSED_5XX = [ModelNotReady, Overloaded, CircuitOpen, PredictionTimeout]  # messages written for clients


def test_every_5xx_class_is_classified() -> None:
    assert {c for c, s in STATUSES.items() if s >= 500} == set(HIDDEN_5XX) | set(EXPOSED_5XX)


@pytest.mark.parametrize("cls", HIDDEN_5XX, ids=lambda c: c.__name__)
def test_public_message_of_5xx_is_only_the_title(cls: type[ServekitError]) -> None:
    error = cls("the model raised KeyError at /srv/secret/path.py", hint="check the server log")
    assert error.public_message == cls.title
    assert "secret" not in error.public_message


@pytest.mark.parametrize("cls", EXPOSED_5XX, ids=lambda c: c.__name__)
def test_public_message_of_client_facing_5xx_is_the_detail(cls: type[ServekitError]) -> None:
    error = cls("model iris has 8 requests waiting", hint="Retry after a moment")
    assert error.public_message == "model iris has 8 requests waiting. Retry after a moment"


def test_expose_overrides_the_status_rule() -> None:
    class Hidden(InvalidInput):
        expose = False

    assert Hidden("internal path /srv/x").public_message == "Invalid input"


def test_detail_joins_message_and_hint() -> None:
    assert InvalidInput("bad row", hint="Fix it").detail == "bad row. Fix it"
    assert InvalidInput("bad row").detail == "bad row"
    assert InvalidInput("bad row", hint="").detail == "bad row"


def test_attributes_and_str() -> None:
    error = ModelNotFound("no model 'iris'", hint="Push it first")
    assert error.message == "no model 'iris'"
    assert error.hint == "Push it first"
    assert str(error) == "no model 'iris'. Push it first"
    assert error.args == ("no model 'iris'",)
    assert ModelNotFound("x").hint is None


def test_overloaded_retry_after() -> None:
    assert Overloaded("queue full").retry_after == 1
    error = Overloaded("queue full", hint="Retry later", retry_after=7)
    assert error.retry_after == 7
    assert error.detail == "queue full. Retry later"
    assert error.status == 503


def test_errors_can_be_caught_by_their_base() -> None:
    with pytest.raises(ArtifactError):
        raise TamperedArtifact("changed")
    with pytest.raises(ServekitError):
        raise PredictionTimeout("slow")
