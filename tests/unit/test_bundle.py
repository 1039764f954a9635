"""`Manifest` parsing errors, `Bundle.read`, sha256 verification of every file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.bundle import MANIFEST_NAME, Bundle, Manifest, file_digests, sha256_file
from servekit.errors import InvalidManifest, TamperedArtifact
from servekit.signature import Signature

FIELDS: dict[str, Any] = {
    "name": "iris",
    "format": "joblib",
    "artifact": "model.joblib",
    "task": "classification",
    "classes": ["a", "b"],
    "signature": Signature.positional(2).to_dict(),
    "framework": "scikit-learn",
    "framework_version": "1.5.0",
    "python_version": "3.12.0",
    "servekit_version": "0.1.0",
}


def manifest_text(**changes: Any) -> str:
    data = {**FIELDS, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False)


def invalid(text: str) -> InvalidManifest:
    with pytest.raises(InvalidManifest) as info:
        Manifest.from_yaml(text)
    return info.value


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """A bundle folder with an artifact, a second file, and a manifest recording both digests."""
    folder = tmp_path / "iris.bundle"
    (folder / "extra").mkdir(parents=True)
    (folder / "model.joblib").write_bytes(b"not really a model, but bytes to hash")
    (folder / "extra" / "notes.txt").write_text("hello")
    manifest = Manifest.from_yaml(manifest_text())
    manifest.files = file_digests(folder)
    Bundle(folder, manifest).write_manifest()
    return folder


# -- Manifest ------------------------------------------------------------------------------------
def test_valid_manifest_and_yaml_round_trip() -> None:
    manifest = Manifest.from_yaml(manifest_text(metrics={"accuracy": 0.9}, tags={"team": "ml"}))
    assert manifest.name == "iris"
    assert manifest.task == "classification"
    assert manifest.version is None
    assert manifest.to_signature() == Signature.positional(2)
    again = Manifest.from_yaml(manifest.to_yaml())
    assert again == manifest
    assert "version" not in yaml.safe_load(manifest.to_yaml())  # None fields are left out


def test_invalid_yaml_is_one_line_with_line_and_column() -> None:
    error = invalid("name: [unclosed\nformat: x\n")
    # libyaml and the pure-Python parser word the problem differently; the place is the same.
    assert error.message.startswith("servekit.yaml is not valid YAML at line 2, column 7: ")
    assert "expected ',' or ']'" in error.message
    assert "\n" not in error.detail


def test_invalid_yaml_names_its_source() -> None:
    with pytest.raises(InvalidManifest, match=r"^/x/servekit\.yaml is not valid YAML at line 1, column 5"):
        Manifest.from_yaml("a: b: c", source="/x/servekit.yaml")


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n", "42\n"])
def test_manifest_must_be_a_mapping(text: str) -> None:
    assert invalid(text).message == "servekit.yaml must be a mapping of fields"


@pytest.mark.parametrize("missing", ["name", "format", "artifact", "task", "signature", "framework"])
def test_missing_field_is_named(missing: str) -> None:
    error = invalid(manifest_text(**{missing: None}))
    assert error.message == f"servekit.yaml: field {missing!r}: Field required"
    assert error.hint == "1 problem(s) in all; fix the manifest or pack the model again"


def test_problem_count_in_hint() -> None:
    assert invalid(manifest_text(name=None, framework=None)).hint is not None
    assert invalid(manifest_text(name=None, framework=None)).hint.startswith("2 problem(s) in all")


def test_bad_task() -> None:
    assert invalid(manifest_text(task="clustering")).message == (
        "servekit.yaml: field 'task': Input should be 'classification' or 'regression'"
    )


@pytest.mark.parametrize("artifact", ["../model.joblib", "sub/model.joblib", "a\\b.joblib", "..", ".", ""])
def test_artifact_must_be_a_plain_file_name(artifact: str) -> None:
    assert invalid(manifest_text(artifact=artifact)).message == (
        "servekit.yaml: field 'artifact': Value error, must be a plain file name inside the bundle folder"
    )


def test_unknown_extra_field() -> None:
    assert (
        invalid(manifest_text(colour="red")).message == "servekit.yaml: field 'colour': Extra inputs are not permitted"
    )


def test_invalid_signature() -> None:
    signature = {"features": [{"name": "a", "dtype": "complex128"}]}
    assert invalid(manifest_text(signature=signature)).message == (
        "servekit.yaml: field 'signature': Value error, invalid signature: unknown dtype 'complex128' for feature 'a'"
    )


# -- Bundle --------------------------------------------------------------------------------------
def test_read_a_bundle(bundle_dir: Path) -> None:
    bundle = Bundle.read(bundle_dir)
    assert bundle.manifest.name == "iris"
    assert bundle.artifact_path == bundle_dir / "model.joblib"
    assert bundle.signature == Signature.positional(2)
    bundle.verify()  # untouched: no error


def test_read_a_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest) as info:
        Bundle.read(tmp_path)
    assert info.value.message == f"{tmp_path} has no {MANIFEST_NAME}"
    assert info.value.hint == "Create one with: servekit pack MODEL_FILE"


def test_read_a_bundle_without_its_artifact(bundle_dir: Path) -> None:
    (bundle_dir / "model.joblib").unlink()
    with pytest.raises(InvalidManifest) as info:
        Bundle.read(bundle_dir)
    assert info.value.message == f"{bundle_dir / MANIFEST_NAME}: artifact 'model.joblib' is not in the bundle folder"


def test_read_names_the_manifest_path_in_parse_errors(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_NAME).write_text(manifest_text(task="clustering"))
    with pytest.raises(InvalidManifest, match="^" + re.escape(f"{bundle_dir / MANIFEST_NAME}: field 'task'")):
        Bundle.read(bundle_dir)


def test_verify_detects_a_changed_file(bundle_dir: Path) -> None:
    (bundle_dir / "model.joblib").write_bytes(b"something else")
    with pytest.raises(TamperedArtifact) as info:
        Bundle.read(bundle_dir).verify()
    assert info.value.message.startswith(f"{bundle_dir / 'model.joblib'} has sha256 ")
    assert "the file changed after it was packed or pushed" in info.value.message
    assert info.value.hint == "Restore the original file, or pack and push the model again"


def test_verify_detects_a_changed_file_in_a_subfolder(bundle_dir: Path) -> None:
    (bundle_dir / "extra" / "notes.txt").write_text("hello!")
    with pytest.raises(TamperedArtifact, match=r"notes\.txt has sha256"):
        Bundle.read(bundle_dir).verify()


def test_verify_detects_a_missing_file(bundle_dir: Path) -> None:
    bundle = Bundle.read(bundle_dir)
    (bundle_dir / "extra" / "notes.txt").unlink()
    with pytest.raises(TamperedArtifact) as info:
        bundle.verify()
    assert info.value.message == f"{bundle_dir / 'extra' / 'notes.txt'} is missing from the bundle"


def test_verify_against_an_external_record(bundle_dir: Path) -> None:
    bundle = Bundle.read(bundle_dir)
    good = dict(bundle.manifest.files)
    bundle.verify(good)
    with pytest.raises(TamperedArtifact, match=r"records no sha256 for model\.joblib"):
        bundle.verify({})
    with pytest.raises(TamperedArtifact, match="was recorded for it"):
        bundle.verify({**good, "model.joblib": "0" * 64})


def test_sha256_file_equals_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over the 1 MiB read chunk
    file = tmp_path / "blob"
    file.write_bytes(data)
    assert sha256_file(file) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_file_digests_cover_every_file_but_the_manifest(bundle_dir: Path) -> None:
    digests = file_digests(bundle_dir)
    assert sorted(digests) == ["extra/notes.txt", "model.joblib"]
    assert digests["extra/notes.txt"] == hashlib.sha256(b"hello").hexdigest()
    assert MANIFEST_NAME not in digests
