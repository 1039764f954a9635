"""The harness's machinery: load points, server sessions (start, measure, always stop), and
the servekit command line. Failures become failed rows, never a crash."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from load import Load, run_load
from models import BenchModel
from procs import BenchFailure, Processes, Server, free_port, get_json, pinned
from report import NOISY_OTHER_CPU, Results, Row

NOISY_PAUSE_S = 5.0


@dataclass
class Point:
    """One wrk point to run against a started server."""

    route: str
    model: str
    conns: int
    path: str
    body: Path
    rows_per_request: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    count_status: bool = False
    best_of: int = 1
    """Measure this many times and keep the highest RPS (the ceiling: the most the stack can do)."""
    pin_wrk: bool = True
    """False: wrk may run on any core too (the `--workers` rows, which the targets ask unpinned)."""


@dataclass
class Context:
    args: argparse.Namespace
    procs: Processes
    work: Path
    results: Results
    conns: list[int]
    server_core: int | None
    models: dict[str, BenchModel] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def server(self, name: str, command: list[str], **kwargs: object) -> Server:
        port = free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        log = self.work / "logs" / f"{re.sub(r'[^A-Za-z0-9]+', '-', name)}-{port}.log"
        log.parent.mkdir(exist_ok=True)
        return Server(name, command, log, port, **kwargs)  # type: ignore[arg-type]


# -- helpers ----------------------------------------------------------------------------------------
def python_exe() -> str:
    return sys.executable


def servekit_exe() -> str:
    candidate = Path(sys.executable).with_name("servekit")
    return str(candidate) if candidate.exists() else shutil.which("servekit") or "servekit"


def servekit_command(bundle: Path, *extra: str) -> list[str]:
    return [servekit_exe(), "serve", str(bundle), "--host", "127.0.0.1", "--port", "{port}", "--trust", *extra]


def run_points(ctx: Context, server: Server, label: str, points: list[Point], *, runtime: str = "") -> list[Row]:
    """Run every point against a started server; a failed point becomes a failed row."""
    rows = []
    for point in points:
        row = Row(label, point.route, point.model, point.conns, point.rows_per_request, runtime=runtime)
        try:
            if server.process is None or server.process.poll() is not None:
                raise BenchFailure(f"{label} is no longer running: {server.log_tail()}")
            row.load, row.note = measure(ctx, server, point)
            ctx.log(
                f"  {label} {point.route} {point.model} c={point.conns}: {row.load.rps:,.0f} req/s "
                f"p99 {row.load.p99_ms:.1f} ms, errors {row.load.errors}"
            )
        except BenchFailure as exc:
            row.failed = str(exc)
            ctx.log(f"  {label} {point.route} {point.model} c={point.conns}: FAILED {exc}")
        rows.append(row)
    return rows


def measure(ctx: Context, server: Server, point: Point) -> tuple[Load, str]:
    """The point's load (best of `best_of`), measured again once when other work was running."""

    def once() -> Load:
        return run_load(
            server.base + point.path,
            point.body,
            point.conns,
            ctx.args.duration,
            ctx.args.warmup,
            server_pid=server.pid,
            headers=point.headers,
            content_type=point.content_type,
            count_status=point.count_status,
            pin_wrk=point.pin_wrk,
        )

    load = once()
    notes = []
    for _ in range(point.best_of - 1):
        again = once()
        load = again if again.rps > load.rps else load
    if point.best_of > 1:
        notes.append(f"best of {point.best_of}")
    if load.other_cpu is not None and load.other_cpu > NOISY_OTHER_CPU:
        ctx.log(f"  other work used {load.other_cpu:.0f} % CPU during the point: measuring it again")
        time.sleep(NOISY_PAUSE_S)
        again = once()
        if again.other_cpu is not None and again.other_cpu < load.other_cpu:
            load = again
        notes.append("measured twice (other work on the machine), quieter run kept")
    return load, "; ".join(notes)


def session(
    ctx: Context,
    label: str,
    command: list[str],
    points: list[Point],
    *,
    ready_path: str,
    ready_body: bytes | None = None,
    core: int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    describe: Callable[[Server], str] | None = None,
    after: Callable[[Server, list[Row]], None] | None = None,
) -> list[Row]:
    """Start one server, run its points, stop it. Failures become failed rows.

    The disk's dirty pages are written out first (`os.sync`): what earlier servers wrote (many-row
    requests fill the prediction log by the megabyte) would otherwise be written back by the
    kernel in the middle of this server's points, and counted against it."""
    os.sync()
    server = ctx.server(label, pinned(command, core), cwd=cwd, env=env or {})
    ctx.log(f"{label}: starting ({' '.join(command[:4])} …)")
    try:
        ctx.procs.start(server)
        server.wait_ready(ready_path, body=ready_body)
        runtime = describe(server) if describe else ""
        rows = run_points(ctx, server, label, points, runtime=runtime)
        if after:
            try:
                after(server, rows)
            except Exception as exc:  # an extra measurement never loses the rows already measured
                ctx.log(f"{label}: after-run step failed: {type(exc).__name__}: {exc}")
    except (BenchFailure, OSError) as exc:
        ctx.log(f"{label}: FAILED {exc}")
        rows = [Row(label, p.route, p.model, p.conns, p.rows_per_request, failed=str(exc)) for p in points]
    finally:
        ctx.procs.stop(server)
    ctx.results.rows.extend(rows)
    return rows


def runtime_of(model: str) -> Callable[[Server], str]:
    """Which runtime answers, from GET /v1/models/{name} → metadata.runtime / metadata.variant."""

    def describe(server: Server) -> str:
        try:
            detail = get_json(f"{server.base}/v1/models/{model}")
        except (OSError, ValueError) as exc:
            return f"runtime unknown ({exc})"
        meta = detail.get("metadata") or {} if isinstance(detail, dict) else {}
        runtime = meta.get("runtime") or (detail.get("format") if isinstance(detail, dict) else None) or "?"
        variant = meta.get("variant")
        return f"runtime={runtime}" + (f" variant={variant}" if variant else "")

    return describe
