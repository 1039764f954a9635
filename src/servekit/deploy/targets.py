"""The deployment targets: for each, a pure render function and the commands that deploy it.

A render function takes a `DeployContext` and returns `{relative path: text}`; nothing here
touches the disk. `commands(ctx, folder)` are the exact next steps, with `folder` the build
folder as the user will type it. Targets register themselves in `TARGETS` by decorator.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from servekit.deploy.context import DeployContext
from servekit.deploy.render import render_template
from servekit.errors import InvalidInput

__all__ = ["HEALTHCHECK", "TARGETS", "Target", "get_target", "split_image"]

# Slim images have no curl or wget: the standard library asks for readiness.
HEALTHCHECK = [
    "python",
    "-c",
    "import os, urllib.request; urllib.request.urlopen("
    "'http://127.0.0.1:%s/health/ready' % os.environ.get('PORT', '8080'), timeout=4)",
]
Renderer = Callable[[DeployContext], dict[str, str]]
Commands = Callable[[DeployContext, str], list[str]]


@dataclass(frozen=True)
class Target:
    """One place servekit deploys to."""

    name: str
    title: str
    render_files: Renderer
    commands: Commands
    executables: frozenset[str] = frozenset()
    """Rendered files written with the executable bit."""
    monitoring: bool = False
    """Ship the Grafana dashboard and alert rules next to the rendered files."""

    def context(self, ctx: DeployContext) -> DeployContext:
        """The context this target renders with (Lambda adds the `lambda` extra)."""
        if self.name == "lambda" and "lambda" not in ctx.extras:
            return ctx.with_options(extras=tuple(sorted({*ctx.extras, "lambda"})))
        return ctx

    def render(self, ctx: DeployContext, folder: str = ".") -> dict[str, str]:
        """Every text file of the build, README.md with the deploy commands included."""
        ctx = self.context(ctx)
        files = self.render_files(ctx)
        listed = [(path, _describe(path)) for path in sorted(files)]
        if self.monitoring:
            listed.append(("monitoring/grafana/dashboards/", "servekit's Grafana dashboard, copied at build time"))
            listed.append(("monitoring/prometheus/rules/", "servekit's Prometheus alert rules, copied at build time"))
        listed.append((f"models/{ctx.name}/", "the model bundle (artifact + servekit.yaml)"))
        if ctx.servekit_wheel:
            listed.append((f"wheels/{ctx.servekit_wheel}", "servekit, built from the source you run"))
        files["README.md"] = render_template(
            "common/README.md.j2",
            ctx,
            title=self.title,
            target=self.name,
            files=listed,
            commands=self.commands(ctx, folder),
        )
        return files


TARGETS: dict[str, Target] = {}


def target(
    name: str,
    title: str,
    *,
    commands: Commands,
    executables: frozenset[str] = frozenset(),
    monitoring: bool = False,
) -> Callable[[Renderer], Renderer]:
    """Register the decorated render function as the target `name`."""

    def register(render: Renderer) -> Renderer:
        if name in TARGETS:
            raise ValueError(f"deployment target {name!r} is registered twice")
        TARGETS[name] = Target(name, title, render, commands, executables, monitoring)
        return render

    return register


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise InvalidInput(f"unknown deployment target {name!r}", hint=f"Choose one of: {', '.join(TARGETS)}") from None


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); no tag means `latest`."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


# -- shared pieces ------------------------------------------------------------------------------
def _image_files(ctx: DeployContext) -> dict[str, str]:
    """The container build context every image-based target ships."""
    return {
        "Dockerfile": render_template("docker/Dockerfile.j2", ctx, healthcheck=HEALTHCHECK),
        ".dockerignore": render_template("common/dockerignore.j2", ctx),
        "requirements.txt": render_template("common/requirements.txt.j2", ctx),
    }


def _docker_build(ctx: DeployContext, folder: str) -> str:
    return f"docker build -t {shlex.quote(ctx.image)} {shlex.quote(folder)}"


def _in(folder: str, path: str) -> str:
    return shlex.quote(path if folder in {"", "."} else f"{folder.rstrip('/')}/{path}")


def _labels(ctx: DeployContext) -> str:
    labels = {
        "app.kubernetes.io/name": ctx.slug,
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/part-of": "servekit",
        **ctx.labels,
    }
    return "\n".join(f"{key}: {json.dumps(value)}" for key, value in labels.items())


_DESCRIPTIONS = {
    "Dockerfile": "the image: pinned dependencies, the model, a non-root user, health check",
    ".dockerignore": "keeps the build context to what the image needs",
    "requirements.txt": "servekit at the version that built this, with the extras the model needs",
    "compose.yaml": "the server with a volume and health check; Prometheus + Grafana with --profile monitoring",
    "Procfile": "the web process, bound to $PORT",
    ".python-version": "the Python version the model was trained with",
    "template.yaml": "AWS SAM: the function (container image), an HTTP API and a function URL",
    "template-zip.yaml": "the same SAM template for the .zip made by build-zip.sh",
    "build-zip.sh": "lays out and zips the function for a .zip deployment",
    "service.yaml": "Cloud Run service (Knative API): port, probes, concurrency, CPU and memory",
    "aci.yaml": "Azure Container Instances container group with liveness and readiness probes",
    "containerapp.yaml": "Azure Container Apps variant (HTTPS ingress, scale to zero)",
    "k8s/deployment.yaml": "Deployment: probes, resources, non-root, read-only root file system, preStop",
    "k8s/service.yaml": "ClusterIP Service on port 80",
    "k8s/hpa.yaml": "HorizontalPodAutoscaler (autoscaling/v2) on CPU utilization",
    "k8s/pdb.yaml": "PodDisruptionBudget: at most one replica down during voluntary disruptions",
    "k8s/secret.yaml": "Secret for API keys and other SERVEKIT_* secrets, passed as environment variables",
    "k8s/kustomization.yaml": "ties the manifests together for kubectl apply -k",
    "kserve/inferenceservice.yaml": "KServe InferenceService using this image as a custom predictor (OIP v2)",
}


def _describe(path: str) -> str:
    if path in _DESCRIPTIONS:
        return _DESCRIPTIONS[path]
    if path.startswith("monitoring/"):
        return "Prometheus and Grafana provisioning for the compose stack"
    return "generated by servekit build"


# -- targets ------------------------------------------------------------------------------------
def _models_mount(folder: str) -> str:
    """`-v HOST:/models:ro` for the build folder's `models/`: docker wants an absolute host path,
    so a relative folder is prefixed with the shell's `"$PWD"`, and the folder itself is quoted."""
    models = "models" if folder in {"", "."} else f"{folder.rstrip('/')}/models"
    volume = shlex.quote(f"{models}:/models:ro")
    return f"-v {volume}" if models.startswith("/") else f'-v "$PWD"/{volume}'


