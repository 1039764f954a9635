"""The pickle trust policy: `env_trusts` and `authorize`."""

from __future__ import annotations

from pathlib import Path

import pytest

from servekit.errors import UntrustedArtifact
from servekit.runtimes import Runtime, get_runtime
from servekit.trust import TRUST_ENV, authorize, env_trusts


def runtime(format_name: str, tmp_path: Path, file_name: str) -> Runtime:
    """A runtime object for a file; `authorize` runs before anything is read, so no real model is needed."""
    path = tmp_path / file_name
    path.write_bytes(b"\x80\x04N.")  # pickle of None: never loaded here
    return get_runtime(format_name)(path)


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 ", "\ttrue\n"])
def test_env_trusts_true_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(TRUST_ENV, value)
    assert env_trusts() is True


@pytest.mark.parametrize("value", ["0", "", "false", "no", "off", "2", "trust", "y"])
def test_env_trusts_other_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(TRUST_ENV, value)
    assert env_trusts() is False


def test_env_trusts_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUST_ENV, raising=False)
    assert TRUST_ENV == "SERVEKIT_TRUST_PICKLE"
    assert env_trusts() is False


@pytest.mark.parametrize(("format_name", "file_name"), [("pickle", "model.pkl"), ("joblib", "model.joblib")])
def test_refuses_a_pickle_runtime_without_trust(tmp_path: Path, format_name: str, file_name: str) -> None:
    rt = runtime(format_name, tmp_path, file_name)
    with pytest.raises(UntrustedArtifact) as info:
        authorize(rt, trust=False)
    error = info.value
    assert error.status == 403
    assert error.message == (
        f"{file_name} is a {format_name} file: loading it runs whatever code it contains, and nobody vouched for it"
    )
    assert "--trust" in (error.hint or "")
    assert "SERVEKIT_TRUST_PICKLE=1" in (error.hint or "")
    assert "servekit push FILE --trust" in (error.hint or "")
    assert rt.trusted is False


def test_refuses_when_the_variable_is_false(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TRUST_ENV, "0")
    with pytest.raises(UntrustedArtifact):
        authorize(runtime("joblib", tmp_path, "m.joblib"), trust=False)


def test_allows_with_explicit_trust(tmp_path: Path) -> None:
    rt = runtime("joblib", tmp_path, "m.joblib")
    authorize(rt, trust=True)
    assert rt.trusted is True


def test_allows_with_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TRUST_ENV, "yes")
    rt = runtime("pickle", tmp_path, "m.pkl")
    authorize(rt, trust=False)
    assert rt.trusted is True


def test_allows_a_verified_record_without_marking_it_trusted(tmp_path: Path) -> None:
    rt = runtime("joblib", tmp_path, "m.joblib")
    authorize(rt, trust=False, verified_record=True)
    assert rt.trusted is False  # the sha256 record vouches for this file, not the operator


@pytest.mark.parametrize(("format_name", "file_name"), [("skops", "m.skops"), ("onnx", "m.onnx")])
def test_never_refuses_a_non_pickle_runtime(tmp_path: Path, format_name: str, file_name: str) -> None:
    rt = runtime(format_name, tmp_path, file_name)
    assert rt.needs_trust() is False
    authorize(rt, trust=False)
    assert rt.trusted is False
    authorize(rt, trust=True)
    assert rt.trusted is True
