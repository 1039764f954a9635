"""`import servekit` stays light: no heavy library is imported until a public name is used."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

HEAVY = [
    "numpy",
    "pandas",
    "sklearn",
    "torch",
    "keras",
    "onnxruntime",
    "xgboost",
    "lightgbm",
    "sqlalchemy",
    "fastapi",
]


def run_python(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter, so modules imported by other tests do not count."""
    return subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_servekit_imports_no_heavy_library() -> None:
    code = f"import sys, json, servekit; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_lazy_attributes_resolve() -> None:
    code = (
        "import servekit\n"
        "print(servekit.load.__module__, servekit.Registry.__name__, servekit.Client.__name__, "
        "servekit.Signature.__module__, servekit.ServekitError.__name__)\n"
        "assert servekit.__version__\n"
        "assert set(servekit.__all__) >= {'load', 'Registry', 'Client', 'Signature'}\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["servekit.loading", "Registry", "Client", "servekit.signature", "ServekitError"]


def test_every_public_name_resolves() -> None:
    import servekit

    for name in servekit.__all__:
        assert getattr(servekit, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    import servekit

    with pytest.raises(AttributeError, match="module 'servekit' has no attribute 'no_such_thing'"):
        _ = servekit.no_such_thing  # type: ignore[attr-defined]
    assert not hasattr(servekit, "Registri")


def test_report_import_time() -> None:
    """For information only (shown with -s); import time is never asserted in unit tests."""
    result = run_python("import servekit", "-X", "importtime")
    assert result.returncode == 0, result.stderr
    match = re.search(r"\|\s*(\d+)\s*\|\s*servekit$", result.stderr, re.MULTILINE)
    assert match is not None
    print(f"import servekit: {int(match.group(1)) / 1000:.1f} ms cumulative")
