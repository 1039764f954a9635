"""Soak: a real server under wrk at 64 connections for a while — no unexpected answers, memory that
stops growing after warm-up, latency that stays put.

`make soak` runs it for 60 s (SOAK_SECONDS=60); the default test run does a short version.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

from tests.support import ServerProcess, iris_bundle, system_tool

CONNECTIONS = 64
SECONDS = float(os.environ.get("SOAK_SECONDS", "12"))
SLICES = 6  # wrk runs back to back; the first is the warm-up
MAX_MEMORY_GROWTH = 0.10
SCRIPT = Path(__file__).parent / "load" / "soak.lua"


def wrk() -> str:
    return system_tool("wrk", "`make test` installs it: Debian package wrk")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def run_slice(url: str, seconds: float) -> dict[str, int]:
    """One wrk run: {"status 200": n, ..., "p50": µs, "p99": µs, "socket_errors": n}."""
    command = [wrk(), "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(SCRIPT), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    assert done.returncode == 0, done.stderr
    found = {}
    for key, value in re.findall(r"^(status \d+|p50|p99|socket_errors) (\d+)$", done.stdout, re.MULTILINE):
        found[key] = int(value)
    return found


def test_soak(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_HOME": str(tmp_path / "home")}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as server:
        server.wait_ready()
        pid = server.process.pid
        memory: list[int] = []
        slices: list[dict[str, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                memory.append(rss_bytes(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        url = f"{server.url}/v1/models/iris/predict"
        slices.append(run_slice(url, SECONDS / SLICES))  # warm-up
        warm_rss = rss_bytes(pid)
        sampler.start()
        try:
            for _ in range(SLICES - 1):
                slices.append(run_slice(url, SECONDS / SLICES))
        finally:
            stop.set()
            sampler.join()
        with server.client() as client:
            assert client.get("/health/ready").status_code == 200
        assert server.terminate() == 0

    measured = slices[1:]
    statuses: dict[int, int] = {}
    for part in measured:
        for key, value in part.items():
            if key.startswith("status "):
                statuses[int(key.split()[1])] = statuses.get(int(key.split()[1]), 0) + value
    total = sum(statuses.values())
    assert set(statuses) <= {200, 422}, f"unexpected answers: {statuses}"
    assert 0.01 < statuses.get(422, 0) / total < 0.03  # exactly the 2 % invalid bodies
    assert all(part["socket_errors"] == 0 for part in measured), measured

    growth = (max(memory) - warm_rss) / warm_rss
    assert growth < MAX_MEMORY_GROWTH, f"RSS grew {growth:.1%} after warm-up: {warm_rss} -> {max(memory)}"
    first, last = measured[0]["p50"], measured[-1]["p50"]
    assert last < 3 * first + 1000, f"median latency went from {first} µs to {last} µs"
    print(
        f"soak {SECONDS:.0f} s: {total} requests ({total / (SECONDS * (SLICES - 1) / SLICES):.0f}/s), "
        f"statuses {statuses}, RSS {warm_rss / 2**20:.0f} -> {max(memory) / 2**20:.0f} MB ({growth:+.1%}), "
        f"p50 {first / 1000:.2f} -> {last / 1000:.2f} ms, p99 per slice "
        f"{[round(p['p99'] / 1000, 1) for p in measured]} ms"
    )
