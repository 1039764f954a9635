"""What a deployment installs and runs, decided from the bundle: extras, pins, trust, names."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from servekit.bundle import Bundle
from servekit.deploy import DeployContext, context_for, get_target
from servekit.deploy.context import k8s_name
from servekit.deploy.targets import split_image
from servekit.errors import InvalidInput, UntrustedArtifact
from tests.support import iris_bundle


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle.read(iris_bundle(tmp_path_factory.mktemp("iris")))


def test_a_joblib_bundle_needs_no_extra_but_pins_the_library_that_pickled_it(iris: Bundle) -> None:
    ctx = context_for(iris, trusted=True)
    assert ctx.extras == ()
    assert ctx.pins == (f"scikit-learn=={iris.manifest.framework_version}",)
    assert ctx.trust is True
    assert ctx.requirements[0] == f"servekit=={ctx.servekit_version}"


def test_a_pickle_based_bundle_nobody_vouched_for_is_refused(iris: Bundle) -> None:
    with pytest.raises(UntrustedArtifact) as caught:
        context_for(iris)
    assert "--trust" in caught.value.detail and "joblib" in caught.value.detail


def test_an_onnx_variant_brings_the_onnx_extra(iris: Bundle) -> None:
    variant = {"onnx": {"artifact": "model.onnx", "format": "onnx"}}
    bundle = Bundle(iris.path, iris.manifest.model_copy(update={"variants": variant}))
    assert context_for(bundle, trusted=True).extras == ("onnx",)


def test_formats_choose_their_extras(tmp_path: Path, iris: Bundle) -> None:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from servekit.packing import pack

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    (tmp_path / "iris.onnx").write_bytes(to_onnx(model, X[:1].astype("float32")).SerializeToString())
    bundle = pack(tmp_path / "iris.onnx", output=tmp_path / "bundle")
    ctx = context_for(bundle)
    assert ctx.extras == ("onnx",) and ctx.pins == () and ctx.trust is False
    assert ctx.servekit_requirement == f"servekit[onnx]=={ctx.servekit_version}"
    assert "--trust" not in ctx.serve_command()


def test_torch_and_keras_extras_take_the_cpu_wheels(iris: Bundle) -> None:
    ctx = context_for(iris, trusted=True, extras=("keras", "torch"))
    assert ctx.torch_cpu_index
    requirements = get_target("docker").render(ctx)["requirements.txt"]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert "servekit[keras,torch]==" in requirements
    plain = get_target("docker").render(context_for(iris, trusted=True))["requirements.txt"]
    assert "download.pytorch.org" not in plain


def test_a_shipped_wheel_replaces_the_pypi_pin_and_keeps_the_extras(iris: Bundle) -> None:
    ctx = context_for(iris, trusted=True, servekit_wheel="servekit-1.0-py3-none-any.whl", extras=("onnx",))
    assert ctx.servekit_requirement == "./wheels/servekit-1.0-py3-none-any.whl[onnx]"
    dockerfile = get_target("docker").render(ctx)["Dockerfile"]
    copy_wheel, install = dockerfile.index("COPY wheels/ ./wheels/"), dockerfile.index("RUN pip install")
    assert copy_wheel < install
    assert "!wheels/" in get_target("docker").render(ctx)[".dockerignore"]


def test_the_python_version_is_the_training_one_but_never_below_servekits_minimum(iris: Bundle) -> None:
    older = Bundle(iris.path, iris.manifest.model_copy(update={"python_version": "3.9.18"}))
    newer = Bundle(iris.path, iris.manifest.model_copy(update={"python_version": "3.13.1"}))
    assert context_for(older, trusted=True).python_version == "3.11"
    assert context_for(newer, trusted=True).python_version == "3.13"
    assert context_for(newer, trusted=True).default_base_image == "python:3.13-slim"


def test_the_serve_command_execs_servekit_on_port_from_the_environment(iris: Bundle) -> None:
    ctx = context_for(iris, trusted=True, port=9000)
    command = ctx.serve_command()
    assert command.startswith("exec servekit serve /models/iris --host 0.0.0.0 --trust")
    assert command.endswith("--port ${PORT:-9000}")
    assert shlex.split(ctx.serve_command("models/iris", "$PORT"))[-1] == "$PORT"


@pytest.mark.parametrize(
    ("name", "label"),
    [("iris", "iris"), ("Iris_Model.v2", "iris-model-v2"), ("3d-model", "m-3d-model"), ("x" * 80, "x" * 63)],
)
def test_resource_names_are_dns_labels(name: str, label: str) -> None:
    assert k8s_name(name) == label


def test_the_default_image_is_named_after_the_model_and_its_version(iris: Bundle) -> None:
    assert context_for(iris, trusted=True).image == "servekit-iris:latest"
    versioned = Bundle(iris.path, iris.manifest.model_copy(update={"version": 3, "name": "My_Iris"}))
    ctx = context_for(versioned, trusted=True)
    assert ctx.image == "servekit-my-iris:3" and ctx.slug == "my-iris" and ctx.model_path == "/models/My_Iris"
    assert context_for(iris, trusted=True, image="ghcr.io/acme/iris:v1").image == "ghcr.io/acme/iris:v1"


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("servekit-iris:3", ("servekit-iris", "3")),
        ("registry:5000/team/iris", ("registry:5000/team/iris", "latest")),
        ("registry:5000/team/iris:v2", ("registry:5000/team/iris", "v2")),
    ],
)
def test_images_split_into_name_and_tag(image: str, parts: tuple[str, str]) -> None:
    assert split_image(image) == parts


def test_an_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        get_target("nomad")
    assert "'nomad'" in caught.value.detail
    for name in ("docker", "heroku", "lambda", "cloudrun", "azure", "k8s"):
        assert name in caught.value.detail


def test_commands_quote_what_reaches_a_shell(iris: Bundle) -> None:
    ctx = context_for(iris, trusted=True, image="my image:1")
    commands = get_target("docker").commands(ctx, "out dir")
    assert commands[0] == "docker build -t 'my image:1' 'out dir'"
    assert shlex.split(commands[3]) == ["docker", "compose", "-f", "out dir/compose.yaml", "up", "--build", "-d"]


def test_lambda_renders_with_the_lambda_extra(iris: Bundle) -> None:
    ctx: DeployContext = context_for(iris, trusted=True, extras=("onnx",))
    files = get_target("lambda").render(ctx)
    assert "servekit[lambda,onnx]==" in files["requirements.txt"]
    assert get_target("docker").context(ctx).extras == ("onnx",)
