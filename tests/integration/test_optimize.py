"""`servekit.optimize`: ONNX variants converted from real models, verified, stored and served."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from servekit.bundle import Bundle, sha256_file
from servekit.errors import MissingInformation, TamperedArtifact, UntrustedArtifact
from servekit.loading import load, load_bundle
from servekit.optimize import optimize_bundle
from servekit.optimize.converters import converter_for
from servekit.packing import pack
from tests.integration.cases import (
    MadeModel,
    estimator_classifier,
    keras_models,
    lightgbm_models,
    onnx_models,
    sklearn_models,
    torch_models,
    xgboost_models,
)

TOLERANCE = 1e-5


def gradient_boosting_pipeline(tmp: Path) -> MadeModel:
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=20, random_state=0)).fit(X, y)
    joblib.dump(model, tmp / "boosting.joblib")
    return estimator_classifier(model, X[:25], tmp / "boosting.joblib")


def forest_100_iris(tmp: Path) -> MadeModel:
    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    joblib.dump(model, tmp / "forest.joblib")
    return estimator_classifier(model, X[:25], tmp / "forest.joblib")


# (id, factory, needs trust, converter library, required module)
CONVERTIBLE: list[tuple[str, Callable[[Path], MadeModel], bool, str, str | None]] = [
    ("random-forest-iris", forest_100_iris, True, "skl2onnx", None),
    ("scaler-logistic-cancer", sklearn_models.scaled_logistic_compressed, True, "skl2onnx", None),
    ("gradient-boosting-pipeline", gradient_boosting_pipeline, True, "skl2onnx", None),
    ("column-transformer-strings", sklearn_models.column_transformer_joblib, True, "skl2onnx", None),
    ("xgboost-booster", xgboost_models.iris_classifier_ubj, False, "onnxmltools", "xgboost"),
    ("lightgbm-booster", lightgbm_models.cancer_classifier, False, "onnxmltools", "lightgbm"),
    ("torchscript-mlp", torch_models.torchscript_classifier, False, "torch.onnx", "torch"),
    ("torch-export-mlp", torch_models.export_classifier, False, "torch.onnx", "torch"),
    ("keras-on-torch-sigmoid", keras_models.cancer_sigmoid_keras, False, "torch.onnx", "keras"),
]


def _bundle(made: MadeModel, tmp_path: Path, trust: bool, **options: object) -> Bundle:
    return pack(made.path, output=tmp_path / "bundle", trust=trust, optimize=False, **made.pack_options, **options)


def _assert_same_answers(made: MadeModel, prediction) -> None:
    assert np.asarray(prediction.outputs).tolist() == np.asarray(made.expected_outputs).tolist()
    if made.expected_probabilities is not None:
        np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities, rtol=0, atol=TOLERANCE)
        assert list(prediction.classes) == list(made.classes)


@pytest.mark.parametrize(
    ("factory", "trust", "library", "requires"),
    [pytest.param(*c[1:], id=c[0]) for c in CONVERTIBLE],
)
def test_variant_is_verified_stored_and_served(
    tmp_path: Path, factory: Callable[[Path], MadeModel], trust: bool, library: str, requires: str | None
) -> None:
    if requires and importlib.util.find_spec(requires) is None:
        pytest.skip(f"needs {requires}")
    made = factory(tmp_path)
    bundle = _bundle(made, tmp_path, trust)

    report = optimize_bundle(bundle, sample=made.inputs, trust=trust)

    assert report.stored, report.reason
    assert report.variant == "onnx" and report.converter.startswith(f"{library} ")
    assert report.rows_checked == len(made.inputs) and report.rows_source == "sample"
    assert 0 <= report.max_abs_diff <= TOLERANCE
    stored = Bundle.read(bundle.path)  # what was written, not what is in memory
    entry = stored.manifest.variants["onnx"]
    assert entry["artifact"] == "model.onnx" and entry["format"] == "onnx"
    assert entry["converter"] == report.converter and entry["rows_checked"] == len(made.inputs)
    assert entry["max_abs_diff"] == report.max_abs_diff and entry["created_at"]
    assert stored.manifest.files["model.onnx"] == sha256_file(bundle.path / "model.onnx")
    assert not [p.name for p in bundle.path.iterdir() if p.name.startswith(".")]  # no scratch files left
    stored.verify()

    # Served: the variant answers (no trust needed), like the original object did.
    with load(bundle.path) as predictor:
        assert predictor.metadata()["variant"] == "onnx" and predictor.metadata()["runtime"] == "onnx"
        _assert_same_answers(made, predictor.predict(made.inputs))
        rows = made.inputs.to_dict(orient="records") if hasattr(made.inputs, "to_dict") else made.inputs.tolist()
        _assert_same_answers(made, predictor.predict(rows))  # the JSON shapes a client sends
    with load(bundle.path, trust=trust, optimized=False) as original:
        assert original.metadata()["variant"] is None
        assert original.runtime.format == bundle.manifest.format


def test_rows_are_drawn_from_the_reference_profile_without_a_sample(tmp_path: Path) -> None:
    made = sklearn_models.column_transformer_joblib(tmp_path)
    frame, _ = sklearn_models.iris_frame()
    bundle = _bundle(made, tmp_path, True, sample=frame)
    report = optimize_bundle(bundle, trust=True, rows=300)
    assert report.stored, report.reason
    assert report.rows_source == "profile" and report.rows_checked == 300
    with load(bundle.path) as predictor:
        assert predictor.metadata()["variant"] == "onnx"
        _assert_same_answers(made, predictor.predict(made.inputs))


def test_without_sample_or_profile_a_sample_is_asked_for(tmp_path: Path) -> None:
    made = sklearn_models.forest_joblib(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    with pytest.raises(MissingInformation, match="no rows to verify") as info:
        optimize_bundle(bundle, trust=True)
    assert "--sample" in str(info.value)
    assert not (bundle.path / "model.onnx").exists()


def test_pack_optimizes_when_given_a_sample(tmp_path: Path) -> None:
    path, _ = _iris_joblib(tmp_path)
    frame = _iris_frame()
    packed = pack(path, output=tmp_path / "auto", sample=frame, trust=True)
    assert packed.optimization is not None and packed.optimization.stored
    assert packed.optimization.summary().startswith("optimized: onnx (max diff ")
    assert "onnx" in Bundle.read(packed.path).manifest.variants
    with load(packed.path) as predictor:
        assert predictor.metadata()["variant"] == "onnx"

    opted_out = pack(path, output=tmp_path / "plain", sample=frame, trust=True, optimize=False)
    assert opted_out.optimization is None and not opted_out.manifest.variants
    assert set(opted_out.manifest.files) == {"iris.joblib"}

    no_sample = pack(path, output=tmp_path / "bare", trust=True)
    assert no_sample.optimization is None and not no_sample.manifest.variants


def test_pack_reports_a_failed_optimization_and_keeps_the_original(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    joblib.dump(LabelSpreading().fit(X, y), tmp_path / "spreading.joblib")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    packed = pack(tmp_path / "spreading.joblib", output=tmp_path / "bundle", sample=frame, trust=True)
    assert packed.optimization is not None and not packed.optimization.stored
    assert packed.optimization.summary().startswith("not optimized: the ONNX conversion failed")
    assert "LabelSpreading" in packed.optimization.reason
    assert not packed.manifest.variants and not (packed.path / "model.onnx").exists()
    with load(packed.path, trust=True) as predictor:
        assert predictor.metadata()["variant"] is None and predictor.runtime.format == "joblib"


def test_a_tampered_variant_is_refused(tmp_path: Path) -> None:
    made = sklearn_models.forest_joblib(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    assert optimize_bundle(bundle, sample=made.inputs, trust=True).stored
    variant = bundle.path / "model.onnx"
    variant.write_bytes(variant.read_bytes() + b"\x00")
    with pytest.raises(TamperedArtifact, match=r"model\.onnx has sha256"):
        Bundle.read(bundle.path).verify()
    with pytest.raises(TamperedArtifact, match=r"model\.onnx"):
        load(bundle.path, trust=True)


def test_no_converter_stores_nothing(tmp_path: Path) -> None:
    made = onnx_models.iris_forest(tmp_path)
    bundle = _bundle(made, tmp_path, False)
    before = (bundle.path / "servekit.yaml").read_text()
    assert converter_for("onnx") is None
    report = optimize_bundle(bundle, sample=made.inputs)
    assert not report.stored and report.reason == "the model is already ONNX"
    assert report.summary() == "not optimized: the model is already ONNX"
    assert (bundle.path / "servekit.yaml").read_text() == before


def test_a_conversion_that_fails_is_reported_and_not_stored(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    joblib.dump(LabelSpreading().fit(X, y), tmp_path / "spreading.joblib")
    bundle = pack(tmp_path / "spreading.joblib", output=tmp_path / "bundle", trust=True)
    report = optimize_bundle(bundle, sample=X, trust=True)
    assert not report.stored and report.variant is None
    assert report.reason.startswith("the ONNX conversion failed (float32")
    assert len(report.attempts) == 2  # float32 and float64 were both tried
    assert "\n" not in report.reason
    assert not Bundle.read(bundle.path).manifest.variants
    assert sorted(p.name for p in bundle.path.iterdir()) == ["servekit.yaml", "spreading.joblib"]


def test_a_variant_that_does_not_verify_is_not_stored(tmp_path: Path) -> None:
    # A real case: a boosted regressor on diabetes (targets 25..346) run by ONNX in float32
    # differs from sklearn's float64 sums by ~1e-7 relative, and onnxruntime has no double
    # tree kernel: at a tolerance of 1e-9 it cannot verify.
    X, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(X, y)
    joblib.dump(model, tmp_path / "diabetes.joblib")
    bundle = pack(tmp_path / "diabetes.joblib", output=tmp_path / "bundle", trust=True)
    before = (bundle.path / "servekit.yaml").read_text()

    report = optimize_bundle(bundle, sample=X, trust=True, tolerance=1e-9)

    assert not report.stored
    assert report.reason.startswith("the ONNX conversion did not verify (float32: max relative diff ")
    assert report.max_abs_diff > 1e-9 and report.rows_checked == len(X)
    assert (bundle.path / "servekit.yaml").read_text() == before
    assert sorted(p.name for p in bundle.path.iterdir()) == ["diabetes.joblib", "servekit.yaml"]
    # At the default tolerance (relative for values above 1) the same model verifies.
    assert optimize_bundle(bundle, sample=X, trust=True).stored


def test_tolerance_zero_rejects_a_float_rounding_difference(tmp_path: Path) -> None:
    made = sklearn_models.scaled_logistic_compressed(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    report = optimize_bundle(bundle, sample=made.inputs, trust=True, tolerance=0)
    assert not report.stored and 0 < report.max_abs_diff < TOLERANCE
    assert "> tolerance 0" in report.reason


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_quantized_variant_is_stored_and_used_only_when_asked(tmp_path: Path) -> None:
    made = torch_models.torchscript_classifier(tmp_path)
    bundle = _bundle(made, tmp_path, False)
    report = optimize_bundle(bundle, sample=made.inputs, quantize=True)
    assert report.stored and report.quantized is not None and report.quantized.stored, report.quantized
    assert report.quantized.label_agreement >= 0.99 and report.quantized.max_abs_diff is not None
    manifest = Bundle.read(bundle.path).manifest
    assert manifest.variants["onnx-int8"]["artifact"] == "model.int8.onnx"
    assert "model.int8.onnx" in manifest.files
    with load(bundle.path) as default:
        assert default.metadata()["variant"] == "onnx"
    with load(bundle.path, optimized="onnx-int8") as quantized:
        assert quantized.metadata()["variant"] == "onnx-int8"
        agreement = np.mean(quantized.predict(made.inputs).outputs == made.expected_outputs)
        assert agreement >= 0.99


def test_tree_models_have_nothing_to_quantize(tmp_path: Path) -> None:
    made = sklearn_models.forest_joblib(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    report = optimize_bundle(bundle, sample=made.inputs, trust=True, quantize=True)
    assert report.stored
    assert not report.quantized.stored and report.quantized.reason.startswith("nothing to quantize")
    assert "onnx-int8" not in Bundle.read(bundle.path).manifest.variants


def test_a_variant_that_fails_to_load_falls_back_to_the_original(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = sklearn_models.forest_joblib(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    assert optimize_bundle(bundle, sample=made.inputs, trust=True).stored
    (bundle.path / "model.onnx").write_bytes(b"\x08\x07\x12 not a graph")  # e.g. written by a newer converter
    with caplog.at_level(logging.WARNING, logger="servekit.loading"):
        predictor = load_bundle(Bundle.read(bundle.path), trust=True)
    assert predictor.metadata()["variant"] is None and predictor.runtime.format == "joblib"
    assert "cannot load the 'onnx' variant" in caplog.text and "serving the original" in caplog.text
    _assert_same_answers(made, predictor.predict(made.inputs))


def test_a_variant_not_recorded_among_the_files_is_not_loaded(tmp_path: Path) -> None:
    made = sklearn_models.forest_joblib(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    assert optimize_bundle(bundle, sample=made.inputs, trust=True).stored
    manifest_path = bundle.path / "servekit.yaml"
    data = yaml.safe_load(manifest_path.read_text())
    del data["files"]["model.onnx"]  # an unverified file must not be served
    manifest_path.write_text(yaml.safe_dump(data))
    with load(bundle.path, trust=True) as predictor:
        assert predictor.metadata()["variant"] is None


def test_registry_keeps_the_variant_and_optimizing_a_ref_pushes_a_new_version(tmp_path: Path) -> None:
    from servekit.optimize.registered import optimize_registered
    from servekit.registry import Registry

    made = sklearn_models.forest_joblib(tmp_path)
    frame = pd.DataFrame(made.inputs, columns=["a", "b", "c", "d"])
    registry = Registry()
    plain = registry.push(_bundle(made, tmp_path, True, sample=frame))
    assert not plain.manifest.variants

    scratch = tmp_path / "scratch"
    report, source, pushed = optimize_registered(registry, "forest", scratch=scratch)

    assert report.stored and report.rows_source == "profile"
    assert source.version == plain.version and pushed is not None and pushed.version == plain.version + 1
    assert "model.onnx" in pushed.files and pushed.manifest.variants["onnx"]["artifact"] == "model.onnx"
    assert not registry.get("forest", plain.version).manifest.variants  # versions never change
    with load(f"forest:{pushed.version}", registry=registry) as predictor:  # no trust: verified record
        assert predictor.metadata()["variant"] == "onnx"
        _assert_same_answers(made, predictor.predict(made.inputs))
    with load(f"forest:{pushed.version}", registry=registry, optimized=False) as original:
        assert original.runtime.format == "joblib"
    registry.close()


def _iris_frame() -> pd.DataFrame:
    data = load_iris()
    return pd.DataFrame(data.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])


def _iris_joblib(tmp_path: Path) -> tuple[Path, RandomForestClassifier]:
    frame = _iris_frame()
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame.to_numpy(), load_iris().target)
    joblib.dump(model, tmp_path / "iris.joblib")
    return tmp_path / "iris.joblib", model


def test_server_serves_the_variant_without_trust_and_the_original_only_with_it(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from servekit.server import create_app
    from servekit.settings import Settings
    from servekit.sources import parse_source
    from tests.support import running_app

    X, y = load_iris(return_X_y=True)
    joblib.dump(RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y), tmp_path / "iris.joblib")
    bundle = pack(tmp_path / "iris.joblib", output=tmp_path / "bundle", trust=True, sample=X)
    assert bundle.manifest.variants  # packing with a sample stored the ONNX variant

    settings = Settings(models=[str(bundle.path)])  # no --trust
    parse_source(str(bundle.path)).check(settings, lambda: None)  # the CLI's preflight passes
    with running_app(settings) as client:
        detail = client.get("/v1/models/iris").json()
        assert detail["metadata"]["variant"] == "onnx" and detail["metadata"]["runtime"] == "onnx"
        assert client.post("/v1/models/iris/predict", json={"features": X[0].tolist()}).status_code == 200

    original = Settings(models=[str(bundle.path)], optimized=False)
    with pytest.raises(UntrustedArtifact):
        parse_source(str(bundle.path)).check(original, lambda: None)
    with TestClient(create_app(original)) as client:
        import time

        deadline = time.monotonic() + 10
        while client.get("/v1/models/iris").json()["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/v1/models/iris").json()["state"] == "failed"


def test_a_classifier_variant_records_its_labels_and_serves_without_the_onnx_package(tmp_path: Path) -> None:
    """The graph's class labels go into the manifest at optimize time: serving the variant then
    needs onnxruntime only, not the `onnx` parser (~13 MB in every server process)."""
    import subprocess
    import sys

    made = forest_100_iris(tmp_path)
    bundle = _bundle(made, tmp_path, True)
    assert optimize_bundle(bundle, sample=made.inputs, trust=True).stored
    entry = Bundle.read(bundle.path).manifest.variants["onnx"]
    assert entry["runtime_options"]["classes"] == [0, 1, 2]
    code = (
        "import sys; from servekit.loading import load\n"
        f"p = load({str(bundle.path)!r})\n"
        "print(p.metadata()['variant'], list(p.classes), 'onnx' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["onnx", "[0,", "1,", "2]", "False"]
