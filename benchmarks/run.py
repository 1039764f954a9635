"""servekit speed benchmark: servekit vs the reference server vs the bare ASGI ceiling, under wrk.

    python benchmarks/run.py              # everything (~14 min)
    python benchmarks/run.py --quick      # shorter points, 1 and 64 connections (~2 min)
    python benchmarks/run.py --only forest,ceiling
    python benchmarks/run.py --profile    # also py-spy the LogisticRegression server under load

Writes benchmarks/results/latest.md and latest.json. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from costs import cold_section, floor_section, import_section
from harness import Context, Point, python_exe, runtime_of, servekit_command, session
from load import Load, ensure_wrk, run_side_by_side, wrk_core
from models import MODEL_NAMES, BenchModel, build_model
from procs import BenchFailure, Processes, Server, metric_value, pinned, rss_mb
from profiling import profile_server
from report import CEILING, Results, Row, Scalar, load_average, machine_info, render, to_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXTRAS = ("ceiling", "granian", "invalid", "rows", "oip", "floor", "cold", "import", "workers", "monitoring")
SECTIONS = (*MODEL_NAMES, *EXTRAS)
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
NATIVE = "POST /v1/models/{m}/predict"
SEED = "POST /predict"
CEILING_ROW = [5.1, 3.5, 1.4, 0.2]
GRANIAN_INSTALL_TIMEOUT_S = 180
CEILING_BEST_OF = 2
RATIO_CONNS = 64
"""The connection count of the points compared with the ceiling (and invalid with valid bodies)."""


RSS_SCALAR = "server RSS after its points"
PREDICTION_LOG_WAIT_S = 15.0


def wait_for_prediction_log(server: Server) -> float:
    """Seconds until the server's prediction log has no record waiting (at most
    `PREDICTION_LOG_WAIT_S`): its backlog after a many-row point is load, not the worker's size."""
    started = time.monotonic()
    while time.monotonic() - started < PREDICTION_LOG_WAIT_S:
        if not metric_value(server.base, "servekit_prediction_log_pending"):  # 0, or no metrics
            break
        time.sleep(0.2)
    return time.monotonic() - started


# -- sections ------------------------------------------------------------------------------------
def servekit_points(ctx: Context, name: str, wanted: set[str]) -> list[Point]:
    model = ctx.models[name]
    route = f"/v1/models/{name}/predict"
    points: list[Point] = []
    if name in wanted:
        # The points compared with the ceiling are measured like it: best of two.
        best = {c: CEILING_BEST_OF if c == RATIO_CONNS else 1 for c in ctx.conns}
        points += [Point(NATIVE, name, c, route, model.bodies["row"], best_of=best[c]) for c in ctx.conns]
        points += [Point(SEED, name, c, "/predict", model.bodies["row"], best_of=best[c]) for c in ctx.conns]
    if name == "forest" and "invalid" in wanted:
        invalid = Point("invalid body", name, RATIO_CONNS, route, model.bodies["invalid"], count_status=True)
        points.append(dataclasses.replace(invalid, best_of=CEILING_BEST_OF))
    if name == "logreg" and "rows" in wanted:
        many_conns = [1, 8] if not ctx.args.quick else [8]
        points += [Point("1000 rows JSON", name, c, route, model.bodies["many"], 1000) for c in many_conns]
    if name == "logreg" and "oip" in wanted:
        infer = f"/v2/models/{name}/infer"
        oip = {"content_type": "application/octet-stream"}
        header = "Inference-Header-Content-Length"
        many = {header: str(model.oip_header_lengths["oip_many"])}
        row = {header: str(model.oip_header_lengths["oip_row"])}
        if "rows" not in wanted:
            points.append(Point("1000 rows JSON", name, 8, route, model.bodies["many"], 1000))
        points.append(Point("OIP v2 binary, 1000 rows", name, 8, infer, model.bodies["oip_many"], 1000, many, **oip))
        points.append(Point("OIP v2 binary, 1 row", name, 64, infer, model.bodies["oip_row"], 1, row, **oip))
        if name not in wanted:
            points.append(Point(NATIVE, name, 64, route, model.bodies["row"]))
    return points


