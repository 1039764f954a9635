"""The torch runtimes on real files: TorchScript, torch.export programs and torch.save files."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from servekit.errors import (  # noqa: E402
    CorruptArtifact,
    InvalidManifest,
    MissingDependency,
    MissingInformation,
)
from servekit.formats import detect_format  # noqa: E402
from servekit.runtimes import all_runtimes, get_runtime  # noqa: E402
from servekit.signature import Signature  # noqa: E402
from tests.integration.cases import MadeModel, ModelCase  # noqa: E402
from tests.integration.cases.torch_models import (  # noqa: E402
    CASES,
    IRIS_CLASSES,
    IRIS_KWARGS,
    IRIS_MODULE,
    trained_iris,
)
from tests.integration.torch_modules import IrisMLP, LinearRegressor  # noqa: E402

TORCH_FORMATS = {"torchscript", "torch-export", "torch"}
IRIS_OPTIONS = {"module": IRIS_MODULE, "module_kwargs": IRIS_KWARGS}


class Grid(torch.nn.Module):
    """Takes rows of shape (2, 3): a model whose input is not a flat vector."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Softmaxed(torch.nn.Module):
    """A classifier whose forward already returns probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = IrisMLP(**IRIS_KWARGS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=1)


@pytest.fixture(scope="module")
def iris() -> tuple[Any, np.ndarray]:
    return trained_iris()


@pytest.fixture(scope="module")
def files(iris: tuple[Any, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per way of saving the iris network, plus non-torch files to tell apart."""
    model, X = iris
    tmp = tmp_path_factory.mktemp("torch")
    rows = torch.tensor(X[:8], dtype=torch.float32)
    paths = {
        "scripted": tmp / "scripted.pt",
        "traced": tmp / "traced.torchscript",
        "export": tmp / "program.pt2",
        "export_static1": tmp / "static1.pt2",
        "export_static4": tmp / "static4.pt2",
        "state_dict": tmp / "weights.pt",
        "state_dict_bin": tmp / "weights.bin",
        "module": tmp / "module.pth",
        "skops": tmp / "model.skops",
        "joblib": tmp / "model.joblib",
    }
    torch.jit.save(torch.jit.script(model), paths["scripted"])
    torch.jit.save(torch.jit.trace(model, rows), paths["traced"])
    batch = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (rows,), dynamic_shapes=batch), paths["export"])
    torch.export.save(torch.export.export(model, (rows[:1],)), paths["export_static1"])
    torch.export.save(torch.export.export(model, (rows[:4],)), paths["export_static4"])
    torch.save(model.state_dict(), paths["state_dict"])
    torch.save(model.state_dict(), paths["state_dict_bin"])
    torch.save(model, paths["module"])
    import skops.io

    X_np, y = load_iris(return_X_y=True)
    sklearn_model = LogisticRegression(max_iter=300).fit(X_np, y)
    skops.io.dump(sklearn_model, paths["skops"])
    joblib.dump(sklearn_model, paths["joblib"])
    return paths


def claimed_by(path: Path) -> list[str]:
    """Every format whose sniff accepts the file: detection is precise when there is one."""
    from servekit.formats import read_signature_bytes

    head, members = read_signature_bytes(path)
    return sorted(name for name, rt in all_runtimes().items() if rt.sniff(path, head, members))


def runtime(path: Path, options: dict[str, Any] | None = None, *, fmt: str | None = None, **manifest: Any):
    rt = get_runtime(fmt or detect_format(path))(path, options)
    rt.configure(manifest.get("signature"), manifest.get("classes"), manifest.get("task"))
    return rt


def iris_runtime(path: Path, options: dict[str, Any] | None = None):
    return runtime(
        path,
        options,
        signature=Signature.positional(4, array_dtype="float32"),
        classes=IRIS_CLASSES,
        task="classification",
    )


def expected_probabilities(model: Any, rows: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(rows.astype("float32"))), dim=1).numpy()


