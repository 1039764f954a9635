"""What the rendered files promise: layer order, non-root, health checks, probes, signals."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from servekit.bundle import Bundle
from servekit.deploy import DeployContext, context_for, get_target
from tests.support import iris_bundle


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> DeployContext:
    return context_for(Bundle.read(iris_bundle(tmp_path_factory.mktemp("iris"))), trusted=True)


def instructions(dockerfile: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_caches_dependencies_before_the_model_and_runs_unprivileged(ctx: DeployContext) -> None:
    lines = instructions(get_target("docker").render(ctx)["Dockerfile"])
    first = {line.split()[0]: i for i, line in reversed(list(enumerate(lines)))}
    assert lines[0] == f"ARG BASE_IMAGE=python:{ctx.python_version}-slim" and lines[1] == "FROM ${BASE_IMAGE}"
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    copy_requirements = lines.index("COPY requirements.txt ./")
    copy_model = lines.index("COPY models/ /models/")
    assert copy_requirements < install < copy_model
    assert first["USER"] > copy_model and lines[first["USER"]] == "USER 10001:10001"
    assert "EXPOSE 8080" in lines and "STOPSIGNAL SIGTERM" in lines


def test_the_health_check_and_command_need_no_curl_and_exec_servekit(ctx: DeployContext) -> None:
    lines = instructions(get_target("docker").render(ctx)["Dockerfile"])
    healthcheck = next(line for line in lines if line.startswith("HEALTHCHECK"))
    probe = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe[:2] == ["python", "-c"] and "/health/ready" in probe[2] and "curl" not in healthcheck
    command = json.loads(lines[-1].removeprefix("CMD "))
    assert command[:2] == ["/bin/sh", "-c"]
    assert command[2] == "exec servekit serve /models/iris --host 0.0.0.0 --trust --port ${PORT:-8080}"


def test_a_mounted_model_is_not_copied_into_the_image(ctx: DeployContext) -> None:
    files = get_target("docker").render(ctx.with_options(mount_model=True))
    assert "COPY models/" not in files["Dockerfile"]
    assert "!models/" not in files[".dockerignore"]
    service = yaml.safe_load(files["compose.yaml"])["services"]["iris"]
    assert "./models:/models:ro" in service["volumes"]


def test_the_base_image_can_be_chosen(ctx: DeployContext) -> None:
    dockerfile = get_target("docker").render(ctx.with_options(base_image="python:3.12-slim-bookworm"))["Dockerfile"]
    assert "ARG BASE_IMAGE=python:3.12-slim-bookworm" in dockerfile


def test_compose_wires_health_restart_volume_and_the_monitoring_stack(ctx: DeployContext) -> None:
    files = get_target("docker").render(ctx)
    compose = yaml.safe_load(files["compose.yaml"])
    server = compose["services"]["iris"]
    assert server["restart"] == "unless-stopped" and server["init"] is True
    assert server["healthcheck"]["test"][0] == "CMD" and "/health/ready" in server["healthcheck"]["test"][-1]
    assert f"servekit-data:{ctx.home}" in server["volumes"] and "servekit-data" in compose["volumes"]
    assert server["read_only"] is True and server["stop_grace_period"] == "40s"
    prometheus, grafana = compose["services"]["prometheus"], compose["services"]["grafana"]
    assert prometheus["profiles"] == ["monitoring"] == grafana["profiles"]
    assert prometheus["depends_on"]["iris"]["condition"] == "service_healthy"
    scrape = yaml.safe_load(files["monitoring/prometheus/prometheus.yml"])
    job = scrape["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["iris:8080"]
    assert scrape["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    datasource = yaml.safe_load(files["monitoring/grafana/provisioning/datasources/prometheus.yml"])
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(files["monitoring/grafana/provisioning/dashboards/servekit.yml"])
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_heroku_binds_port_and_pins_python(ctx: DeployContext) -> None:
    files = get_target("heroku").render(ctx)
    assert files["Procfile"] == "web: exec servekit serve models/iris --host 0.0.0.0 --trust --port $PORT\n"
    assert files[".python-version"] == f"{ctx.python_version}\n"
    assert files["requirements.txt"].splitlines()[1:] == ctx.requirements


def test_lambda_ships_an_image_a_zip_layout_and_a_sam_template(ctx: DeployContext) -> None:
    target = get_target("lambda")
    files = target.render(ctx)
    assert "build-zip.sh" in target.executables
    assert 'CMD ["servekit.integrations.aws_lambda.handler"]' in files["Dockerfile"]
    assert 'SERVEKIT_MODELS="[\\"/var/task/models/iris\\"]"' in files["Dockerfile"]

    class Loader(yaml.SafeLoader):
        """CloudFormation's short-form tags (!Ref, !Sub, !GetAtt) as plain values."""

    Loader.add_multi_constructor("!", lambda loader, tag, node: loader.construct_scalar(node))
    image = yaml.load(files["template.yaml"], Loader=Loader)
    function = image["Resources"]["ModelFunction"]
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Metadata"]["Dockerfile"] == "Dockerfile"
    assert function["Properties"]["Events"]["HttpApi"]["Type"] == "HttpApi"
    assert "FunctionUrlConfig" in function["Properties"]
    zipped = yaml.load(files["template-zip.yaml"], Loader=Loader)["Resources"]["ModelFunction"]["Properties"]
    assert zipped["Handler"] == "servekit.integrations.aws_lambda.handler"
    assert json.loads(zipped["Environment"]["Variables"]["SERVEKIT_MODELS"]) == ["/var/task/models/iris"]
    assert zipped["CodeUri"] == "lambda.zip" and zipped["Runtime"] == f"python{ctx.python_version}"


