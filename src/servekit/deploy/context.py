"""`DeployContext`: everything a deployment template needs to know, decided once.

Templates never look at the bundle, the environment or the clock: every value they print is
a field here, so the same context always renders the same files (golden tests inject fixed
versions). `context_for` derives a context from a bundle and the user's options.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from servekit import __version__
from servekit.bundle import Bundle
from servekit.errors import InvalidInput, UntrustedArtifact
from servekit.runtimes import get_runtime

__all__ = [
    "DEFAULT_PORT",
    "MIN_PYTHON",
    "DeployContext",
    "check_image",
    "check_requirement",
    "context_for",
    "k8s_name",
]

DEFAULT_PORT = 8080
MIN_PYTHON = (3, 11)
MODELS_ROOT = "/models"
LAMBDA_TASK_ROOT = "/var/task"
CONTAINER_HOME = "/var/lib/servekit"
CONTAINER_UID = 10001
_TORCH_EXTRAS = frozenset({"torch", "keras"})
# Pickle-based artifacts must be loaded by the library version that wrote them.
_PINNED_FRAMEWORKS = {"scikit-learn": "scikit-learn"}
_PINNED_FORMATS = frozenset({"pickle", "joblib", "skops"})
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")
# An image reference as Docker's distribution/reference grammar has it: [HOST[:PORT]/]PATH[:TAG][@DIGEST].
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*(?::\w[\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


@dataclass(frozen=True)
class DeployContext:
    """One model, one servekit version, one image: the inputs of every template."""

    name: str
    """The model's name (also the bundle's folder name under `models/`)."""
    format: str
    task: str
    version: int | None = None
    extras: tuple[str, ...] = ()
    """servekit extras the model's formats need (`onnx`, `torch`, ...)."""
    pins: tuple[str, ...] = ()
    """Requirement lines pinning the library that wrote a pickle-based artifact."""
    extra_requirements: tuple[str, ...] = ()
    servekit_version: str = __version__
    servekit_wheel: str | None = None
    """File name of a servekit wheel shipped under `wheels/` (running from source), else PyPI."""
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    trust: bool = False
    """Serve with `--trust`: the artifact is pickle-based and was vouched for at build time."""
    port: int = DEFAULT_PORT
    image: str = ""
    """Image reference the manifests deploy; default `servekit-NAME:TAG`."""
    base_image: str | None = None
    """Overrides the default base image (the official slim Python one, or AWS's Lambda one)."""
    mount_model: bool = False
    """docker: the bundle is mounted at run time instead of copied into the image."""
    replicas: int = 2
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.image:
            object.__setattr__(self, "image", f"servekit-{self.slug}:{self.tag}")

    # -- names --------------------------------------------------------------------------------
    @property
    def slug(self) -> str:
        """The model name as a DNS-1123 label, for Kubernetes, Cloud Run and Azure resources."""
        return k8s_name(self.name)

    @property
    def tag(self) -> str:
        return str(self.version) if self.version is not None else "latest"

    # -- what gets installed ------------------------------------------------------------------
    @property
    def servekit_requirement(self) -> str:
        """servekit with its extras, from the shipped wheel or pinned on PyPI."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        if self.servekit_wheel:
            return f"./wheels/{self.servekit_wheel}{extras}"
        return f"servekit{extras}=={self.servekit_version}"

    @property
    def requirements(self) -> list[str]:
        return [self.servekit_requirement, *self.pins, *self.extra_requirements]

    @property
    def torch_cpu_index(self) -> bool:
        """torch from PyPI is the multi-GB CUDA build; containers without a GPU take the CPU one."""
        return bool(_TORCH_EXTRAS.intersection(self.extras))

    @property
    def default_base_image(self) -> str:
        return f"python:{self.python_version}-slim"

    @property
    def lambda_base_image(self) -> str:
        return f"public.ecr.aws/lambda/python:{self.python_version}"

    # -- how it is served ---------------------------------------------------------------------
    @property
    def model_path(self) -> str:
        """Where the bundle is inside a container image."""
        return f"{MODELS_ROOT}/{self.name}"

    @property
    def relative_model_path(self) -> str:
        """Where the bundle is in the build folder (Heroku serves it from there)."""
        return f"models/{self.name}"

    @property
    def lambda_model_path(self) -> str:
        return f"{LAMBDA_TASK_ROOT}/models/{self.name}"

    @property
    def home(self) -> str:
        return CONTAINER_HOME

    @property
    def uid(self) -> int:
        return CONTAINER_UID

    def serve_args(self, model_path: str) -> list[str]:
        """`servekit serve` and its arguments, without the port."""
        args = ["servekit", "serve", model_path, "--host", "0.0.0.0"]
        return [*args, "--trust"] if self.trust else args

    def serve_command(self, model_path: str | None = None, port: str | None = None) -> str:
        """One shell line that `exec`s servekit (so SIGTERM reaches it) on `$PORT`."""
        args = " ".join(shlex.quote(a) for a in self.serve_args(model_path or self.model_path))
        return f"exec {args} --port {port or '${PORT:-' + str(self.port) + '}'}"

    def with_options(self, **changes: Any) -> DeployContext:
        return replace(self, **changes)


def check_image(reference: str, option: str) -> str:
    """`reference` if it is a valid image reference, else `InvalidInput` naming `option`.

    Image references go unquoted into Dockerfiles (`ARG BASE_IMAGE=...`), so a space, a quote
    or a `$` would change what the file says rather than fail where the user can see it.
    """
    if not _IMAGE.fullmatch(reference):
        raise InvalidInput(
            f"{option} {reference!r} is not an image reference",
            hint="Give [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. ghcr.io/acme/iris:1 "
            "(lowercase name; no spaces, quotes or $)",
        )
    return reference


def check_requirement(line: str) -> str:
    """`line` if it can be one line of requirements.txt, else `InvalidInput`."""
    if not line.strip() or any(ord(c) < 32 or ord(c) == 127 for c in line):
        raise InvalidInput(
            f"the requirement {line!r} is empty or contains a line break or control character",
            hint="Give one requirement per -r, e.g. -r 'psycopg[binary]>=3.1'",
        )
    return line.strip()


def k8s_name(name: str) -> str:
    """A DNS-1123 label (lowercase letters, digits, '-', at most 63) made from a model name."""
    label = _DNS_LABEL.sub("-", name.lower()).strip("-")[:63].strip("-")
    if not label or not label[0].isalpha():
        label = f"m-{label}".rstrip("-")[:63]
    return label


def context_for(bundle: Bundle, *, trusted: bool = False, **options: Any) -> DeployContext:
    """The context for serving `bundle`; `options` set any other `DeployContext` field.

    `trusted` says the user (or the registry's record) vouched for a pickle-based artifact;
    without it such a bundle is refused here, before any file is written.
    """
    manifest = bundle.manifest
    runtime = get_runtime(manifest.format)(bundle.artifact_path, manifest.runtime_options)
    needs_trust = runtime.needs_trust()
    if needs_trust and not trusted:
        raise UntrustedArtifact(
            f"{bundle.artifact_path.name} is a {manifest.format} file: the deployed server would run "
            "whatever code it contains, and nobody vouched for it",
            hint="If you trust its source, pass --trust to servekit build, or push it to the registry "
            "with `servekit push --trust` and build from the registry reference",
        )
    extras = _extras(bundle)
    defaults: dict[str, Any] = {
        "name": manifest.name,
        "version": manifest.version,
        "format": manifest.format,
        "task": manifest.task,
        "extras": extras,
        "pins": _pins(bundle),
        "python_version": _python_version(manifest.python_version),
        "trust": needs_trust,
    }
    defaults.update({k: v for k, v in options.items() if v is not None})
    return DeployContext(**defaults)


def _extras(bundle: Bundle) -> tuple[str, ...]:
    """The extras of the artifact's format and of every variant servekit may serve instead."""
    formats = {bundle.manifest.format}
    formats.update(str(v.get("format", "onnx")) for v in bundle.manifest.variants.values())
    extras = {get_runtime(f).extra for f in formats}
    return tuple(sorted(e for e in extras if e))


def _pins(bundle: Bundle) -> tuple[str, ...]:
    manifest = bundle.manifest
    package = _PINNED_FRAMEWORKS.get(manifest.framework)
    if manifest.format not in _PINNED_FORMATS or package is None or not manifest.framework_version:
        return ()
    return (f"{package}=={manifest.framework_version}",)


def _python_version(recorded: str) -> str:
    """The training Python's major.minor (pickles load best there), at least servekit's minimum."""
    parts = recorded.split(".")
    try:
        version = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        version = sys.version_info[:2]
    version = max(version, MIN_PYTHON)
    return f"{version[0]}.{version[1]}"
