"""The benchmark's models and request bodies, built from sklearn's bundled datasets into a
work folder: a joblib file for the reference server and a `servekit pack`ed bundle for servekit."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAMES = ("forest", "gboost", "logreg")
MANY_ROWS = 1000
PACK_TIMEOUT_S = 300


@dataclass
class BenchModel:
    """One model, in both forms, with its request bodies."""

    name: str
    title: str
    joblib: Path
    bundle: Path
    row: list[float]
    bodies: dict[str, Path]
    oip_header_lengths: dict[str, int]
    """Value of `Inference-Header-Content-Length` for each OIP binary body."""
    pack_output: str = ""


def _estimator(name: str) -> tuple[str, Any, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "forest":
        data = load_iris()
        return "RandomForest, 100 trees (iris, 4 features)", RandomForestClassifier(100, random_state=0), *_xy(data)
    data = load_breast_cancer()
    if name == "gboost":
        model = make_pipeline(StandardScaler(), GradientBoostingClassifier(random_state=0))
        return "StandardScaler + GradientBoosting (breast_cancer, 30 features)", model, *_xy(data)
    if name == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        return "StandardScaler + LogisticRegression (breast_cancer, 30 features)", model, *_xy(data)
    raise ValueError(f"unknown model {name!r}")


def _xy(data: Any) -> tuple[np.ndarray, np.ndarray]:
    # Fitted on plain arrays, as the reference server sends them: no feature-name warnings.
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target)


def build_model(name: str, work: Path) -> BenchModel:
    """Train, save with joblib, pack with `servekit pack --sample train.csv --trust`, write bodies."""
    import joblib
    import pandas as pd

    title, estimator, x, y = _estimator(name)
    estimator.fit(x, y)
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / f"{name}.joblib"
    joblib.dump(estimator, model_file)
    sample = folder / "train.csv"
    pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).to_csv(sample, index=False)
    bundle = folder / f"{name}.bundle"
    servekit = str(Path(sys.executable).with_name("servekit"))
    command = [servekit, "pack", str(model_file), "--name", name, "--sample", str(sample), "--trust"]
    command += ["--output", str(bundle), "--force"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PACK_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"servekit pack {name} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    row = [float(v) for v in x[0]]
    bodies, header_lengths = write_bodies(folder / "bodies", row, x)
    return BenchModel(name, title, model_file, bundle, row, bodies, header_lengths, done.stdout.strip())


def write_bodies(folder: Path, row: list[float], x: np.ndarray) -> tuple[dict[str, Path], dict[str, int]]:
    """Every request body the benchmark sends, written once; OIP binary header lengths."""
    folder.mkdir(parents=True, exist_ok=True)
    many = np.resize(x, (MANY_ROWS, x.shape[1]))  # the dataset's rows, repeated up to MANY_ROWS
    invalid = list[Any](row)
    invalid[1] = "x"  # a string feature: must be a 4xx, never a 5xx
    oip_row, oip_row_header = oip_binary_body(np.asarray([row], dtype="<f8"))
    oip_many, oip_many_header = oip_binary_body(many)
    bodies = {
        "row": json.dumps({"features": row}).encode(),
        "invalid": json.dumps({"features": invalid}).encode(),
        "many": json.dumps({"instances": many.tolist()}).encode(),
        "oip_row": oip_row,
        "oip_many": oip_many,
    }
    paths = {}
    for key, content in bodies.items():
        path = folder / f"{key}.body"
        path.write_bytes(content)
        paths[key] = path
    return paths, {"oip_row": oip_row_header, "oip_many": oip_many_header}


def oip_binary_body(rows: np.ndarray) -> tuple[bytes, int]:
    """An OIP v2 request with the binary tensor data extension (JSON header + raw little-endian
    FP64 bytes) and the length of its JSON header, for `Inference-Header-Content-Length`.

    Outputs are asked for as binary too, as binary-tensor clients (tritonclient) do.
    """
    raw = np.ascontiguousarray(rows, dtype="<f8").tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + raw, len(encoded)