# -- the conformance cases, straight through the runtime -------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_predicts_like_the_original(case: ModelCase, tmp_path: Path) -> None:
    made: MadeModel = case.make(tmp_path)
    options = made.pack_options
    assert detect_format(made.path) == case.format
    rt = runtime(made.path, options.get("runtime_options"), task=options.get("task"), classes=options.get("classes"))
    assert rt.needs_trust() is case.needs_trust
    rt.load()
    batch = np.asarray(made.inputs, dtype="float32")
    prediction = rt.predict(batch)
    if case.task == "classification":
        assert prediction.outputs.tolist() == made.expected_outputs.tolist()
        np.testing.assert_allclose(prediction.probabilities, made.expected_probabilities, rtol=1e-6)
        assert list(prediction.classes) == made.classes
    else:
        np.testing.assert_allclose(prediction.outputs, made.expected_outputs, rtol=1e-6)
    one = rt.predict(batch[:1])
    assert len(one) == 1
    if case.task == "classification":
        assert one.outputs[0] == prediction.outputs[0]
        np.testing.assert_allclose(one.probabilities, prediction.probabilities[:1], rtol=1e-5)
    else:
        np.testing.assert_allclose(one.outputs, prediction.outputs[:1], rtol=1e-5)


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("scripted", "torchscript"),
        ("traced", "torchscript"),
        ("export", "torch-export"),
        ("export_static1", "torch-export"),
        ("state_dict", "torch"),
        ("state_dict_bin", "torch"),
        ("module", "torch"),
    ],
)
def test_each_torch_file_is_claimed_by_exactly_its_format(files: dict[str, Path], key: str, fmt: str) -> None:
    assert claimed_by(files[key]) == [fmt]
    assert detect_format(files[key]) == fmt


@pytest.mark.parametrize("key", ["skops", "joblib"])
def test_other_files_are_not_claimed_by_torch(files: dict[str, Path], key: str) -> None:
    assert not set(claimed_by(files[key])) & TORCH_FORMATS
    assert detect_format(files[key]) == key


