"""Server processes for the benchmark: start in their own process group, wait (bounded) for
readiness, read CPU time and RSS from /proc, and always stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class BenchFailure(Exception):
    """A benchmark point that could not run; reported in the table, never fatal."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(command: list[str], core: int | None) -> list[str]:
    """`command` run on one CPU core with taskset, or unpinned when `core` is None."""
    return command if core is None else ["taskset", "-c", str(core), *command]


@dataclass
class Server:
    """One started server process (and its process group)."""

    name: str
    command: list[str]
    log: Path
    port: int
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    started_at: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        env = {**os.environ, **self.env}
        with self.log.open("wb") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers die with it
            )
        return self

    def wait_ready(
        self, path: str, *, body: bytes | None = None, timeout: float = READY_TIMEOUT_S, interval: float = 0.05
    ) -> float:
        """Poll until `path` answers 200; the seconds since start. Raises `BenchFailure`."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise BenchFailure(f"{self.name} exited early: {self.log_tail()}")
            if http_status(self.base + path, body) == 200:
                return time.perf_counter() - self.started_at
            time.sleep(interval)
        raise BenchFailure(f"{self.name} not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it after a bounded wait."""
        if self.process is None:
            return
        process, self.process = self.process, None
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _reap_group(process.pid)


def _reap_group(pgid: int) -> None:
    """Kill whatever is left in the group (a worker whose parent died first)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def http_status(url: str, body: bytes | None = None, timeout: float = 1.0) -> int | None:
    """Status code of a GET (or POST when `body` is given), None when nothing answered."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def get_json(url: str, timeout: float = 5.0) -> object:
    import json

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants, in seconds."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid`'s main thread only (for a servekit server: the event loop),
    in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def metric_value(base: str, name: str, timeout: float = 5.0) -> float | None:
    """One unlabelled sample of the server's Prometheus `/metrics`; None if absent or unreachable."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """VmRSS (or another `/proc/PID/status` size, such as the peak `VmHWM`) of one process in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Processes:
    """Every server started through it is stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def start(self, server: Server) -> Server:
        self.servers.append(server)
        return server.start()

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        while self.servers:
            self.servers.pop().stop()
