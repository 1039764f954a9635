"""A model whose library is not installed gets one line naming the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cases import all_cases

CASES = {case.id: case for case in all_cases()}

# Run the CLI with some modules made unimportable, as on a machine without that extra.
_RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from servekit.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("case_id", "blocked", "extra"),
    [
        ("onnx-iris-forest", "onnxruntime", "servekit[onnx]"),
        ("xgboost-json-binary", "xgboost", "servekit[xgboost]"),
        ("lightgbm-binary", "lightgbm", "servekit[lightgbm]"),
        ("torchscript-classifier", "torch", "servekit[torch]"),
        ("keras-classifier", "keras", "servekit[keras]"),
    ],
)
def test_missing_library_names_the_extra(tmp_path: Path, case_id: str, blocked: str, extra: str) -> None:
    made = CASES[case_id].make(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, blocked, "pack", str(made.path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "SERVEKIT_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"pip install '{extra}'" in lines[0]
    assert not (tmp_path / "out").exists()
