"""`detect_format`: pickle vs joblib, every joblib compression, and clear errors for unusable files."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from servekit.errors import CorruptArtifact, UnknownFormat
from servekit.formats import detect_format, read_signature_bytes
from servekit.loading import load


@pytest.fixture(scope="module")
def model() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)


@pytest.mark.parametrize(
    ("file_name", "compress", "expected"),
    [
        ("model.joblib", 0, "joblib"),
        ("model.pkl", 0, "pickle"),
        ("model.pickle", 0, "pickle"),
        ("model.bin", 0, "joblib"),  # a plain pickle under an unknown name: joblib reads it
        ("model.joblib", 3, "joblib"),  # zlib
        ("model.joblib", ("zlib", 9), "joblib"),
        ("model.joblib", ("gzip", 3), "joblib"),
        ("model.joblib", ("lzma", 3), "joblib"),
        ("model.joblib", ("xz", 3), "joblib"),
        ("model.joblib", ("bz2", 3), "joblib"),
        ("model.joblib.gz", ("gzip", 3), "joblib"),
        ("model.pkl", 3, "joblib"),  # compressed: only joblib can read it, whatever the name
    ],
)
def test_joblib_and_pickle_files(tmp_path: Path, model: Any, file_name: str, compress: Any, expected: str) -> None:
    path = tmp_path / file_name
    joblib.dump(model, path, compress=compress)
    assert detect_format(path) == expected
    with load(path, trust=True) as predictor:  # the detected format really reads the file
        assert predictor.runtime.format == expected
        assert predictor.predict([5.1, 3.5, 1.4, 0.2]).outputs.tolist() == [0]


def test_stdlib_pickle(tmp_path: Path, model: Any) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    assert detect_format(path) == "pickle"
    other = tmp_path / "model.joblib"
    other.write_bytes(pickle.dumps(model, protocol=2))
    assert detect_format(other) == "joblib"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"")
    with pytest.raises(CorruptArtifact) as info:
        detect_format(path)
    assert info.value.message == "model.joblib is empty"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat) as info:
        detect_format(tmp_path / "nope.joblib")
    assert info.value.message == f"{tmp_path / 'nope.joblib'} does not exist"


def test_folder_without_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    folder.mkdir()
    with pytest.raises(UnknownFormat) as info:
        detect_format(folder)
    assert info.value.message == f"{folder} is a folder without a servekit.yaml manifest"


def test_truncated_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}" * 1000)
        archive.writestr("data.bin", np.arange(1000).tobytes())
    data = buffer.getvalue()
    path = tmp_path / "model.skops"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifact) as info:
        detect_format(path)
    assert info.value.message == (
        "model.skops starts like a zip archive (skops, .keras or torch file) but is truncated or corrupt"
    )
    assert info.value.hint == "Save the model again"


def test_zip_members_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", "{}")
        archive.writestr("a/b.bin", b"x")
    head, members = read_signature_bytes(path)
    assert head.startswith(b"PK\x03\x04")
    assert members == frozenset({"schema.json", "a/b.bin"})


@pytest.mark.parametrize("file_name", ["model.joblib", "model.pkl", "model.onnx"])
def test_known_extension_with_foreign_content(tmp_path: Path, file_name: str) -> None:
    path = tmp_path / file_name
    path.write_bytes(b"hello, this is plain text and no model at all")
    with pytest.raises(CorruptArtifact) as info:
        detect_format(path)
    assert info.value.message.startswith(f"{file_name} has the extension of a")
    assert "truncated, corrupt or misnamed" in info.value.message


@pytest.mark.parametrize("file_name", ["model.xyz", "model"])
def test_unknown_content_and_extension_lists_the_known_formats(tmp_path: Path, file_name: str) -> None:
    path = tmp_path / file_name
    path.write_bytes(b"hello, this is plain text and no model at all")
    with pytest.raises(UnknownFormat) as info:
        detect_format(path)
    assert info.value.message == f"cannot tell the model format of {file_name}: its content matches no known format"
    hint = info.value.hint or ""
    assert hint.startswith("Known formats: ")
    for known in ("joblib (.joblib)", "pickle (.pkl/.pickle)", "skops (.skops)", "onnx (.onnx)", "keras (.keras)"):
        assert known in hint
