"""The server process's cyclic-collector thresholds."""

from __future__ import annotations

import json
import subprocess
import sys

from servekit.server.factory import YOUNG_COLLECTION_THRESHOLD

PROBE = """
import gc, json
from servekit.server.factory import app_from_environment
before = gc.get_threshold()
app_from_environment()
print(json.dumps([before, gc.get_threshold()]))
"""


def test_a_server_worker_collects_its_youngest_generation_less_often() -> None:
    # A fresh interpreter, as each `servekit serve` worker is: the setting is process-wide.
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before[0] == 700  # Python's default
    assert after == [YOUNG_COLLECTION_THRESHOLD, *before[1:]]
    assert before[0] < YOUNG_COLLECTION_THRESHOLD
