"""The Dask engine on a real `distributed.LocalCluster` of 2 workers: the local engine's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from servekit.batch import score
from servekit.batch.dask_engine import worker_loads
from servekit.packing import pack
from tests.support import IRIS_FEATURES, iris_model

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An iris forest bundle with its verified ONNX variant."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("dask-model")
    path, _ = iris_model(folder)
    sample = pd.DataFrame(load_iris().data, columns=IRIS_FEATURES)
    return pack(path, output=folder / "iris.bundle", features=IRIS_FEATURES, sample=sample, trust=True).path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 rows with an id, an extra column and a few bad rows."""
    from sklearn.datasets import load_iris

    frame = pd.DataFrame(np.resize(load_iris().data, (600, 4)), columns=IRIS_FEATURES)
    frame.insert(0, "id", range(600))
    frame["batch"] = "b" + (frame["id"] // 100).astype(str)
    frame.loc[[17, 301, 599], "petal_width"] = np.nan
    path = tmp_path_factory.mktemp("dask-input") / "in.csv"
    frame.to_csv(path, index=False)
    with path.open("a") as handle:
        handle.write("600,1,2,word,4,b6\n")
    return path


def test_dask_gives_the_local_engines_rows_and_ships_the_model_once(
    tmp_path: Path, cluster: Any, bundle: Path, source: Path
) -> None:
    options = {"chunk_size": 50, "keep": ["batch"]}
    local = score(bundle, source, tmp_path / "local.parquet", **options)
    remote = score(
        bundle, source, tmp_path / "dask.parquet", engine="dask", scheduler=cluster.scheduler_address, **options
    )
    assert remote.chunks == local.chunks >= 10  # more partitions than workers
    assert remote.scheduler == cluster.scheduler_address and remote.engine == "dask"
    assert (remote.rows_read, remote.rows_scored, remote.rows_failed) == (601, 597, 4)
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    assert remote.errors is not None and local.errors is not None
    assert remote.errors.read_text() == local.errors.read_text()
    with distributed.Client(cluster.scheduler_address) as client:
        loads = client.run(worker_loads)
    assert len(loads) == 2
    for per_model in loads.values():  # each worker loaded the model once, the same variant as here
        assert list(per_model.values()) == [{"loads": 1, "runtime": "onnx", "variant": "onnx"}]


def test_a_run_interrupted_locally_resumes_on_dask(tmp_path: Path, cluster: Any, bundle: Path, source: Path) -> None:
    class Stop:
        def start(self, total: int, done: int, rows: int) -> None: ...

        def advance(self, weight: int, rows: int) -> None:
            raise KeyboardInterrupt

        def finish(self) -> None: ...

    whole = score(bundle, source, tmp_path / "whole.csv", chunk_size=100)
    with pytest.raises(KeyboardInterrupt):
        score(bundle, source, tmp_path / "out.csv", chunk_size=100, progress=Stop())
    resumed = score(
        bundle, source, tmp_path / "out.csv", chunk_size=100, resume=True, engine="dask",
        scheduler=cluster.scheduler_address,
    )  # fmt: skip
    assert resumed.resumed_rows > 0 and resumed.rows_read == whole.rows_read
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
