"""One suite over every model format: the served predictions equal the original object's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from servekit.errors import CorruptArtifact, UnknownFormat, UntrustedArtifact
from servekit.formats import detect_format
from servekit.loading import load
from servekit.packing import pack
from tests.integration.cases import MadeModel, ModelCase, all_cases

CASES = all_cases()


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> ModelCase:
    missing = [m for m in request.param.requires if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    return request.param


@pytest.fixture
def made(case: ModelCase, tmp_path: Path) -> MadeModel:
    folder = tmp_path / "model"
    folder.mkdir()
    return case.make(folder)


def _check(case: ModelCase, made: MadeModel, prediction) -> None:
    if case.task == "classification":
        assert np.asarray(prediction.outputs).tolist() == np.asarray(made.expected_outputs).tolist()
        if made.expected_probabilities is not None:
            np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities, rtol=1e-6, atol=1e-9)
            assert list(prediction.classes) == list(made.classes)
    else:
        np.testing.assert_allclose(
            np.asarray(prediction.outputs, dtype="float64").reshape(np.shape(made.expected_outputs)),
            made.expected_outputs,
            rtol=1e-6,
            atol=1e-9,
        )


def _json_rows(inputs):
    if hasattr(inputs, "to_dict"):
        return inputs.to_dict(orient="records")
    return np.asarray(inputs).tolist()


def test_format_is_detected(case: ModelCase, made: MadeModel) -> None:
    assert detect_format(made.path) == case.format


def test_packed_bundle_predicts_like_the_original(case: ModelCase, made: MadeModel, tmp_path: Path) -> None:
    bundle = pack(made.path, output=tmp_path / "bundle", trust=case.needs_trust, **made.pack_options)
    assert bundle.manifest.format == case.format
    assert bundle.manifest.task == case.task
    assert (tmp_path / "bundle" / "servekit.yaml").is_file()
    with load(tmp_path / "bundle", trust=case.needs_trust) as predictor:
        _check(case, made, predictor.predict(made.inputs))
        # The JSON shapes a client sends go through the same path and give the same answers.
        _check(case, made, predictor.predict(_json_rows(made.inputs)))
        one = predictor.predict(_json_rows(made.inputs)[0])
        assert len(one) == 1


def test_registry_round_trip(case: ModelCase, made: MadeModel, tmp_path: Path) -> None:
    from servekit.registry import Registry

    bundle = pack(made.path, output=tmp_path / "bundle", trust=case.needs_trust, **made.pack_options)
    registry = Registry()
    pushed = registry.push(bundle, name="conformance")
    # A version from the registry loads without --trust: its sha256 was recorded at push.
    with load(f"conformance:{pushed.version}", registry=registry) as predictor:
        _check(case, made, predictor.predict(made.inputs))
    registry.close()


def test_bare_file_loads_under_the_trust_policy(case: ModelCase, made: MadeModel) -> None:
    if case.needs_trust:
        with pytest.raises(UntrustedArtifact, match="--trust"):
            load(made.path, **made.pack_options)
    # A bare file (no bundle) loads with the same answers once trusted.
    with load(made.path, trust=case.needs_trust, **made.pack_options) as predictor:
        _check(case, made, predictor.predict(made.inputs))


def test_truncated_file_is_reported(case: ModelCase, made: MadeModel, tmp_path: Path) -> None:
    data = made.path.read_bytes()
    broken = tmp_path / made.path.name
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises((CorruptArtifact, UnknownFormat)) as info:
        load(broken, trust=True, **made.pack_options)
    assert broken.name in str(info.value)
