"""Per-process costs: `import servekit` time, cold start to ready, and the in-process floor."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from pathlib import Path

from harness import Context, python_exe, servekit_command
from procs import BenchFailure, pinned
from report import Scalar

HERE = Path(__file__).resolve().parent


def floor_section(ctx: Context, names: list[str]) -> None:
    for name in names:
        model = ctx.models[name]
        command = [python_exe(), str(HERE / "floor.py"), str(model.bundle), str(model.joblib), json.dumps(model.row)]
        try:
            done = subprocess.run(
                pinned([*command, str(ctx.args.floor_calls)], ctx.server_core),
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 0:
                raise BenchFailure((done.stderr or done.stdout).strip()[-200:])
            data = json.loads(done.stdout.strip().splitlines()[-1])
            variant = f" variant={data['variant']}" if data.get("variant") else ""
            note = f"median of {data['calls']}, runtime={data['runtime']}{variant}"
            ctx.results.scalars.append(Scalar("in-process predict_batch, 1 row", name, data["servekit_us"], "µs", note))
            ctx.results.scalars.append(
                Scalar("raw sklearn predict + predict_proba, 1 row", name, data["sklearn_us"], "µs", note.split(",")[0])
            )
            ctx.log(f"floor {name}: servekit {data['servekit_us']:.0f} µs, sklearn {data['sklearn_us']:.0f} µs")
        except (BenchFailure, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            ctx.results.scalars.append(Scalar("in-process predict_batch, 1 row", name, None, "µs", failed=str(exc)))


def cold_section(ctx: Context, names: list[str]) -> None:
    for name in names:
        times: list[float] = []
        failure = None
        for _ in range(ctx.args.cold_runs):
            server = ctx.server(f"cold-{name}", pinned(servekit_command(ctx.models[name].bundle), ctx.server_core))
            try:
                ctx.procs.start(server)
                times.append(server.wait_ready("/health/ready", timeout=60, interval=0.01))
            except (BenchFailure, OSError) as exc:
                failure = str(exc)
            finally:
                ctx.procs.stop(server)
        value = statistics.median(times) if times else None
        note = f"median of {len(times)}: " + ", ".join(f"{t:.2f}" for t in times)
        ctx.results.scalars.append(
            Scalar("cold start (serve → ready)", name, value, "s", note, failed=failure if not times else None)
        )
        ctx.log(f"cold start {name}: {note}")


IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)")


def import_section(ctx: Context) -> None:
    """`python -X importtime -c "import servekit"`: cumulative µs of the servekit package, median of 5."""
    samples: list[float] = []
    totals: list[float] = []
    failure = None
    for _ in range(5):
        done = subprocess.run(
            pinned([python_exe(), "-X", "importtime", "-c", "import servekit"], ctx.server_core),
            capture_output=True,
            text=True,
            timeout=60,
        )
        total_us = 0
        for line in done.stderr.splitlines():
            match = IMPORT_LINE.match(line)
            if not match:
                continue
            total_us += int(match.group(1))
            if match.group(4) == "servekit" and len(match.group(3)) == 1:
                samples.append(int(match.group(2)) / 1000)
        totals.append(total_us / 1000)
        if done.returncode != 0:
            failure = done.stderr.strip()[-200:]
    value = statistics.median(samples) if samples else None
    note = "the servekit package's cumulative -X importtime, median of 5: " + ", ".join(f"{v:.0f}" for v in samples)
    if totals:
        note += f"; every import incl. interpreter start-up: {statistics.median(totals):.0f} ms"
    ctx.results.scalars.append(Scalar("import servekit", "—", value, "ms", note, failed=failure))
    ctx.log(f"import servekit: {note}")
