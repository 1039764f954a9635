"""`servekit build` with bad input: one line on stderr, exit code 2, nothing written; and paths
with spaces, quotes and `$` that reach shells and YAML arrive intact.

Model names cannot hold such characters (`servekit.refs.validate_name`: letters, digits, `.`,
`_`, `-`), and a manifest edited by hand to hold them is refused, so the hostile values here
are the model's path, the build folder, and the other options that reach the files (`--image`,
`--base-image`, `-r`). `servekit build` has no option for environment values: the only ones it
writes are derived from the (validated) name. Most runs call the CLI's `main` in-process (the
same code path as the `servekit` script); runs with a library made unimportable use a process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from servekit.bundle import Bundle
from servekit.cli.main import main
from servekit.optimize.store import write_manifest_atomically
from servekit.packing import pack
from tests.support import iris_bundle, iris_model

TARGETS = ("docker", "heroku", "lambda", "cloudrun", "azure", "k8s")
HOSTILE = 'it\'s "my $model"'
IMAGE = "registry.example.com:5000/team/it-s-my-model:1"
REQUIREMENT = 'numpy ; python_version >= "3.8"'
TOOLS = ("docker", "kubectl", "gcloud", "az", "heroku", "git", "sam", "curl")
# Every deploy tool replaced by a function that prints its arguments, separated by \x1f.
STUBS = "".join(f"{tool}() {{ printf '%s\\x1f' {tool} \"$@\"; printf '\\n'; }}\n" for tool in TOOLS)
_RUNNER = """
import sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None
from servekit.cli.main import main
main(sys.argv[2:])
"""


class SafeTagsLoader(yaml.SafeLoader):
    """yaml.safe_load, plus CloudFormation's short tags (`!Ref X` becomes `{"Ref": "X"}`) for SAM."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}  # type: ignore[arg-type]


SafeTagsLoader.add_multi_constructor("!", _tagged)


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`servekit ARGS` in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def run_blocked(blocked: str, *args: str) -> tuple[int, str, str]:
    """`servekit ARGS` in a new process where the `blocked` modules cannot be imported."""
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, blocked, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "250"},
    )
    return result.returncode, result.stdout, result.stderr


