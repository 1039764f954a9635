"""A bundle is one model version on disk: a folder with the artifact and `servekit.yaml`.

The manifest records what the model is (format, task, classes, signature), where it comes from
(framework and Python versions, training date, metrics, tags), the sha256 of every file, and
a reference profile of the training data for drift detection.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servekit.errors import InvalidManifest, TamperedArtifact
from servekit.signature import Signature

__all__ = ["MANIFEST_NAME", "Bundle", "Manifest", "sha256_file"]

MANIFEST_NAME = "servekit.yaml"
MANIFEST_SCHEMA_VERSION = 1
_CHUNK = 1 << 20


# libyaml's safe loader and dumper when PyYAML has them (a manifest with a reference profile holds
# thousands of numbers: ~20x faster than the pure-Python ones); the same YAML either way.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Manifest(BaseModel):
    """The content of `servekit.yaml`."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MANIFEST_SCHEMA_VERSION
    name: str
    version: int | None = None
    """Assigned by the registry at push; may be set by `servekit pack --version`."""
    format: str
    artifact: str
    """File name of the artifact inside the bundle folder."""
    task: Literal["classification", "regression"]
    classes: list[Any] | None = None
    signature: dict[str, Any]
    framework: str
    framework_version: str
    python_version: str
    servekit_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    training_date: str | None = None
    description: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    """sha256 of every file in the bundle but the manifest, by relative path."""
    runtime_options: dict[str, Any] = Field(default_factory=dict)
    """Format-specific loading options, e.g. a torch module's import path and arguments."""
    profile: dict[str, Any] | None = None
    """Reference profile of the training data (see `servekit.profile`)."""
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Faster equivalents of the artifact, verified against it, by name, e.g. `onnx`:
    `{"artifact": "model.onnx", "format": "onnx", "max_abs_diff": 2e-8, "rows_checked": 500}`."""

    @field_validator("signature")
    @classmethod
    def _valid_signature(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Signature.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid signature: {exc}") from exc
        return value

    @field_validator("artifact")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if not value or "/" in value or "\\" in value or value in {".", ".."}:
            raise ValueError("must be a plain file name inside the bundle folder")
        return value

    def to_signature(self) -> Signature:
        return Signature.from_dict(self.signature)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, source: str = MANIFEST_NAME) -> Manifest:
        try:
            data = yaml.load(text, Loader=_LOADER)  # a safe loader, in C when available
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise InvalidManifest(f"{source} is not valid YAML{where}: {problem}") from None
        if not isinstance(data, dict):
            raise InvalidManifest(f"{source} must be a mapping of fields")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise InvalidManifest(
                f"{source}: field {where!r}: {first['msg']}",
                hint=f"{len(exc.errors())} problem(s) in all; fix the manifest or pack the model again",
            ) from None


class Bundle:
    """A bundle folder and its parsed manifest."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Open a bundle folder; `InvalidManifest` when its manifest is missing or invalid."""
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise InvalidManifest(f"{path} has no {MANIFEST_NAME}", hint="Create one with: servekit pack MODEL_FILE")
        manifest = Manifest.from_yaml(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
        bundle = cls(path, manifest)
        if not bundle.artifact_path.is_file():
            raise InvalidManifest(f"{manifest_path}: artifact {manifest.artifact!r} is not in the bundle folder")
        return bundle

    @property
    def artifact_path(self) -> Path:
        return self.path / self.manifest.artifact

    @property
    def signature(self) -> Signature:
        return self.manifest.to_signature()

    def write_manifest(self) -> None:
        (self.path / MANIFEST_NAME).write_text(self.manifest.to_yaml(), encoding="utf-8")

    def verify(self, recorded: dict[str, str] | None = None) -> None:
        """Check every file against its recorded sha256 (the manifest's, or `recorded`).

        Raises `TamperedArtifact` naming the first file that differs or is missing.
        """
        expected = recorded if recorded is not None else self.manifest.files
        if self.manifest.artifact not in expected:
            raise TamperedArtifact(
                f"{self.path / MANIFEST_NAME} records no sha256 for {self.manifest.artifact}",
                hint="Pack the model again",
            )
        for relative, digest in expected.items():
            file = self.path / relative
            if not file.is_file():
                raise TamperedArtifact(f"{file} is missing from the bundle")
            actual = sha256_file(file)
            if actual != digest:
                raise TamperedArtifact(
                    f"{file} has sha256 {actual[:12]}…, but {digest[:12]}… was recorded for it; "
                    "the file changed after it was packed or pushed",
                    hint="Restore the original file, or pack and push the model again",
                )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder except the manifest, by relative POSIX path."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
