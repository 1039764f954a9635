"""The one step that touches the disk: rendered files, the bundle, the wheel, monitoring assets.

The build folder is assembled under a temporary name next to the target and renamed into
place, so it appears whole or not at all; an existing folder is replaced only with `force`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from servekit.bundle import Bundle
from servekit.deploy.model import bundle_files
from servekit.errors import Conflict, ServekitError
from servekit.staging import staged_folder

__all__ = ["MONITORING_ASSETS", "Written", "check_output", "monitoring_assets", "write_build"]

# (file name in the monitoring package's assets or the checkout's docs/monitoring, build path)
MONITORING_ASSETS = (
    ("grafana-dashboard.json", "monitoring/grafana/dashboards/servekit.json"),
    ("alerts.yml", "monitoring/prometheus/rules/servekit-alerts.yml"),
)
_MONITORING_FOLDERS = ("monitoring/grafana/dashboards", "monitoring/prometheus/rules")


@dataclass
class Written:
    """What `write_build` put in the build folder."""

    output: Path
    files: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)
    """Monitoring assets copied (the dashboard, the alert rules)."""
    missing_assets: list[str] = field(default_factory=list)


def check_output(output: Path, *, force: bool) -> None:
    """Refuse early a build folder that exists and is not empty, unless `force`."""
    if output.exists() and not output.is_dir():
        raise Conflict(f"{output} exists and is not a folder", hint="Choose another --output")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise Conflict(f"{output} already exists and is not empty", hint="Choose another --output or pass --force")


def monitoring_assets(checkout: Path | None, packaged: Path | None = None) -> list[tuple[str, Path | None]]:
    """Each monitoring asset's build path and where it is now (`None`: not found): in the
    installed package's `monitoring/assets` (or `packaged`), else the checkout's `docs/monitoring`."""
    found: list[tuple[str, Path | None]] = []
    if packaged is None:
        packaged = Path(str(resources.files("servekit") / "monitoring" / "assets"))
    for name, destination in MONITORING_ASSETS:
        candidates = [packaged / name]
        if checkout is not None:
            candidates.append(checkout / "docs" / "monitoring" / name)
        found.append((destination, next((c for c in candidates if c.is_file()), None)))
    return found


def write_build(
    output: Path,
    files: dict[str, str],
    *,
    bundle: Bundle,
    model_name: str,
    wheel: Path | None = None,
    executables: Iterable[str] = (),
    assets: list[tuple[str, Path | None]] | None = None,
    force: bool = False,
) -> Written:
    """Write the rendered `files`, the bundle under `models/NAME/`, the wheel under `wheels/`
    and the monitoring `assets` (when given) into `output`."""
    output = Path(output).absolute()
    check_output(output, force=force)
    written = Written(output)
    try:
        with staged_folder(output, mode=0o755) as staging:
            for relative, text in sorted(files.items()):
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                written.files.append(relative)
            for relative in executables:
                (staging / relative).chmod(0o755)
            for relative in bundle_files(bundle):
                target = staging / "models" / model_name / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle.path / relative, target)
                written.files.append(f"models/{model_name}/{relative}")
            if wheel is not None:
                (staging / "wheels").mkdir()
                shutil.copyfile(wheel, staging / "wheels" / wheel.name)
                written.files.append(f"wheels/{wheel.name}")
            if assets is not None:
                _copy_assets(staging, assets, written)
    except OSError as exc:
        raise ServekitError(f"could not write the build folder {output}: {exc.strerror or exc}") from None
    return written


def _copy_assets(staging: Path, assets: list[tuple[str, Path | None]], written: Written) -> None:
    for folder in _MONITORING_FOLDERS:
        (staging / folder).mkdir(parents=True, exist_ok=True)
    for destination, source in assets:
        if source is None:
            written.missing_assets.append(destination)
            continue
        shutil.copyfile(source, staging / destination)
        written.assets.append(destination)
        written.files.append(destination)
