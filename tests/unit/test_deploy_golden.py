"""Every target's rendered files, byte for byte, for a fixed iris bundle and fixed versions.

The expected files are under tests/golden/deploy/<target>/. After an intended change, rewrite
them with `SERVEKIT_UPDATE_GOLDEN=1 pytest tests/unit/test_deploy_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servekit.bundle import Bundle
from servekit.deploy import TARGETS, DeployContext, context_for
from tests.support import iris_bundle

GOLDEN = Path(__file__).parents[1] / "golden" / "deploy"
UPDATE = os.environ.get("SERVEKIT_UPDATE_GOLDEN") == "1"
# Versions that change with every release or machine are injected, so goldens stay stable.
FIXED = {"servekit_version": "9.9.9", "python_version": "3.12", "pins": ("scikit-learn==1.5.2",)}


@pytest.fixture(scope="module")
def golden_context(tmp_path_factory: pytest.TempPathFactory) -> DeployContext:
    bundle = Bundle.read(iris_bundle(tmp_path_factory.mktemp("golden")))
    return context_for(bundle, trusted=True, **FIXED)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_rendered_files_match_the_golden_files(target: str, golden_context: DeployContext) -> None:
    rendered = TARGETS[target].render(golden_context)
    folder = GOLDEN / target
    if UPDATE:
        for stale in folder.rglob("*") if folder.exists() else ():
            if stale.is_file() and stale.relative_to(folder).as_posix() not in rendered:
                stale.unlink()
        for relative, text in rendered.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(rendered) == expected, "files added or removed: run with SERVEKIT_UPDATE_GOLDEN=1"
    for relative, text in sorted(rendered.items()):
        assert text == (folder / relative).read_text(encoding="utf-8"), f"{target}/{relative} differs"


def test_the_same_context_renders_the_same_text(golden_context: DeployContext) -> None:
    for target in TARGETS.values():
        assert target.render(golden_context) == target.render(golden_context)


def test_golden_files_carry_the_injected_versions_not_the_running_ones() -> None:
    dockerfile = (GOLDEN / "docker" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.12-slim" in dockerfile
    assert "servekit 9.9.9" in dockerfile
    requirements = (GOLDEN / "docker" / "requirements.txt").read_text().splitlines()
    assert "servekit==9.9.9" in requirements and "scikit-learn==1.5.2" in requirements
    assert (GOLDEN / "heroku" / ".python-version").read_text() == "3.12\n"
