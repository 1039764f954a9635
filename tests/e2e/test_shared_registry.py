"""Several servers sharing one registry: SERVEKIT_DATABASE_URL and SERVEKIT_STORE_URL instead of a
per-machine home (here a SQLite file and a folder standing in for PostgreSQL and object storage)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.test_serve import servekit
from tests.support import ServerProcess, iris_bundle


def test_two_homes_share_one_registry_and_one_prediction_log(tmp_path: Path) -> None:
    shared = {
        "SERVEKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'shared' / 'registry.db'}",
        "SERVEKIT_STORE_URL": str(tmp_path / "shared" / "models"),
    }
    bundle = iris_bundle(tmp_path)
    first = {**shared, "SERVEKIT_HOME": str(tmp_path / "home-a")}
    second = {**shared, "SERVEKIT_HOME": str(tmp_path / "home-b")}
    assert servekit("push", str(bundle), "--trust", env=first).returncode == 0
    assert servekit("promote", "iris", "1", env=first).returncode == 0
    listed = servekit("models", "--json", env=second)
    assert listed.returncode == 0 and '"iris"' in listed.stdout
    with ServerProcess(["serve", "iris@production"], env=second) as server:
        server.wait_ready()
        with server.client() as client:
            answer = client.post("/v1/models/iris/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
        assert answer.status_code == 200 and answer.json()["version"] == 1
        assert server.terminate() == 0
    with sqlite3.connect(tmp_path / "shared" / "registry.db") as db:
        assert db.execute("SELECT sum(records) FROM prediction_log_blocks").fetchone()[0] == 1
    assert not (tmp_path / "home-b" / "registry.db").exists()