def _docker_commands(ctx: DeployContext, folder: str) -> list[str]:
    mount = f" {_models_mount(folder)}" if ctx.mount_model else ""
    return [
        _docker_build(ctx, folder),
        f"docker run --rm -p {ctx.port}:{ctx.port} --stop-timeout 40{mount} {shlex.quote(ctx.image)}",
        f"curl -fsS http://localhost:{ctx.port}/health/ready",
        f"docker compose -f {_in(folder, 'compose.yaml')} up --build -d",
        f"docker compose -f {_in(folder, 'compose.yaml')} --profile monitoring up --build -d",
    ]


@target("docker", "Docker", commands=_docker_commands, monitoring=True)
def render_docker(ctx: DeployContext) -> dict[str, str]:
    """Dockerfile, .dockerignore, requirements, compose.yaml and the monitoring stack's config."""
    files = _image_files(ctx)
    files["compose.yaml"] = render_template("docker/compose.yaml.j2", ctx, healthcheck=["CMD", *HEALTHCHECK])
    files["monitoring/prometheus/prometheus.yml"] = render_template("docker/monitoring/prometheus.yml.j2", ctx)
    files["monitoring/grafana/provisioning/datasources/prometheus.yml"] = render_template(
        "docker/monitoring/grafana-datasource.yml.j2", ctx
    )
    files["monitoring/grafana/provisioning/dashboards/servekit.yml"] = render_template(
        "docker/monitoring/grafana-dashboards.yml.j2", ctx
    )
    return files


def _heroku_commands(ctx: DeployContext, folder: str) -> list[str]:
    return [
        f"cd {shlex.quote(folder)}",
        "git init && git add . && git commit -m " + shlex.quote(f"servekit model {ctx.name}"),
        "heroku create",
        "git push heroku HEAD:main",
        "heroku ps:scale web=1 && heroku open /health/ready",
    ]


