"""Closed-loop load with wrk, equivalent to shared/bench/load.sh (one wrk thread pinned to
$WRK_CORE, a discarded warm-up run, then the measured run), plus server CPU time over the
measured run only, the load generator's own CPU, and optional custom headers / status counts."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from procs import CLOCK_TICKS, BenchFailure, cpu_seconds, main_thread_cpu_seconds, pinned

LUA = Path(__file__).resolve().parent / "wrk.lua"
RESULT_LINE = re.compile(r"^RESULT (.*)$", re.MULTILINE)


@dataclass
class Load:
    """What one wrk point measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    non2xx: int
    sockerr: int
    server_cpu: float | None
    """Server CPU over the measured run, % of one core (summed over its processes)."""
    wrk_cpu: float | None
    """wrk's CPU, % of one core: near 100 means the load generator is the bottleneck."""
    other_cpu: float | None = None
    """CPU used by everything else on the machine over the run, % of one core: above ~10 the
    point shared the machine with other work and is not comparable."""
    status: dict[str, int] | None = None


def wrk_core() -> int | None:
    """The core wrk runs on ($WRK_CORE, default 0); None on a one-core machine."""
    if "WRK_CORE" in os.environ:
        return int(os.environ["WRK_CORE"])
    return 0 if (os.cpu_count() or 1) > 1 else None


def busy_seconds() -> float:
    """User + nice + system CPU time of the whole machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(v) for v in fields[1:4]) / CLOCK_TICKS


def ensure_wrk() -> str:
    """Path of wrk, installing it with apt-get when missing (CI and fresh machines are root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "timeout": 600}
        if subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "wrk"], **quiet)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is not installed and could not be installed: run `apt-get install -y wrk` as root")


def _wrk_env(body: Path, content_type: str, headers: dict[str, str] | None, count_status: bool) -> dict[str, str]:
    """What `wrk.lua` reads from the environment."""
    return {
        **os.environ,
        "BODY_FILE": str(body.resolve()),
        "CONTENT_TYPE": content_type,
        "EXTRA_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items()),
        "COUNT_STATUS": "1" if count_status else "0",
    }


def _wrk_command(url: str, connections: int, seconds: float, core: int | None) -> list[str]:
    base = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s", "-s", str(LUA)]
    return pinned([*base, f"-d{max(1, round(seconds))}s", url], core)


def _result(out: str) -> dict[str, str]:
    """The values of `wrk.lua`'s RESULT line; `BenchFailure` when there is none."""
    match = RESULT_LINE.search(out)
    if match is None:
        raise BenchFailure(f"wrk printed no RESULT line: {out.strip()[-200:]}")
    return dict(item.split("=", 1) for item in match.group(1).split())


def run_load(
    url: str,
    body: Path,
    connections: int,
    duration_s: float,
    warmup_s: float,
    *,
    server_pid: int | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    count_status: bool = False,
    pin_wrk: bool = True,
) -> Load:
    """One measured point (wrk on `wrk_core()`, or anywhere without `pin_wrk`). Raises
    `BenchFailure` when wrk fails or prints no result."""
    env = _wrk_env(body, content_type, headers, count_status)

    def wrk(seconds: float) -> str:
        command = _wrk_command(url, connections, seconds, wrk_core() if pin_wrk else None)
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
        except subprocess.TimeoutExpired as exc:
            raise BenchFailure(f"wrk did not finish within {seconds + 60:.0f} s") from exc
        if done.returncode != 0:
            raise BenchFailure(f"wrk failed: {(done.stderr or done.stdout).strip()[:200]}")
        return done.stdout

    if warmup_s > 0:
        wrk(warmup_s)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    busy_before = busy_seconds()
    started = time.perf_counter()
    out = wrk(duration_s)
    wall = time.perf_counter() - started
    busy_after = busy_seconds()
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    values = _result(out)
    wrk_cpu = (
        children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime
    ) / wall
    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = 100 * (cpu_after - cpu_before) / wall
    other_cpu = None
    if server_cpu is not None:
        other_cpu = max(0.0, 100 * (busy_after - busy_before) / wall - server_cpu - 100 * wrk_cpu)
    status = {k: int(values[k]) for k in ("s2xx", "s4xx", "s5xx", "sother") if k in values} or None
    return Load(
        rps=float(values["rps"]),
        p50_ms=float(values["p50_ms"]),
        p99_ms=float(values["p99_ms"]),
        errors=int(values["errors"]),
        requests=int(values["requests"]),
        non2xx=int(values["non2xx"]),
        sockerr=int(values["sockerr"]),
        server_cpu=server_cpu,
        wrk_cpu=100 * wrk_cpu,
        other_cpu=other_cpu,
        status=status,
    )


@dataclass
class SharedLoad:
    """One server's share of a side-by-side point (`run_side_by_side`)."""

    rps: float
    requests: int
    errors: int
    cpu_us_per_request: float
    """The server's CPU time over the measured run, per request answered."""
    loop_us_per_request: float
    """The same for its main thread alone (the event loop); the rest is its other threads."""


def run_side_by_side(
    targets: list[tuple[str, int]], body: Path, connections: int, duration_s: float, warmup_s: float
) -> list[SharedLoad]:
    """Several servers loaded at the same time, each by its own wrk (on `wrk_core()`); `targets`
    are (url, server pid). Servers pinned to the same core then share whatever else the machine
    does during the run, so comparing their CPU per request is not blurred by the slow and fast
    phases of a shared VM, which move sequential points by several per cent. Raises `BenchFailure`
    when a wrk fails or prints no result."""
    env = _wrk_env(body, "application/json", None, count_status=False)

    def together(seconds: float) -> list[str]:
        started = [
            subprocess.Popen(
                _wrk_command(url, connections, seconds, wrk_core()),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for url, _ in targets
        ]
        outputs = []
        for process in started:
            try:
                out, err = process.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired as exc:
                for other in started:
                    other.kill()
                raise BenchFailure(f"wrk did not finish within {seconds + 60:.0f} s") from exc
            if process.returncode != 0:
                raise BenchFailure(f"wrk failed: {(err or out).strip()[:200]}")
            outputs.append(out)
        return outputs

    if warmup_s > 0:
        together(warmup_s)
    before = [(cpu_seconds(pid), main_thread_cpu_seconds(pid)) for _, pid in targets]
    outputs = together(duration_s)
    after = [(cpu_seconds(pid), main_thread_cpu_seconds(pid)) for _, pid in targets]
    loads = []
    for out, (start, loop_start), (end, loop_end) in zip(outputs, before, after, strict=True):
        values = _result(out)
        requests = int(values["requests"])
        loads.append(
            SharedLoad(
                rps=float(values["rps"]),
                requests=requests,
                errors=int(values["errors"]),
                cpu_us_per_request=(end - start) / requests * 1e6 if requests else float("inf"),
                loop_us_per_request=(loop_end - loop_start) / requests * 1e6 if requests else float("inf"),
            )
        )
    return loads