def test_truncated_torch_file_is_corrupt(files: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(files["scripted"].read_bytes()[:500])
    with pytest.raises(CorruptArtifact, match=r"broken\.pt"):
        detect_format(broken)


# -- torch.save: state_dict, module option and trust -----------------------------------------
def test_state_dict_needs_no_trust_and_rebuilds_the_module(files: dict[str, Path], iris) -> None:
    model, X = iris
    rt = iris_runtime(files["state_dict"], IRIS_OPTIONS)
    assert rt.needs_trust() is False
    rt.load()
    assert isinstance(rt.model, IrisMLP)
    assert rt.model.training is False
    prediction = rt.predict(X[:10].astype("float32"))
    np.testing.assert_allclose(prediction.probabilities, expected_probabilities(model, X[:10]), rtol=1e-6)
    assert rt.describe().extra["module"] == IRIS_MODULE


def test_state_dict_without_module_option_asks_for_it(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["state_dict"])
    assert rt.needs_trust() is False  # weights only: nothing runs, so the useful error is reached
    with pytest.raises(MissingInformation, match="state_dict") as info:
        rt.load()
    assert "--module package.module:ClassName" in str(info.value)
    assert "--module-kwargs" in str(info.value)


def test_pickled_module_needs_trust_and_loads_once_trusted(files: dict[str, Path], iris) -> None:
    model, X = iris
    rt = iris_runtime(files["module"])
    assert rt.needs_trust() is True
    rt.load()
    assert isinstance(rt.model, IrisMLP)
    prediction = rt.predict(X[:5].astype("float32"))
    np.testing.assert_allclose(prediction.probabilities, expected_probabilities(model, X[:5]), rtol=1e-6)


def test_pickled_module_with_module_option_is_refused(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["module"], IRIS_OPTIONS)
    assert rt.needs_trust() is False
    with pytest.raises(CorruptArtifact, match="more than weights"):
        rt.load()


@pytest.mark.parametrize(
    ("module", "error", "message"),
    [
        ("no_such_package.nets:Net", MissingDependency, "no_such_package"),
        ("tests.integration.torch_modules:Missing", InvalidManifest, "no attribute 'Missing'"),
        ("tests.integration.torch_modules:train", InvalidManifest, "not a torch.nn.Module subclass"),
        ("IrisMLP", InvalidManifest, "not an import path"),
    ],
)
def test_bad_module_option_is_named(files: dict[str, Path], module: str, error: type, message: str) -> None:
    rt = iris_runtime(files["state_dict"], {"module": module})
    with pytest.raises(error, match=message) as info:
        rt.load()
    assert module in str(info.value)


def test_dotted_module_path_without_colon_works(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["state_dict"], {"module": IRIS_MODULE.replace(":", ".")})
    rt.load()
    assert isinstance(rt.model, IrisMLP)


def test_wrong_constructor_arguments_are_reported(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["state_dict"], {"module": IRIS_MODULE, "module_kwargs": {"depth": 3}})
    with pytest.raises(InvalidManifest, match="depth"):
        rt.load()
    rt = iris_runtime(files["state_dict"], {"module": IRIS_MODULE, "module_kwargs": {"hidden": 32}})
    with pytest.raises(CorruptArtifact, match=r"hidden\.weight"):
        rt.load()


def test_mismatched_keys_are_named(iris, tmp_path: Path) -> None:
    model, _ = iris
    state = dict(model.state_dict())
    state["output.bias"] = state.pop("out.bias")
    torch.save(state, tmp_path / "renamed.pt")
    rt = iris_runtime(tmp_path / "renamed.pt", IRIS_OPTIONS)
    with pytest.raises(CorruptArtifact) as info:
        rt.load()
    assert "missing keys out.bias" in str(info.value)
    assert "unexpected keys output.bias" in str(info.value)


def test_checkpoint_dict_with_state_dict_entry_loads(iris, tmp_path: Path) -> None:
    model, X = iris
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "checkpoint.pt")
    rt = iris_runtime(tmp_path / "checkpoint.pt", IRIS_OPTIONS)
    rt.load()
    np.testing.assert_allclose(
        rt.predict(X[:3].astype("float32")).probabilities, expected_probabilities(model, X[:3]), rtol=1e-6
    )


