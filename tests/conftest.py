"""Markers come from the folder a test lives in; every test gets its own SERVEKIT_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

_TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.fspath).relative_to(_TESTS).parts[0]
        if folder in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(autouse=True)
def servekit_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry home per test, so no test sees another's models or the user's."""
    home = tmp_path_factory.mktemp("servekit-home")
    monkeypatch.setenv("SERVEKIT_HOME", str(home))
    monkeypatch.delenv("SERVEKIT_TRUST_PICKLE", raising=False)
    return home
