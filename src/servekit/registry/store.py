"""Where registered bundles' files live: `{store}/{name}/{version}/`.

A push copies the bundle into a staging folder first and moves it into place in one step, so a
half-written version folder is never visible. The store is a local folder (the fast path: plain
file copies and an atomic rename), or any fsspec URL (`s3://bucket/models`, `memory://models`);
remote bundles are uploaded from a local staging folder and downloaded into a local cache on
first use, because runtimes load models from local files.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from servekit.errors import InvalidManifest, RegistryError

__all__ = ["FileStore", "copy_file"]

_STAGING = ".staging"


def copy_file(source: Path, target: Path) -> None:
    """Copy one file's bytes (not its permissions or times) into a new file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def safe_relative(relative: str) -> PurePosixPath:
    """A manifest's file path, refused if it could reach outside the bundle folder."""
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or "\\" in relative or ".." in path.parts or ":" in relative:
        raise InvalidManifest(
            f"the manifest lists the file {relative!r}, which is not a relative path inside the bundle",
            hint="Pack the model again",
        )
    return path


class FileStore:
    """Bundle folders under a local path or an fsspec URL, with a local cache for remote ones."""

    def __init__(self, url: str | Path, cache_dir: Path) -> None:
        self.url = str(url)
        self.cache_dir = Path(cache_dir)
        self._fs: Any = None
        if "://" in self.url and not self.url.startswith("file://"):
            self._fs, self._root = _open_fs(self.url)
            self.local_root = self.cache_dir
        else:
            self._root = ""
            self.local_root = Path(self.url.removeprefix("file://")).expanduser()
        self.local_root.mkdir(parents=True, exist_ok=True)

    @property
    def is_local(self) -> bool:
        return self._fs is None

    def local_path(self, name: str, version: int) -> Path:
        """Where the version's folder is (or will be, for a remote store) on this machine."""
        return self.local_root / name / str(version)

    # -- push ---------------------------------------------------------------------------------
    def stage(self, source: Path, files: Iterable[str]) -> Path:
        """Copy `files` (relative POSIX paths) from `source` into a new local staging folder."""
        staging = self.local_root / _STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            for relative in files:
                parts = safe_relative(relative).parts
                copy_file(Path(source, *parts), Path(staging, *parts))
        except BaseException:
            self.discard(staging)
            raise
        return staging

    def publish(self, staging: Path, name: str, version: int) -> None:
        """Move a staging folder to `{name}/{version}`, replacing a leftover of a crashed push.

        The caller holds the uncommitted database row for this version, so a folder already
        there has no row and belongs to nobody.
        """
        final = self.local_path(name, version)
        if self.is_local:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            return
        remote = self._remote(name, version)
        if self._fs.exists(remote):
            self._fs.rm(remote, recursive=True)
        self._fs.put(str(staging) + "/", remote, recursive=True)

    def unpublish(self, staging: Path, name: str, version: int) -> None:
        """Undo `publish` when the database refused the version: back to staging."""
        if self.is_local:
            final = self.local_path(name, version)
            if final.exists() and not staging.exists():
                final.rename(staging)
            return
        remote = self._remote(name, version)
        if self._fs.exists(remote):
            self._fs.rm(remote, recursive=True)

    def settle(self, staging: Path, name: str, version: int) -> None:
        """After the commit: a remote store keeps the staged copy as its local cache."""
        if self.is_local:
            return
        final = self.local_path(name, version)
        try:
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
        except OSError:
            pass  # only a cache: `fetch` downloads it when needed

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    # -- read and remove ----------------------------------------------------------------------
    def fetch(self, name: str, version: int) -> Path:
        """The local folder of a stored version, downloading it first from a remote store."""
        final = self.local_path(name, version)
        if self.is_local or final.is_dir():
            return final
        staging = self.local_root / _STAGING / uuid.uuid4().hex
        try:
            self._fs.get(self._remote(name, version) + "/", str(staging) + "/", recursive=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(final)
        except FileNotFoundError:
            pass  # the caller reports the missing files
        except OSError as exc:
            if not final.is_dir():
                raise RegistryError(f"cannot download {self._remote(name, version)}: {exc}") from None
        finally:
            self.discard(staging)
        return final

    def delete(self, name: str, version: int) -> None:
        """Remove a version's files (and its cached copy); missing files are not an error."""
        shutil.rmtree(self.local_path(name, version), ignore_errors=True)
        if not self.is_local:
            remote = self._remote(name, version)
            if self._fs.exists(remote):
                self._fs.rm(remote, recursive=True)

    def _remote(self, name: str, version: int) -> str:
        return f"{self._root.rstrip('/')}/{name}/{version}"


def _open_fs(url: str) -> tuple[Any, str]:
    import fsspec  # only remote stores need it

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise RegistryError(
            f"cannot open the model store {url!r}: {exc}",
            hint="install the fsspec backend for that URL scheme (e.g. s3fs for s3://)",
        ) from None