# -- corrupt files that still look like their format -----------------------------------------
def garble(source: Path, target: Path, suffixes: tuple[str, ...]) -> Path:
    """A copy of a zip whose members ending with `suffixes` hold garbage."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"\x00garbage" if info.filename.endswith(suffixes) else data)
    return target


@pytest.mark.parametrize(
    ("key", "suffixes", "options"),
    [
        ("scripted", ("data.pkl", "constants.pkl"), None),
        ("export", (".json",), None),
        ("state_dict", ("data.pkl",), IRIS_OPTIONS),
        ("state_dict", ("data.pkl",), None),
    ],
)
def test_corrupt_content_is_reported(files: dict[str, Path], tmp_path: Path, key: str, suffixes, options) -> None:
    source = files[key]
    broken = garble(source, tmp_path / f"broken{source.suffix}", suffixes)
    fmt = detect_format(broken)
    assert fmt == detect_format(source)
    rt = iris_runtime(broken, options)
    assert rt.needs_trust() is False  # unreadable is not the same as code to run
    with pytest.raises(CorruptArtifact, match=re.escape(broken.name)):
        rt.load()


# -- describe --------------------------------------------------------------------------------
def test_describe_reports_what_the_manifest_gave(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["scripted"])
    rt.load()
    description = rt.describe()
    assert description.task == "classification"
    assert description.framework == "torch"
    assert description.framework_version == torch.__version__
    assert description.classes == IRIS_CLASSES
    assert description.signature == Signature.positional(4, array_dtype="float32")


def test_describe_without_manifest_cannot_tell_the_input(files: dict[str, Path]) -> None:
    rt = runtime(files["traced"])
    rt.load()
    description = rt.describe()
    assert description.task == "regression"
    assert description.signature is None
    assert description.classes is None


def test_export_describes_its_input_shape(files: dict[str, Path]) -> None:
    rt = runtime(files["export"], task="classification")
    rt.load()
    signature = rt.describe().signature
    assert signature is not None
    assert signature.n_features == 4
    assert signature.row_shape is None
    assert signature.array_dtype == "float32"
    assert "static_batch" not in rt.describe().extra


def test_export_of_tensor_rows_describes_row_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Grid().eval()
    example = (torch.randn(3, 2, 3),)
    program = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "grid.pt2")
    rt = runtime(tmp_path / "grid.pt2")
    rt.load()
    signature = rt.describe().signature
    assert signature.row_shape == (2, 3)
    assert signature.n_features == 6
    rows = np.random.default_rng(0).normal(size=(5, 2, 3)).astype("float32")
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(rt.predict(signature.batch_from_array(rows)).outputs, expected, rtol=1e-6)


@pytest.mark.parametrize(("key", "static"), [("export_static1", 1), ("export_static4", 4)])
def test_export_with_static_batch_predicts_any_number_of_rows(
    files: dict[str, Path], iris, key: str, static: int
) -> None:
    model, X = iris
    rt = iris_runtime(files[key])
    rt.load()
    assert rt.describe().extra["static_batch"] == static
    for n in (1, 4, 6, 9):
        prediction = rt.predict(X[:n].astype("float32"))
        assert len(prediction) == n
        np.testing.assert_allclose(prediction.probabilities, expected_probabilities(model, X[:n]), rtol=1e-5)


# -- outputs ---------------------------------------------------------------------------------
def test_single_logit_classifier_gives_two_columns(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LinearRegressor(4, 1).eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "binary.pt")
    rt = runtime(tmp_path / "binary.pt", task="classification", classes=["no", "yes"])
    rt.load()
    rows = load_iris().data[::30].astype("float32")
    prediction = rt.predict(rows)
    with torch.inference_mode():
        p = torch.sigmoid(model(torch.from_numpy(rows))).numpy()[:, 0]
    np.testing.assert_allclose(prediction.probabilities[:, 1], p, rtol=1e-6)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert prediction.outputs.tolist() == np.where(p > 0.5, "yes", "no").tolist()
    assert prediction.classes == ["no", "yes"]


def test_probability_output_is_used_as_is(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Softmaxed().eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "softmaxed.pt")
    rows = load_iris().data[::30].astype("float32")
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows)).numpy()
    rt = runtime(tmp_path / "softmaxed.pt", {"output": "probabilities"}, task="classification")
    rt.load()
    prediction = rt.predict(rows)
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=1e-6)
    assert prediction.classes == [0, 1, 2]  # no classes given: the column numbers


def test_multi_output_regressor_keeps_its_columns(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LinearRegressor(4, 2).eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "two.pt")
    rt = runtime(tmp_path / "two.pt", task="regression")
    rt.load()
    rows = load_iris().data[:7].astype("float32")
    prediction = rt.predict(rows)
    assert prediction.outputs.shape == (7, 2)
    assert prediction.probabilities is None
    with torch.inference_mode():
        np.testing.assert_allclose(prediction.outputs, model(torch.from_numpy(rows)).numpy(), rtol=1e-6)


def test_classes_that_do_not_fit_the_output_are_reported(files: dict[str, Path]) -> None:
    rt = runtime(files["scripted"], task="classification", classes=["a", "b"])
    rt.load()
    with pytest.raises(InvalidManifest, match="2 classes but the model outputs 3"):
        rt.predict(load_iris().data[:2].astype("float32"))


def test_threads_option_sets_torch_threads(files: dict[str, Path]) -> None:
    before = torch.get_num_threads()
    try:
        rt = iris_runtime(files["scripted"], {"threads": 1})
        rt.load()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_unload_frees_the_model(files: dict[str, Path]) -> None:
    rt = iris_runtime(files["scripted"])
    rt.load()
    rt.unload()
    assert rt.model is None
    rt.load()
    assert len(rt.predict(load_iris().data[:2].astype("float32"))) == 2
