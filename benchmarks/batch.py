"""Batch scoring benchmark: `servekit score` on 2 million rows x 30 features, CSV in, Parquet out.

    python benchmarks/batch.py                 # 2M rows: local engine, Dask engine, floors (~3-5 min)
    python benchmarks/batch.py --rows 200000   # a quick look
    python benchmarks/batch.py --skip-dask
    python benchmarks/batch.py --work /tmp/bb    # build the data there once, reuse it next time

The model is StandardScaler + LogisticRegression fitted on breast_cancer (30 named features),
packed with a training sample so that `pack` adds its verified ONNX variant. The input is
breast_cancer rows drawn with replacement, each value times (1 + 5 % noise), rounded to 4
decimals like the dataset, plus an `id` column. Each engine runs as a real `servekit score`
process; its wall time is the end-to-end figure (start-up, model load, read, validate, predict,
write, assemble); its peak RSS is `getrusage`'s, for the largest process of the run (the
Dask engine's is the driver or one of its workers, whichever peaked higher). The floors are
measured in-process: the Predictor alone on in-memory chunks, and pyarrow's CSV parser alone on
the whole file.

Writes benchmarks/results/batch.json and batch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SERVEKIT = str(Path(sys.executable).parent / "servekit")
WRITE_ROWS = 200_000
FLOOR_CHUNK = 100_000
TARGET_ROWS_PER_S = 250_000
TARGET_RSS_MB = 600
RUN_TIMEOUT_S = 900
# Runs a command and writes the peak RSS (KiB) of its largest process, itself or a descendant.
PEAK_WRAPPER = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(done.returncode)"
)


def build(work: Path, rows: int) -> tuple[Path, Path]:
    """The bundle (with its ONNX variant) and the input CSV."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import servekit

    data = load_breast_cancer(as_frame=True)
    frame = data.data
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(frame, data.target)
    import joblib

    joblib.dump(model, work / "logreg.joblib")
    bundle = servekit.pack(work / "logreg.joblib", output=work / "logreg.bundle", sample=frame, trust=True)
    if "onnx" not in bundle.manifest.variants:
        raise SystemExit(f"pack did not add the ONNX variant: {bundle.optimization}")
    rng = np.random.default_rng(0)
    source = frame.to_numpy()
    path = work / "input.csv"
    with pcsv.CSVWriter(path, pa.schema([("id", pa.int64())] + [(c, pa.float64()) for c in frame.columns])) as out:
        for start in range(0, rows, WRITE_ROWS):
            n = min(WRITE_ROWS, rows - start)
            values = source[rng.integers(0, len(source), n)] * (1 + 0.05 * rng.standard_normal((n, source.shape[1])))
            chunk = pd.DataFrame(np.round(values, 4), columns=frame.columns)
            chunk.insert(0, "id", np.arange(start, start + n))
            out.write_table(pa.Table.from_pandas(chunk, preserve_index=False))
    return bundle.path, path


def run_score(bundle: Path, source: Path, output: Path, *extra: str) -> dict[str, Any]:
    """One `servekit score` process: wall time, its summary, and peak RSS (MB) of its largest
    process (for the Dask engine: the driver or a worker, whichever peaked higher)."""
    command = [SERVEKIT, "score", str(bundle), str(source), "-o", str(output), "--json", "-q", "--force", *extra]
    peak_file = output.with_suffix(".peak")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, str(peak_file), *command],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    summary = json.loads(done.stdout)
    return {
        "wall_s": wall,
        "rows": summary["rows_read"],
        "rows_per_s": summary["rows_read"] / wall,
        "peak_rss_mb": int(peak_file.read_text()) / 1024,
        "summary": summary,
    }