def test_cloud_run_takes_the_port_from_the_container_spec_with_probes(ctx: DeployContext) -> None:
    service = yaml.safe_load(get_target("cloudrun").render(ctx)["service.yaml"])
    spec = service["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert not any(env["name"] == "PORT" for env in container.get("env", []))  # Cloud Run sets it
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert spec["containerConcurrency"] > 1 and container["resources"]["limits"]["memory"]


def test_azure_has_liveness_and_readiness_probes(ctx: DeployContext) -> None:
    files = get_target("azure").render(ctx)
    group = yaml.safe_load(files["aci.yaml"])
    container = group["properties"]["containers"][0]["properties"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert group["properties"]["ipAddress"]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    app = yaml.safe_load(files["containerapp.yaml"])
    probes = {p["type"]: p["httpGet"]["path"] for p in app["properties"]["template"]["containers"][0]["probes"]}
    assert probes == {"Startup": "/health/ready", "Liveness": "/health/live", "Readiness": "/health/ready"}


def test_the_kubernetes_deployment_is_hardened_and_drains(ctx: DeployContext) -> None:
    files = get_target("k8s").render(ctx)
    pod = yaml.safe_load(files["k8s/deployment.yaml"])["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {ctx.home, "/tmp"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["envFrom"][0]["secretRef"]["name"] == "iris-secrets"
    kustomization = yaml.safe_load(files["k8s/kustomization.yaml"])
    assert set(kustomization["resources"]) == {"secret.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"}
    isvc = yaml.safe_load(files["kserve/inferenceservice.yaml"])
    predictor = isvc["spec"]["predictor"]["containers"][0]
    assert isvc["kind"] == "InferenceService" and predictor["image"] == ctx.image
    assert predictor["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_every_readme_lists_the_files_and_the_commands(ctx: DeployContext) -> None:
    for name in ("docker", "heroku", "lambda", "cloudrun", "azure", "k8s"):
        target = get_target(name)
        files = target.render(ctx)
        readme = files.pop("README.md")
        for path in files:
            assert f"`{path}`" in readme, (name, path)
        for command in target.commands(target.context(ctx), "."):
            assert command in readme, (name, command)