@target("heroku", "Heroku", commands=_heroku_commands)
def render_heroku(ctx: DeployContext) -> dict[str, str]:
    """Procfile (the web process on $PORT), .python-version and requirements.txt."""
    return {
        "Procfile": render_template("heroku/Procfile.j2", ctx),
        ".python-version": render_template("heroku/python-version.j2", ctx),
        "requirements.txt": render_template("common/requirements.txt.j2", ctx),
    }


def _lambda_commands(ctx: DeployContext, folder: str) -> list[str]:
    return [
        f"cd {shlex.quote(folder)}",
        "sam build",
        "sam deploy --guided",
        "# .zip instead of an image: ./build-zip.sh && sam deploy --guided --template-file template-zip.yaml",
    ]


@target("lambda", "AWS Lambda", commands=_lambda_commands, executables=frozenset({"build-zip.sh"}))
def render_lambda(ctx: DeployContext) -> dict[str, str]:
    """Container-image Dockerfile, SAM templates (image and zip) and the zip layout script."""
    return {
        "Dockerfile": render_template("lambda/Dockerfile.j2", ctx),
        ".dockerignore": render_template("common/dockerignore.j2", ctx),
        "requirements.txt": render_template("common/requirements.txt.j2", ctx),
        "template.yaml": render_template("lambda/template.yaml.j2", ctx, package_type="image"),
        "template-zip.yaml": render_template("lambda/template.yaml.j2", ctx, package_type="zip"),
        "build-zip.sh": render_template("lambda/build-zip.sh.j2", ctx),
    }


def _cloudrun_commands(ctx: DeployContext, folder: str) -> list[str]:
    return [
        _docker_build(ctx, folder),
        f"docker push {shlex.quote(ctx.image)}",
        f"gcloud run services replace {_in(folder, 'service.yaml')} --region REGION",
        f"gcloud run services describe {ctx.slug} --region REGION --format 'value(status.url)'",
    ]


@target("cloudrun", "Google Cloud Run", commands=_cloudrun_commands)
def render_cloudrun(ctx: DeployContext) -> dict[str, str]:
    """The image build context and a Knative `service.yaml`."""
    return {**_image_files(ctx), "service.yaml": render_template("cloudrun/service.yaml.j2", ctx)}


def _azure_commands(ctx: DeployContext, folder: str) -> list[str]:
    return [
        _docker_build(ctx, folder),
        f"docker push {shlex.quote(ctx.image)}",
        f"az container create --resource-group RESOURCE_GROUP --file {_in(folder, 'aci.yaml')}",
        f"az container show --resource-group RESOURCE_GROUP --name {ctx.slug} --query ipAddress.fqdn --output tsv",
        f"# Container Apps instead: az containerapp create --name {ctx.slug} --resource-group RESOURCE_GROUP "
        f"--yaml {_in(folder, 'containerapp.yaml')}",
    ]


@target("azure", "Azure Container Instances", commands=_azure_commands)
def render_azure(ctx: DeployContext, location: str = "eastus") -> dict[str, str]:
    """The image build context, an ACI container group and a Container Apps variant."""
    return {
        **_image_files(ctx),
        "aci.yaml": render_template("azure/aci.yaml.j2", ctx, location=location),
        "containerapp.yaml": render_template("azure/containerapp.yaml.j2", ctx, location=location),
    }


def _k8s_commands(ctx: DeployContext, folder: str) -> list[str]:
    return [
        _docker_build(ctx, folder),
        f"docker push {shlex.quote(ctx.image)}",
        f"kubectl apply -k {_in(folder, 'k8s')}",
        f"kubectl rollout status deployment/{ctx.slug}",
        f"kubectl port-forward service/{ctx.slug} {ctx.port}:80",
        f"# KServe instead: kubectl apply -f {_in(folder, 'kserve/inferenceservice.yaml')}",
    ]


@target("k8s", "Kubernetes", commands=_k8s_commands)
def render_k8s(ctx: DeployContext) -> dict[str, str]:
    """The image build context, a kustomization of hardened manifests, and a KServe service."""
    labels = _labels(ctx)
    image_name, image_tag = split_image(ctx.image)
    files = _image_files(ctx)
    for name in ("deployment", "service", "hpa", "pdb", "secret"):
        files[f"k8s/{name}.yaml"] = render_template(f"k8s/{name}.yaml.j2", ctx, labels=labels)
    files["k8s/kustomization.yaml"] = render_template(
        "k8s/kustomization.yaml.j2", ctx, image_name=image_name, image_tag=image_tag
    )
    files["kserve/inferenceservice.yaml"] = render_template("k8s/inferenceservice.yaml.j2", ctx, labels=labels)
    return files
