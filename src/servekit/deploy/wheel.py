"""Which servekit the deployment installs: the version running now, from PyPI or as a wheel.

Installed from PyPI, servekit is pinned to the running version. Running from a source checkout
(an editable or local-folder install), that version may not exist on PyPI, or not with these
changes: a wheel is built from the checkout and shipped in the build folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from servekit import __version__
from servekit.errors import InvalidInput, ServekitError

__all__ = ["ServekitSource", "build_wheel", "servekit_source", "source_checkout"]

_WHEEL_NAME = re.compile(r"^servekit-(?P<version>[^-]+)-.+\.whl$")
_SOURCE_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README*", "LICEN[CS]E*", "NOTICE*")
_BUILD_TIMEOUT_S = 300


@dataclass(frozen=True)
class ServekitSource:
    """The servekit version to install and, when not from PyPI, the wheel file to ship."""

    version: str
    wheel: Path | None = None


def servekit_source(*, wheel: Path | None, pypi: bool, scratch: Path) -> ServekitSource:
    """A given wheel, else PyPI when asked or when servekit was installed from an index, else a
    wheel built now from the source checkout servekit runs from."""
    if wheel is not None:
        wheel = Path(wheel)
        match = _WHEEL_NAME.match(wheel.name)
        if not wheel.is_file() or match is None:
            raise InvalidInput(
                f"{wheel} is not a servekit wheel file", hint="Give a file named servekit-VERSION-...whl"
            )
        return ServekitSource(match["version"], wheel)
    checkout = None if pypi else source_checkout()
    if checkout is None:
        return ServekitSource(__version__)
    return ServekitSource(__version__, build_wheel(checkout, scratch))


def source_checkout() -> Path | None:
    """The project folder servekit is installed from (editable or local path), if any."""
    try:
        text = metadata.distribution("servekit").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        text = None
    if text:
        data = json.loads(text)
        url = urlparse(str(data.get("url", "")))
        if "dir_info" in data and url.scheme == "file":
            folder = Path(unquote(url.path))
            return folder if (folder / "pyproject.toml").is_file() else None
        return None
    # Not installed at all: imported from a checkout's src/ folder (e.g. PYTHONPATH=src).
    folder = Path(__file__).resolve().parents[3]
    return folder if (folder / "pyproject.toml").is_file() and (folder / "src" / "servekit").is_dir() else None


def build_wheel(checkout: Path, scratch: Path) -> Path:
    """Build a servekit wheel from a copy of the checkout (the checkout itself stays untouched)."""
    copy = scratch / "servekit-source"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for pattern in _SOURCE_FILES:
        for file in checkout.glob(pattern):
            if file.is_file():
                shutil.copy2(file, copy / file.name)
    shutil.copytree(
        checkout / "src",
        copy / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    out = scratch / "wheel"
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(copy)]
    # First with the build backend already installed (no download), then in pip's isolated
    # build environment (which fetches the backend) if that is missing or too old.
    attempts = [[*command[:4], "--no-build-isolation", *command[4:]]] if _has_setuptools() else []
    for attempt in [*attempts, command]:
        result = _run(attempt, checkout)
        wheels = sorted(out.glob("servekit-*.whl"))
        if result.returncode == 0 and wheels:
            return wheels[-1]
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"pip exited with {result.returncode}"
    raise ServekitError(
        f"could not build a servekit wheel from {checkout}: {reason}",
        hint="Pass --servekit-wheel FILE, or --from-pypi to install the released version",
    )


def _has_setuptools() -> bool:
    return importlib.util.find_spec("setuptools") is not None


def _run(command: list[str], checkout: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServekitError(f"could not build a servekit wheel from {checkout}: {exc}") from None
