"""Benchmark results: the rows, the issue's targets, and the markdown / JSON report."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from load import Load

CEILING = "uvicorn ceiling"
NOISY_OTHER_CPU = 20.0
"""Above this much CPU (% of one core) used by other work during a point, it is flagged."""


@dataclass
class Row:
    """One wrk point: which server, route and model, and what it measured (or why it failed)."""

    server: str
    route: str
    model: str
    conns: int
    rows_per_request: int = 1
    load: Load | None = None
    failed: str | None = None
    runtime: str = ""
    note: str = ""
    rss_mb: float | None = None

    @property
    def ok(self) -> bool:
        return self.load is not None


@dataclass
class Scalar:
    """A measurement that is not a load point (floor, cold start, import time, RSS)."""

    name: str
    model: str
    value: float | None
    unit: str
    note: str = ""
    failed: str | None = None
    samples: list[float] = field(default_factory=list)


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    scalars: list[Scalar] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    profile: str = ""

    def find(self, server: str, route: str, model: str, conns: int) -> Row | None:
        for row in self.rows:
            if (row.server, row.route, row.model, row.conns) == (server, route, model, conns) and row.ok:
                return row
        return None

    def scalar(self, name: str, model: str) -> Scalar | None:
        return next((s for s in self.scalars if s.name == name and s.model == model and s.value is not None), None)


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- machine -------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    """Date, machine and versions, for the report header."""
    cpu = "unknown"
    ram = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        kib = next(
            int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
        )
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "servekit": _version("servekit"),
        "scikit-learn": _version("scikit-learn"),
        "uvicorn": _version("uvicorn"),
        "onnxruntime": _version("onnxruntime"),
        "wrk": _wrk_version(),
        "loadavg": load_average(),
    }


def load_average() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].split(" [")[0] if text else "unknown"


# -- tables ---------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(row: Row, other: Row | None) -> str:
    if row.load is None or other is None or other.load is None or other.load.rps == 0:
        return "—"
    return f"{row.load.rps / other.load.rps:.2f}x"


def _percent_of(row: Row, other: Row | None) -> str:
    if row.load is None or other is None or other.load is None or other.load.rps == 0:
        return "—"
    return f"{100 * row.load.rps / other.load.rps:.0f} %"


def load_table(results: Results) -> str:
    head = (
        "| server | route | model | conns | RPS | p50 ms | p99 ms | errors | server CPU % | wrk CPU % "
        "| other CPU % | vs reference | vs ceiling | notes |"
    )
    lines = [head, "|" + " --- |" * 14]
    for row in results.rows:
        name = f"{row.server} | {row.route} | {row.model} | {row.conns}"
        if row.load is None:
            lines.append(f"| {name} | FAILED | — | — | — | — | — | — | — | — | {_cell(row.failed or '')} |")
            continue
        load = row.load
        reference = results.find("reference", "POST /predict", row.model, row.conns)
        ceiling = results.find(CEILING, "POST /", "—", row.conns)
        is_servekit = row.server.startswith("servekit") and row.rows_per_request == 1 and row.route != "invalid body"
        notes = [row.runtime] if row.runtime else []
        if row.rows_per_request > 1:
            notes.append(f"{load.rps * row.rows_per_request:,.0f} rows/s")
        if load.status:
            notes.append(" ".join(f"{k[1:]}={v}" for k, v in load.status.items() if v or k != "sother"))
        if row.note:
            notes.append(row.note)
        if load.other_cpu is not None and load.other_cpu > NOISY_OTHER_CPU:
            notes.append(f"⚠ noisy: other work used {load.other_cpu:.0f} % CPU")
        lines.append(
            f"| {name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.errors} "
            f"| {_num(load.server_cpu, 0)} | {_num(load.wrk_cpu, 0)} | {_num(load.other_cpu, 0)} "
            f"| {_ratio(row, reference) if is_servekit else '—'} "
            f"| {_percent_of(row, ceiling) if is_servekit else '—'} "
            f"| {_cell('; '.join(notes))} |"
        )
    return "\n".join(lines)


def scalar_table(results: Results) -> str:
    lines = ["| measurement | model | value | notes |", "| --- | --- | --- | --- |"]
    for s in results.scalars:
        digits = 3 if s.unit == "x" else _digits(s.value or 0)
        value = f"FAILED: {s.failed}" if s.value is None else f"{s.value:,.{digits}f} {s.unit}"
        lines.append(f"| {s.name} | {s.model} | {_cell(value)} | {_cell(s.note)} |")
    return "\n".join(lines)


def _digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- targets --------------------------------------------------------------------------------------
def targets(results: Results, models: list[str], conns: list[int]) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured, verdict) for every target of the speed issue that was measured."""
    out: list[tuple[str, str, str, str]] = []
    top = max(conns)
    ceiling = results.find(CEILING, "POST /", "—", top)
    native = "POST /v1/models/{m}/predict"
    for model in models:
        row = results.find("servekit", native, model, top)
        if row and ceiling and row.load and ceiling.load:
            share = row.load.rps / ceiling.load.rps
            out.append(
                (f"{model}: single-row RPS vs bare ASGI @{top}", "≥ 50 %", f"{100 * share:.0f} %", _ok(share >= 0.5))
            )
    for model in models:
        for route in (native, "POST /predict"):
            row = results.find("servekit", route, model, top)
            if row and row.load:
                out.append(
                    (f"{model}: p99 {route} @{top}", "≤ 20 ms", f"{row.load.p99_ms:.1f} ms", _ok(row.load.p99_ms <= 20))
                )
    served = [r for r in results.rows if r.server.startswith("servekit") and r.route != "invalid body" and r.ok]
    if served:
        errors = sum(r.load.errors for r in served if r.load)
        out.append(("servekit errors (all valid-body rows)", "0", str(errors), _ok(errors == 0)))
    if 1 in conns:
        for model in models:
            row = results.find("servekit", native, model, 1)
            if row and row.load:
                out.append(
                    (f"{model}: p50 @1 connection", "≤ 1 ms", f"{row.load.p50_ms:.2f} ms", _ok(row.load.p50_ms <= 1))
                )
    many = [r for r in results.rows if r.route == "1000 rows JSON" and r.ok and r.load]
    if many:
        best = max(r.load.rps * r.rows_per_request for r in many if r.load)
        out.append(("rows/s, 1000x30 JSON (best)", "≥ 100,000", f"{best:,.0f}", _ok(best >= 100_000)))
    for row in results.rows:
        if row.route == "OIP v2 binary, 1000 rows" and row.load:
            json_row = results.find("servekit", "1000 rows JSON", row.model, row.conns)
            if json_row and json_row.load:
                ratio = row.load.rps / json_row.load.rps
                out.append(
                    (f"OIP binary vs native JSON, 1000 rows @{row.conns}", "≥ 1.0x", f"{ratio:.2f}x", _ok(ratio >= 1))
                )
    invalid = next((r for r in results.rows if r.route == "invalid body" and r.load), None)
    if invalid and invalid.load and invalid.load.status:
        status = invalid.load.status
        good = status.get("s5xx", 0) == 0 and status.get("s2xx", 0) == 0 and invalid.load.sockerr == 0
        measured = f"4xx={status.get('s4xx', 0)} 5xx={status.get('s5xx', 0)} sock={invalid.load.sockerr}"
        out.append(("invalid bodies @64: all 4xx", "no 5xx/2xx", measured, _ok(good)))
        valid = results.find("servekit", native, invalid.model, invalid.conns)
        if valid and valid.load:
            ratio = invalid.load.rps / valid.load.rps
            label = f"invalid vs valid bodies RPS, {invalid.model} @{invalid.conns}"
            out.append((label, "≥ 1.0x", f"{ratio:.2f}x", _ok(ratio >= 1)))
    for model in models:
        cold = results.scalar("cold start (serve → ready)", model)
        if cold and cold.value is not None:
            out.append((f"{model}: cold start", "≤ 2 s", f"{cold.value:.2f} s", _ok(cold.value <= 2)))
    imported = results.scalar("import servekit", "—")
    if imported and imported.value is not None:
        out.append(("import servekit", "≤ 150 ms", f"{imported.value:.0f} ms", _ok(imported.value <= 150)))
    rss = [s for s in results.scalars if s.name.startswith("server RSS") and s.value is not None]
    if rss:
        worst = max(s.value for s in rss if s.value is not None)
        out.append(("server RSS after its points, log drained (max)", "≤ 150 MB", f"{worst:.0f} MB", _ok(worst <= 150)))
    scaling = results.scalar("workers 2 / workers 1 @64", "logreg")
    if scaling and scaling.value is not None:
        out.append(("--workers 2 vs 1 (unpinned)", "≥ 1.7x", f"{scaling.value:.3f}x", _ok(scaling.value >= 1.7)))
    logging_cost = results.scalar("prediction log on / off @64", "logreg")
    if logging_cost and logging_cost.value is not None:
        # The monitoring issue: logging every request may cost at most 5 % of this throughput.
        value = logging_cost.value
        out.append(("prediction log on / off @64 (monitoring)", "≥ 0.95x", f"{value:.3f}x", _ok(value >= 0.95)))
    side = results.scalar("prediction log CPU per request, side by side @64", "logreg")
    if side and side.value is not None:
        # The same 5 %, as CPU per request with both servers measured at the same time.
        label = "prediction log CPU per request, off / on, side by side (monitoring)"
        out.append((label, "≥ 0.95x", f"{side.value:.3f}x", _ok(side.value >= 0.95)))
    return out


