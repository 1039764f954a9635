"""Detect the format of a model file from its magic bytes, its content and its extension."""

from __future__ import annotations

import zipfile
from pathlib import Path

from servekit.errors import CorruptArtifact, UnknownFormat
from servekit.runtimes import all_runtimes

__all__ = ["detect_format", "read_signature_bytes"]

_HEAD_BYTES = 64


def read_signature_bytes(path: Path) -> tuple[bytes, frozenset[str] | None]:
    """The first bytes of a file, and its member names when it is a zip archive."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except IsADirectoryError:
        raise UnknownFormat(f"{path} is a folder without a servekit.yaml manifest") from None
    except OSError as exc:
        raise CorruptArtifact(f"cannot read {path}: {exc.strerror or exc}") from None
    members: frozenset[str] | None = None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                members = frozenset(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            raise CorruptArtifact(
                f"{path.name} starts like a zip archive (skops, .keras or torch file) but is truncated or corrupt",
                hint="Save the model again",
            ) from None
    return head, members


def detect_format(path: Path) -> str:
    """The format name of a model file, or `UnknownFormat` listing the formats servekit knows."""
    path = Path(path)
    if not path.exists():
        raise UnknownFormat(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise CorruptArtifact(f"{path.name} is empty")
    head, members = read_signature_bytes(path)
    runtimes = all_runtimes()
    suffix = "".join(path.suffixes[-1:]).lower()
    matches = [name for name, rt in runtimes.items() if rt.sniff(path, head, members)]
    if len(matches) == 1:
        return matches[0]
    by_suffix = [name for name, rt in runtimes.items() if suffix in rt.extensions]
    for name in matches:
        if name in by_suffix:
            return name
    if matches:
        return matches[0]
    if by_suffix:
        raise CorruptArtifact(
            f"{path.name} has the extension of {_article(by_suffix[0])} {by_suffix[0]} file, but its content "
            "is not one: it is truncated, corrupt or misnamed",
            hint="Save the model again, or check that this is the right file",
        )
    known = ", ".join(
        f"{name} ({'/'.join(rt.extensions)})" if rt.extensions else name for name, rt in sorted(runtimes.items())
    )
    raise UnknownFormat(
        f"cannot tell the model format of {path.name}: its content matches no known format",
        hint=f"Known formats: {known}",
    )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