def servekit_session(ctx: Context, name: str, wanted: set[str]) -> None:
    points = servekit_points(ctx, name, wanted)
    model = ctx.models[name]

    def after(server: Server, rows: list[Row]) -> None:
        waited = wait_for_prediction_log(server)
        rss = rss_mb(server.pid)
        peak = rss_mb(server.pid, "VmHWM")
        note = (
            f"VmRSS once the prediction log had nothing waiting, {waited:.1f} s after the last point; "
            f"peak during the points (VmHWM) {peak or 0:.0f} MB"
        )
        ctx.results.scalars.append(Scalar(RSS_SCALAR, name, rss, "MB", note))
        if ctx.args.profile and name == "logreg":
            profile_server(ctx, server, model)

    if points:
        session(
            ctx,
            "servekit",
            servekit_command(model.bundle),
            points,
            ready_path="/health/ready",
            core=ctx.server_core,
            describe=runtime_of(name),
            after=after,
        )


def reference_session(ctx: Context, name: str) -> None:
    model = ctx.models[name]
    points = [Point(SEED, name, c, "/predict", model.bodies["row"]) for c in ctx.conns]
    command = [python_exe(), "-m", "uvicorn", "reference_server:app", "--host", "127.0.0.1", "--port", "{port}"]
    session(
        ctx,
        "reference",
        command,
        points,
        ready_path="/health",
        core=ctx.server_core,
        cwd=ctx.args.shared,
        env={"MODEL_PATH": str(model.joblib)},
    )


def ceiling_body(ctx: Context) -> Path:
    body = ctx.work / "ceiling.body"
    body.write_text(json.dumps({"features": CEILING_ROW}))
    return body


def ceiling_session(ctx: Context) -> None:
    body = ceiling_body(ctx)
    command = [python_exe(), "-m", "uvicorn", "asgi_ceiling:app", "--host", "127.0.0.1", "--port", "{port}"]
    points = [Point("POST /", "—", c, "/", body, best_of=CEILING_BEST_OF) for c in ctx.conns]
    session(
        ctx,
        CEILING,
        [*command, *UVICORN_FLAGS],
        points,
        ready_path="/",
        ready_body=body.read_bytes(),
        core=ctx.server_core,
        cwd=ctx.args.shared,
    )