def floors(bundle: Path, source: Path, rows: int) -> dict[str, Any]:
    """The Predictor alone on in-memory chunks, and pyarrow's parser alone on the file."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pcsv

    import servekit

    predictor = servekit.load(bundle)
    names = predictor.signature.names
    sample = pcsv.read_csv(source, read_options=pcsv.ReadOptions(block_size=8 << 20)).slice(0, FLOOR_CHUNK)
    frame = sample.select(names).to_pandas()
    batch = predictor.batch(frame.iloc[:1])  # the canonical form (DataFrame or array) ...
    batch = frame if hasattr(batch, "columns") else frame.to_numpy()  # ... for a whole chunk
    predictor.predict_batch(batch)
    start = time.perf_counter()
    for _ in range(0, rows, FLOOR_CHUNK):
        predictor.predict_batch(batch)
    predict_s = time.perf_counter() - start
    start = time.perf_counter()
    types = {c: pa.float64() for c in names}
    table = pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(column_types=types))
    parse_s = time.perf_counter() - start
    del table
    return {
        "runtime": predictor.runtime.format,
        "variant": predictor.variant,
        "predict_s": predict_s,
        "predict_rows_per_s": rows / predict_s,
        "predict_us_per_row": predict_s / rows * 1e6,
        "parse_s": parse_s,
        "parse_rows_per_s": rows / parse_s,
        "batch_kind": "DataFrame" if isinstance(batch, pd.DataFrame) else "array",
    }


def machine() -> dict[str, str]:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "unknown")
    kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    versions = {p: _version(p) for p in ("servekit", "scikit-learn", "onnxruntime", "pyarrow", "dask", "distributed")}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": f"{kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        **versions,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def render(result: dict[str, Any]) -> str:
    m, rows = result["machine"], result["rows"]
    local, floor = result["local"], result["floor"]
    lines = [
        f"# Batch scoring benchmark ({rows:,} rows x 30 features, CSV in, Parquet out)",
        "",
        f"- date: {m['date']}; machine: {m['cores']} cores, {m['cpu']}, {m['ram']} RAM; "
        f"1-min load average {result['loadavg_before']} before, {m['loadavg']} after",
        f"- versions: Python {m['python']}, servekit {m['servekit']}, scikit-learn {m['scikit-learn']}, "
        f"onnxruntime {m['onnxruntime']}, pyarrow {m['pyarrow']}, dask {m['dask']}",
        f"- input: {result['input_mb']:.0f} MB CSV; model: StandardScaler + LogisticRegression, "
        f"runtime {floor['runtime']} ({floor['variant'] or 'original'}), batch as {floor['batch_kind']}",
        "",
        "| run | wall | rows/s | peak RSS |",
        "| --- | ---: | ---: | ---: |",
        _row("local engine (`servekit score`)", local),
    ]
    if result.get("dask"):
        lines.append(_row("dask engine, local cluster of 2 workers started by the run", result["dask"]))
    if result.get("dask_running_cluster"):
        warm = dict(result["dask_running_cluster"], peak_rss_mb=None)  # the workers are not the run's
        lines.append(_row("dask engine, `--scheduler` of a running 2-worker cluster", warm))
    lines += [
        f"| floor: Predictor alone, in-memory chunks of {FLOOR_CHUNK:,} | {floor['predict_s']:.2f} s | "
        f"{floor['predict_rows_per_s']:,.0f} ({floor['predict_us_per_row']:.2f} µs/row) | — |",
        f"| pyarrow read_csv alone (all threads) | {floor['parse_s']:.2f} s | {floor['parse_rows_per_s']:,.0f} | — |",
        "",
        "| target | wanted | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for name, wanted, measured, ok in result["targets"]:
        lines.append(f"| {name} | {wanted} | {measured} | {'✅' if ok else '❌'} |")
    if result.get("dask"):
        overhead = result["dask"]["wall_s"] / local["wall_s"]
        lines += ["", f"Dask engine / local engine wall time: {overhead:.2f}x (cluster started by the run)"]
    if result.get("dask_running_cluster"):
        overhead = result["dask_running_cluster"]["wall_s"] / local["wall_s"]
        lines[-1] += f", {overhead:.2f}x (cluster already running)."
    return "\n".join(lines) + "\n"


def _row(name: str, run: dict[str, Any]) -> str:
    rss = f"{run['peak_rss_mb']:.0f} MB" if run.get("peak_rss_mb") else "—"
    return f"| {name} | {run['wall_s']:.2f} s | {run['rows_per_s']:,.0f} | {rss} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print its path")
    parser.add_argument("--work", type=Path, help="work folder to reuse (built there once, kept)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="servekit-batch-bench-"))
    keep = args.keep or args.work is not None
    loadavg_before = Path("/proc/loadavg").read_text().split()[0]
    try:
        built = work / f"built-{args.rows}"
        if built.exists():
            bundle, source = work / "logreg.bundle", work / "input.csv"
        else:
            print(f"building the model and {args.rows:,} rows in {work} ...", flush=True)
            work.mkdir(parents=True, exist_ok=True)
            for old in work.glob("built-*"):
                old.unlink()
            shutil.rmtree(work / "logreg.bundle", ignore_errors=True)
            bundle, source = build(work, args.rows)
            built.touch()
        print("local engine ...", flush=True)
        local = run_score(bundle, source, work / "local.parquet")
        dask = None
        warm = None
        if not args.skip_dask:
            print("dask engine ...", flush=True)
            dask = run_score(bundle, source, work / "dask.parquet", "--engine", "dask", "--workers", "2")
            _same_rows(work / "local.parquet", work / "dask.parquet")
            print("dask engine, cluster already running ...", flush=True)
            warm = _on_running_cluster(bundle, source, work / "warm.parquet")
            _same_rows(work / "local.parquet", work / "warm.parquet")
        print("floors ...", flush=True)
        floor = floors(bundle, source, args.rows)
        result: dict[str, Any] = {
            "rows": args.rows,
            "input_mb": source.stat().st_size / 1e6,
            "loadavg_before": loadavg_before,
            "local": local,
            "dask": dask,
            "dask_running_cluster": warm,
            "floor": floor,
        }
        result["targets"] = [
            (
                "local engine, end to end",
                f"≥ {TARGET_ROWS_PER_S:,} rows/s",
                f"{local['rows_per_s']:,.0f} rows/s",
                local["rows_per_s"] >= TARGET_ROWS_PER_S,
            ),
            (
                "peak RSS, local engine",
                f"≤ {TARGET_RSS_MB} MB",
                f"{local['peak_rss_mb'] or 0:.0f} MB",
                (local["peak_rss_mb"] or 0) <= TARGET_RSS_MB,
            ),
        ]
        result["machine"] = machine()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "batch.json").write_text(json.dumps(result, indent=2, default=str))
        text = render(result)
        (args.out / "batch.md").write_text(text)
        print(text)
    finally:
        if keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _on_running_cluster(bundle: Path, source: Path, output: Path) -> dict[str, Any]:
    """The Dask engine on a loopback cluster started beforehand (its start-up not counted)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        return run_score(bundle, source, output, "--engine", "dask", "--scheduler", cluster.scheduler_address)


def _same_rows(a: Path, b: Path) -> None:
    import pyarrow.parquet as pq

    if not pq.read_table(a).equals(pq.read_table(b)):
        raise SystemExit("the Dask engine's output differs from the local engine's")


if __name__ == "__main__":
    sys.exit(main())
