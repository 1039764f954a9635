"""py-spy of a server under load, summarised as its top frames."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from harness import Context
from load import run_load
from models import BenchModel
from procs import BenchFailure, Server

PROFILE_SECONDS = 6


def profile_server(ctx: Context, server: Server, model: BenchModel) -> None:
    """py-spy the server under single-row load at 64 connections; keep the top frames."""
    spy = Path(sys.executable).with_name("py-spy")
    spy_cmd = str(spy) if spy.exists() else shutil.which("py-spy")
    if not spy_cmd:
        ctx.results.profile = "py-spy not installed: `.venv/bin/pip install py-spy` to profile"
        return
    raw = ctx.work / "profile.txt"
    record = [spy_cmd, "record", "--pid", str(server.pid), "--duration", str(PROFILE_SECONDS)]
    record += ["--rate", "250", "--format", "raw", "--nonblocking", "--output", str(raw)]
    ctx.log("profiling the logreg server with py-spy under 64-connection single-row load")
    spying = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        run_load(f"{server.base}/v1/models/logreg/predict", model.bodies["row"], 64, PROFILE_SECONDS + 2, 0)
        spying.wait(timeout=60)
    except (BenchFailure, subprocess.TimeoutExpired) as exc:
        ctx.results.profile = f"profiling failed: {exc}"
        return
    finally:
        if spying.poll() is None:
            spying.kill()
    if not raw.exists():
        ctx.results.profile = f"py-spy wrote nothing: {(spying.stderr.read() if spying.stderr else '')[-200:]}"
        return
    ctx.results.profile = summarize_profile(raw.read_text())
    (ctx.args.out / "profile-logreg.txt").write_text(ctx.results.profile)
    shutil.copy(raw, ctx.args.out / "profile-logreg.collapsed")


# Frames that every stack of a thread shares (CLI entry, event loop, thread pool): the inclusive
# ranking starts below the last of them.
PROFILE_ROOTS = ("Runner.run (asyncio/runners.py", "_worker (concurrent/futures/thread.py", "Thread.run (")


LINE_NUMBER = re.compile(r":\d+\)$")


def _below_roots(frames: list[str]) -> int:
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].startswith(PROFILE_ROOTS):
            return index + 1
    return 0


def summarize_profile(collapsed: str, top: int = 20) -> str:
    """Top frames by own samples and by inclusive samples, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in {LINE_NUMBER.sub(")", f) for f in frames[_below_roots(frames) :]}:
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "py-spy recorded no samples"

    def block(title: str, table: dict[str, int]) -> list[str]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [title, *(f"{100 * n / total:5.1f} %  {frame}" for frame, n in ranked), ""]

    head = f"py-spy, logreg single row @64 connections, {total} samples"
    lines = [
        head,
        "",
        *block("own time:", own),
        *block("inclusive time by function (below the event loop / thread pool):", inclusive),
    ]
    return "\n".join(lines)