def granian_path(ctx: Context) -> str | None:
    """A PYTHONPATH entry where granian can be imported from, installing it there if needed."""
    probe = subprocess.run([python_exe(), "-c", "import granian"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return ""
    target = ctx.args.out / ".granian"
    if not (target / "granian").exists():
        ctx.log("granian: pip install --target benchmarks/results/.granian granian")
        try:
            done = subprocess.run(
                [python_exe(), "-m", "pip", "install", "--quiet", "--target", str(target), "granian"],
                capture_output=True,
                text=True,
                timeout=GRANIAN_INSTALL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return None
        if done.returncode != 0:
            return None
    return str(target)


def granian_session(ctx: Context) -> None:
    body = ceiling_body(ctx)
    points = [Point("POST /", "—", c, "/", body) for c in ctx.conns]
    path = granian_path(ctx)
    if path is None:
        failed = "granian not installable"
        ctx.results.rows += [Row("granian ceiling", p.route, p.model, p.conns, failed=failed) for p in points]
        return
    command = [python_exe(), "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--no-ws", "--log-level", "warning", "asgi_ceiling:app"]
    pythonpath = os.pathsep.join(p for p in (str(ctx.args.shared), path) if p)
    session(
        ctx,
        "granian ceiling",
        command,
        points,
        ready_path="/",
        ready_body=body.read_bytes(),
        core=ctx.server_core,
        cwd=ctx.args.shared,
        env={"PYTHONPATH": pythonpath},
    )


WORKERS_ROUNDS = 2


def workers_section(ctx: Context) -> None:
    """`--workers 2` against `--workers 1`, servers and wrk unpinned (as the target asks): single
    rows at 64 connections in `WORKERS_ROUNDS` interleaved rounds (the target), and 1000-row
    requests at 8 connections once, where wrk's share of the two cores is small (the server's own
    scaling). The single-row notes give the most two workers could reach with the CPU wrk left."""
    model = ctx.models["logreg"]
    route = "/v1/models/logreg/predict"
    single: dict[int, list[Load]] = {1: [], 2: []}
    for round_ in range(1, WORKERS_ROUNDS + 1):
        for workers in (1, 2) if round_ % 2 else (2, 1):
            point = Point(
                f"{NATIVE}, unpinned (round {round_})", "logreg", 64, route, model.bodies["row"], pin_wrk=False
            )
            load = _workers_point(ctx, workers, point)
            if load:
                single[workers].append(load)
    complete = all(len(loads) == WORKERS_ROUNDS for loads in single.values())
    value = sum(x.rps for x in single[2]) / sum(x.rps for x in single[1]) if complete else None
    note = "servers and wrk unpinned"
    if value is not None:
        each = ", ".join(f"{two.rps / one.rps:.3f}" for one, two in zip(single[1], single[2], strict=True))
        note += f"; {WORKERS_ROUNDS} interleaved rounds, ratio of the sums (each round: {each})"
        note += _workers_shares(single[1], single[2])
    failed = None if value is not None else "a workers run failed"
    ctx.results.scalars.append(Scalar("workers 2 / workers 1 @64", "logreg", value, "x", note, failed=failed))

    many: dict[int, Load] = {}
    for workers in (1, 2):
        point = Point("1000 rows JSON, unpinned", "logreg", 8, route, model.bodies["many"], 1000, pin_wrk=False)
        load = _workers_point(ctx, workers, point)
        if load:
            many[workers] = load
    value = many[2].rps / many[1].rps if len(many) == 2 and many[1].rps else None
    note = "servers and wrk unpinned; not a target: the server's scaling when wrk needs little CPU"
    if value is not None:
        note += _workers_shares([many[1]], [many[2]])
    failed = None if value is not None else "a workers run failed"
    ctx.results.scalars.append(Scalar("workers 2 / workers 1, 1000 rows @8", "logreg", value, "x", note, failed=failed))


def _workers_point(ctx: Context, workers: int, point: Point) -> Load | None:
    """One `servekit --workers N` server, unpinned, measured at one point."""
    model = ctx.models["logreg"]
    command = servekit_command(model.bundle, "--workers", str(workers))
    rows = session(ctx, f"servekit --workers {workers}", command, [point], ready_path="/health/ready", core=None)
    return rows[0].load


def _workers_shares(one: list[Load], two: list[Load]) -> str:
    """How the two cores were shared in the `--workers 2` runs, and the most they allowed: two
    workers at their measured CPU per request, given all the CPU that wrk did not take."""
    if not all(x.server_cpu and x.wrk_cpu is not None for x in [*one, *two]):
        return ""
    rps1, rps2 = (sum(x.rps for x in loads) / len(loads) for loads in (one, two))
    cores1, cores2 = (sum(x.server_cpu or 0.0 for x in loads) / len(loads) / 100 for loads in (one, two))
    wrk2 = sum(x.wrk_cpu or 0.0 for x in two) / len(two) / 100
    efficiency = (rps2 / cores2) / (rps1 / cores1)
    bound = (2 - wrk2) / cores2 * rps2 / rps1
    return (
        f"; the 2 workers got {cores2:.2f} cores and wrk {wrk2:.2f} ({wrk2 / rps2 * 1e6:.1f} us per request),"
        f" the rest idle or other work; requests per CPU-second {efficiency:.2f}x those of 1 worker;"
        f" with all the CPU wrk left, 2 workers would reach {bound:.2f}x"
    )


MONITORING_VARIANTS = {
    "monitoring off": {
        "SERVEKIT_METRICS": "false",
        "SERVEKIT_ACCESS_LOG": "false",
        "SERVEKIT_PREDICTION_LOG__ENABLED": "false",
    },
    "prediction log off": {"SERVEKIT_PREDICTION_LOG__ENABLED": "false"},
    "defaults (all on)": {},
}


MONITORING_ROUNDS = 5


def monitoring_section(ctx: Context) -> None:
    """What metrics, the access log and the prediction log cost: the same point, three settings,
    measured in `MONITORING_ROUNDS` interleaved rounds (a single pair of runs on a shared VM moves
    by more than the few per cent being measured), every other round in reverse order (so no
    setting always runs right after the same one); the ratios are of the summed requests."""
    model = ctx.models["logreg"]
    route = "/v1/models/logreg/predict"
    rps: dict[str, list[float]] = {variant: [] for variant in MONITORING_VARIANTS}
    for round_ in range(1, MONITORING_ROUNDS + 1):
        variants = list(MONITORING_VARIANTS.items())
        for variant, env in variants if round_ % 2 else reversed(variants):
            home = ctx.work / f"home-{round_}-{len(rps[variant])}-{variant.replace(' ', '-')}"
            point = Point(f"{NATIVE}, {variant} (round {round_})", "logreg", 64, route, model.bodies["row"])
            rows = session(
                ctx,
                f"servekit, {variant}",
                servekit_command(model.bundle),
                [point],
                ready_path="/health/ready",
                core=ctx.server_core,
                env={**env, "SERVEKIT_HOME": str(home)},
            )
            if rows[0].load:
                rps[variant].append(rows[0].load.rps)
    off, no_log, on = (rps[v] for v in MONITORING_VARIANTS)
    pairs = (
        ("prediction log on / off @64", on, no_log, "metrics and access log on in both"),
        ("all monitoring on / off @64", on, off, "metrics + JSON access log + prediction log vs none"),
    )
    for label, numerator, denominator, note in pairs:
        complete = len(numerator) == len(denominator) == MONITORING_ROUNDS
        value = sum(numerator) / sum(denominator) if complete else None
        if complete:
            rounds = [a / b for a, b in zip(numerator, denominator, strict=True)]
            each = ", ".join(f"{ratio:.3f}" for ratio in rounds)
            note += f"; {MONITORING_ROUNDS} interleaved rounds, ratio of the sums (each round: {each}; median"
            note += f" {statistics.median(rounds):.3f})"
        failed = None if value is not None else "a monitoring run failed"
        ctx.results.scalars.append(Scalar(label, "logreg", value, "x", note, failed=failed))
    side_by_side(ctx, model, route)


SIDE_BY_SIDE_ROUNDS = 5
SIDE_BY_SIDE = {variant: MONITORING_VARIANTS[variant] for variant in ("prediction log off", "defaults (all on)")}


def side_by_side(ctx: Context, model: BenchModel, route: str) -> None:
    """The prediction log's CPU per request with both servers on the server core at the same time,
    each driven by its own wrk at 64 connections (`run_side_by_side`), in fresh servers each round:
    the machine's slow and fast phases then weigh on both alike."""
    costs: dict[str, list[float]] = {variant: [] for variant in SIDE_BY_SIDE}
    loop_costs: dict[str, list[float]] = {variant: [] for variant in SIDE_BY_SIDE}
    for round_ in range(1, SIDE_BY_SIDE_ROUNDS + 1):
        os.sync()
        servers: list[Server] = []
        try:
            for variant, env in SIDE_BY_SIDE.items():
                home = ctx.work / f"home-side-{round_}-{variant.replace(' ', '-')}"
                server = ctx.server(
                    f"servekit side by side, {variant}",
                    pinned(servekit_command(model.bundle), ctx.server_core),
                    env={**env, "SERVEKIT_HOME": str(home)},
                )
                servers.append(ctx.procs.start(server))
            for server in servers:
                server.wait_ready("/health/ready")
            loads = run_side_by_side(
                [(server.base + route, server.pid) for server in servers],
                model.bodies["row"],
                64,
                ctx.args.duration,
                ctx.args.warmup,
            )
        except (BenchFailure, OSError) as exc:
            ctx.log(f"side by side round {round_}: FAILED {exc}")
            continue
        finally:
            for server in servers:
                ctx.procs.stop(server)
        if any(load.errors for load in loads):
            ctx.log(f"side by side round {round_}: errors {[load.errors for load in loads]}, not counted")
            continue
        for variant, load in zip(SIDE_BY_SIDE, loads, strict=True):
            costs[variant].append(load.cpu_us_per_request)
            loop_costs[variant].append(load.loop_us_per_request)
        ctx.log(f"side by side round {round_}: " + ", ".join(f"{v} {c[-1]:.2f} us" for v, c in costs.items()))
    off, on = costs.values()
    complete = len(off) == len(on) == SIDE_BY_SIDE_ROUNDS
    value = sum(off) / sum(on) if complete else None
    note = "server CPU per request, log off / log on, both servers on the same core at the same time"
    if complete:
        each = ", ".join(f"{a / b:.3f}" for a, b in zip(off, on, strict=True))
        loop_off, loop_on = (statistics.median(values) for values in loop_costs.values())
        note += (
            f"; {SIDE_BY_SIDE_ROUNDS} rounds of fresh servers (each round: {each}); median µs per request: log off "
            f"{statistics.median(off):.2f} (event loop {loop_off:.2f}), log on {statistics.median(on):.2f} "
            f"(event loop {loop_on:.2f})"
        )
    failed = None if complete else "a side-by-side round failed"
    ctx.results.scalars.append(
        Scalar("prediction log CPU per request, side by side @64", "logreg", value, "x", note, failed=failed)
    )


# -- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short points, 1 and 64 connections (~2 min)")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--duration", type=float, help="measured seconds per point (default 8, quick 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per point (default 2, quick 1)")
    parser.add_argument("--connections", help="comma-separated connection counts (default 1,8,64; quick 1,64)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "bench", help="shared/bench folder")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--profile", action="store_true", help="py-spy the logreg server under load")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, logs)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.conns = [int(c) for c in (args.connections or ("1,64" if args.quick else "1,8,64")).split(",")]
    args.cold_runs = 3
    args.floor_calls = 300 if args.quick else 2000
    args.shared = args.shared.resolve()
    wanted = {s.strip() for s in args.only.split(",") if s.strip()} or set(SECTIONS)
    unknown = wanted - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    args.wanted = wanted
    for needed in ("reference_server.py", "asgi_ceiling.py"):
        if not (args.shared / needed).exists():
            parser.error(f"{args.shared / needed} not found: give the shared/bench folder with --shared")
    return args


def needed_models(wanted: set[str]) -> list[str]:
    names = {m for m in MODEL_NAMES if m in wanted}
    chosen = sorted(names, key=MODEL_NAMES.index) or list(MODEL_NAMES)
    if "invalid" in wanted:
        names.add("forest")
    if wanted & {"rows", "oip", "workers", "monitoring"}:
        names.add("logreg")
    if wanted & {"floor", "cold"}:
        names.update(chosen)
    return [m for m in MODEL_NAMES if m in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_wrk()
    args.out.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    server_core = int(os.environ.get("SERVER_CORE", "1")) if cores > 1 else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    work = Path(tempfile.mkdtemp(prefix="servekit-bench-"))
    os.environ["SERVEKIT_HOME"] = str(work / "home")  # servers' prediction logs stay in the work folder
    results = Results(
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.conns,
            "server_core": server_core,
            "wrk_core": wrk_core(),
            "sections": sorted(args.wanted),
            "loadavg_before": load_average(),
        }
    )
    started = time.perf_counter()
    wanted = args.wanted
    model_sections = [m for m in MODEL_NAMES if m in wanted]
    try:
        with Processes() as procs:
            ctx = Context(args, procs, work, results, args.conns, server_core)
            for name in needed_models(wanted):
                ctx.log(f"building {name}: train, joblib.dump, servekit pack --sample --trust")
                try:
                    ctx.models[name] = build_model(name, work)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    ctx.log(f"building {name}: FAILED {exc}")
                    results.scalars.append(Scalar("build + servekit pack", name, None, "", failed=str(exc)))
            chosen = [m for m in (model_sections or MODEL_NAMES) if m in ctx.models]
            if "import" in wanted:
                import_section(ctx)
            if "cold" in wanted:
                cold_section(ctx, chosen if not args.quick else chosen[-1:])
            if "floor" in wanted:
                floor_section(ctx, chosen)
            if "ceiling" in wanted:
                ceiling_session(ctx)
            if "granian" in wanted:
                granian_session(ctx)
            for name in ctx.models:
                servekit_session(ctx, name, wanted)
                if name in wanted:
                    reference_session(ctx, name)
            if "workers" in wanted and "logreg" in ctx.models:
                workers_section(ctx)
            if "monitoring" in wanted and "logreg" in ctx.models:
                monitoring_section(ctx)
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    machine = machine_info()
    text = render(results, machine, model_sections or list(MODEL_NAMES), args.conns)
    text += f"\nTotal harness time: {time.perf_counter() - started:.0f} s.\n"
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(json.dumps(to_json(results, machine), indent=2, default=str))
    print()
    print(text)
    print(f"written: {args.out / 'latest.md'} and latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