def one_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def nothing_left(folder: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no staging folder


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return iris_bundle(tmp_path)


# -- mistakes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["nomad", "Docker", HOSTILE, ""])
def test_an_unknown_target_is_one_line(
    bundle: Path, tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    line = one_line(*run("build", target, str(bundle), "-o", str(out), "--trust", capsys=capsys)[::2])
    assert f"unknown deployment target {target!r}. Choose one of: {', '.join(TARGETS)}" in line
    nothing_left(tmp_path, out)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("ghost", "no model named 'ghost'"),
        ("iris:9", "9"),
        ("iris@production", "production"),
        ("missing/model.joblib", "missing/model.joblib does not exist"),
        ("iris::1", "iris::1"),
    ],
)
def test_a_reference_that_does_not_resolve_is_one_line(
    bundle: Path, tmp_path: Path, ref: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from servekit.registry import Registry

    with Registry() as registry:  # SERVEKIT_HOME comes from the conftest fixture
        registry.push(Bundle.read(bundle))
    out = tmp_path / "out"
    line = one_line(*run("build", "k8s", ref, "-o", str(out), "--from-pypi", capsys=capsys)[::2])
    assert expected in line
    nothing_left(tmp_path, out)


@pytest.mark.parametrize("name", ["../../escaped", HOSTILE, "a/b", ""])
def test_a_manifest_edited_to_an_invalid_name_is_refused(
    bundle: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = Bundle.read(bundle)
    edited.manifest.name = name
    write_manifest_atomically(edited)
    out = tmp_path / "builds" / "out"
    line = one_line(*run("build", "heroku", str(bundle), "-o", str(out), "--trust", "--from-pypi", capsys=capsys)[::2])
    assert f"names the model {name!r}, which is not a valid model name" in line
    assert not (tmp_path / "builds").exists() and not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris.bundle", "iris.joblib"]


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--image", "my image:1", "--image 'my image:1' is not an image reference"),
        ("--image", "x:1\nkind: Secret", "--image 'x:1\\nkind: Secret' is not an image reference"),
        ("--base-image", 'python "3" $X', "--base-image 'python \"3\" $X' is not an image reference"),
        ("-r", "numpy\n--index-url http://elsewhere", "the requirement 'numpy\\n--index-url"),
        ("-r", " ", "the requirement ' ' is empty"),
    ],
)
def test_options_that_would_break_the_files_are_one_line(
    bundle: Path, tmp_path: Path, option: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, err = run(
        "build", "docker", str(bundle), "-o", str(out), "--trust", "--from-pypi", option, value, capsys=capsys
    )
    assert expected in one_line(code, err)
    nothing_left(tmp_path, out)


def test_an_existing_folder_is_kept_unless_forced_and_replaced_only_by_a_whole_build(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    args = ("build", "azure", str(bundle), "-o", str(out), "--trust", "--from-pypi")
    line = one_line(*run(*args, capsys=capsys)[::2])
    assert line.endswith("out already exists and is not empty. Choose another --output or pass --force")
    code, _, err = run(*args, "--force", "--image", "Bad Image", capsys=capsys)  # forced, but fails
    one_line(code, err)
    bad_model = ("build", "azure", str(tmp_path / "nope.joblib"), "-o", str(out), "--force")
    one_line(*run(*bad_model, capsys=capsys)[::2])
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    code, _, err = run(*args, "--force", capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        ".dockerignore", "Dockerfile", "README.md", "aci.yaml", "containerapp.yaml", "models", "requirements.txt"
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "abc"], ["--nope"], []])
def test_a_usage_error_is_one_line_and_exit_2(
    bundle: Path, tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    given = ["docker", str(bundle), "-o", str(out), *args] if args else []
    line = one_line(*run("build", *given, capsys=capsys)[::2])
    assert "unexpected error" not in line
    nothing_left(tmp_path, out)


# -- a format whose library is missing ------------------------------------------------------------
@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = tmp_path / "iris.onnx"
    path.write_bytes(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    return path


def test_a_model_file_whose_library_is_missing_is_one_line_naming_the_extra(onnx_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = run_blocked("onnxruntime", "build", "docker", str(onnx_model), "-o", str(out), "--from-pypi")
    line = one_line(code, err)
    assert "needs the Python package 'onnxruntime'" in line and "pip install 'servekit[onnx]'" in line
    nothing_left(tmp_path, out)


def test_a_bundle_builds_without_its_library_and_the_deployment_installs_the_extra(
    onnx_model: Path, tmp_path: Path
) -> None:
    """Building reads the manifest; only packing a bare file (and serving) loads the model."""
    bundle = pack(onnx_model, output=tmp_path / "bundle")
    out = tmp_path / "out"
    code, _, err = run_blocked("onnxruntime,onnx", "build", "docker", str(bundle.path), "-o", str(out), "--from-pypi")
    assert code == 0, err
    assert "servekit[onnx]==" in (out / "requirements.txt").read_text()


def test_a_format_with_no_runtime_here_is_one_line(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle made by a third-party runtime (an entry point) that is not installed."""
    edited = Bundle.read(bundle)
    edited.manifest.format = "tensorflow-savedmodel"
    write_manifest_atomically(edited)
    out = tmp_path / "out"
    line = one_line(*run("build", "docker", str(bundle), "-o", str(out), "--trust", "--from-pypi", capsys=capsys)[::2])
    assert "no runtime for format 'tensorflow-savedmodel'. Known formats:" in line
    nothing_left(tmp_path, out)


# -- hostile paths reach shells and YAML intact ----------------------------------------------------
def shell_calls(line: str, cwd: Path) -> list[list[str]]:
    """Run one printed command line with every deploy tool stubbed; the calls it made."""
    checked = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
    assert checked.returncode == 0, (line, checked.stderr)
    ran = subprocess.run(["bash", "-c", STUBS + line], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert ran.returncode == 0, (line, ran.stderr)
    return [call.split("\x1f")[:-1] for call in ran.stdout.splitlines() if "\x1f" in call]


def served_args(shell_command: str, port: str | None) -> list[str]:
    """The argv `exec` would start, from `sh -c COMMAND` with `exec` replaced by printf."""
    assert shell_command.startswith("exec ")
    script = "printf '%s\\n' " + shell_command.removeprefix("exec ")
    env = {"PATH": os.environ["PATH"], **({"PORT": port} if port else {})}
    ran = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def test_every_target_quotes_hostile_paths_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / HOSTILE
    home.mkdir()
    model, _ = iris_model(home, name=f"{HOSTILE}.joblib")
    name = "it-s-my-model"  # what servekit makes of the file name
    monkeypatch.chdir(home)  # build folders are given relative to here, as users type them
    for target in TARGETS:
        folder = f"{HOSTILE} builds/{target}"
        options = ["--trust", "--from-pypi", "--image", IMAGE, "-r", REQUIREMENT]
        if target == "docker":
            options.append("--mount-model")
        code, out, err = run("build", target, str(model), "-o", folder, *options, capsys=capsys)
        assert code == 0, err
        built = home / folder
        check_files(built, target, name)
        printed = [line.strip() for line in out.split("next:\n", 1)[1].splitlines()]
        check_commands(printed, folder, home, target)
        readme = (built / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
        check_commands(readme, ".", built, target)  # the same steps, run from the build folder


def check_files(built: Path, target: str, name: str) -> None:
    assert REQUIREMENT in (built / "requirements.txt").read_text().splitlines()
    documents = {}
    for path in sorted([*built.rglob("*.yaml"), *built.rglob("*.yml")]):
        documents[path.relative_to(built).as_posix()] = list(yaml.load_all(path.read_text(), Loader=SafeTagsLoader))
    images = {c["image"] for doc in _walk(documents) for c in _containers(doc)}
    monitoring = {"prom/prometheus:v2.54.1", "grafana/grafana:11.2.0"} if target == "docker" else set()
    assert images == (set() if target in {"heroku", "lambda"} else {IMAGE} | monitoring)
    if target == "docker":
        assert documents["compose.yaml"][0]["services"]["it-s-my-model"]["image"] == IMAGE
    if target == "azure":
        assert documents["aci.yaml"][0]["tags"]["model"] == name
    if target == "lambda":
        variables = documents["template-zip.yaml"][0]["Resources"]["ModelFunction"]["Properties"]["Environment"]
        assert json.loads(variables["Variables"]["SERVEKIT_MODELS"]) == [f"/var/task/models/{name}"]
        assert subprocess.run(["sh", "-n", str(built / "build-zip.sh")]).returncode == 0
    if target == "heroku":
        web = (built / "Procfile").read_text().strip().removeprefix("web: ")
        args = ["servekit", "serve", f"models/{name}", "--host", "0.0.0.0", "--trust", "--port", "5000"]
        assert served_args(web, "5000") == args
    if (built / "Dockerfile").is_file() and target != "lambda":
        lines = (built / "Dockerfile").read_text().splitlines()
        cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
        assert cmd[:2] == ["/bin/sh", "-c"]
        serve = ["servekit", "serve", f"/models/{name}", "--host", "0.0.0.0", "--trust", "--port"]
        assert served_args(cmd[2], None) == [*serve, "8080"]
        assert served_args(cmd[2], "9999") == [*serve, "9999"]
        healthcheck = next(line for line in lines if line.strip().startswith("CMD [") and "python" in line)
        assert json.loads(healthcheck.strip()[4:])[:2] == ["python", "-c"]


def check_commands(commands: list[str], folder: str, cwd: Path, target: str) -> None:
    """Every command is valid shell, and every argument naming the build folder names it exactly."""
    here = folder == "."
    paths = []
    for line in commands:
        for call in shell_calls(line, cwd):
            paths += [arg for arg in call if not here and arg.startswith(folder)]
            if call[:2] == ["docker", "run"] and "-v" in call:
                models = cwd / "models" if here else cwd / folder / "models"
                assert call[call.index("-v") + 1] == f"{models}:/models:ro"
            if call[:2] == ["docker", "build"]:
                assert call[-1] == folder and call[call.index("-t") + 1] == IMAGE
        if line.startswith("cd "):
            moved = subprocess.run(["bash", "-c", f"{line} && pwd"], capture_output=True, text=True, cwd=cwd)
            assert moved.stdout.strip() == str(cwd if here else cwd / folder), moved.stderr
    for path in paths:
        assert (cwd / path).exists(), path
    assert here or paths or target in {"heroku", "lambda"}


def test_an_absolute_build_folder_is_mounted_as_it_is(tmp_path: Path) -> None:
    from servekit.deploy import context_for, get_target

    bundle = Bundle.read(iris_bundle(tmp_path))
    ctx = context_for(bundle, trusted=True, mount_model=True)
    folder = str(tmp_path / HOSTILE)
    run_line = get_target("docker").commands(ctx, folder)[1]
    (call,) = shell_calls(run_line, tmp_path)
    assert call[call.index("-v") + 1] == f"{folder}/models:/models:ro"
    (call,) = shell_calls(get_target("docker").commands(ctx, ".")[1], tmp_path)
    assert call[call.index("-v") + 1] == f"{tmp_path}/models:/models:ro"


def _walk(documents: dict[str, list]) -> list:
    return [doc for docs in documents.values() for doc in docs if doc is not None]


def _containers(node: object) -> list[dict]:
    """Every mapping with an `image` key, anywhere in a YAML document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("image"), str):
            found.append(node)
        for value in node.values():
            found += _containers(value)
    elif isinstance(node, list):
        for value in node:
            found += _containers(value)
    return found