def _ok(passed: bool) -> str:
    return "✅" if passed else "❌"


def target_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| target | goal | measured | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


# -- report ---------------------------------------------------------------------------------------
def render(results: Results, machine: dict[str, str], models: list[str], conns: list[int]) -> str:
    """The whole markdown report."""
    s = results.settings
    header = [
        "# servekit benchmark",
        "",
        f"- date: {machine['date']}",
        f"- machine: {machine['nproc']} cores, {machine['cpu']}, {machine['ram']} RAM",
        f"- versions: Python {machine['python']}, servekit {machine['servekit']}, "
        f"scikit-learn {machine['scikit-learn']}, uvicorn {machine['uvicorn']}, "
        f"onnxruntime {machine['onnxruntime']}, {machine['wrk']}",
        f"- load: wrk -t1, {s.get('warmup_s')} s warm-up + {s.get('duration_s')} s measured per point; "
        f"servers on core {s.get('server_core')}, wrk on core {s.get('wrk_core')}",
        f"- 1-min load average: {s.get('loadavg_before', '?')} before the run, {machine['loadavg']} after "
        "(anything above ~0.1 before means other work shared the machine)",
        "",
    ]
    parts = [*header, "## Load (wrk)", "", load_table(results), ""]
    if results.scalars:
        parts += ["## Per-process costs", "", scalar_table(results), ""]
    goals = targets(results, models, conns)
    if goals:
        parts += ["## Targets", "", target_table(goals), ""]
    if results.profile:
        parts += ["## Profile", "", "```", results.profile.rstrip(), "```", ""]
    return "\n".join(parts)


def to_json(results: Results, machine: dict[str, str]) -> dict[str, Any]:
    return {"machine": machine, **dataclasses.asdict(results)}
