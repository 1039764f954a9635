"""Several workers on Linux: each listens on a socket of its own (SO_REUSEPORT), a replacement
worker gets one too, `reuse_port: false` keeps uvicorn's one shared socket; a port that is
already taken is refused with one line before any model loads, with one worker or several."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_faults import _models_ready
from tests.e2e.test_serve import _ready_everywhere, _workers
from tests.support import SERVEKIT, ServerProcess, iris_bundle, one_line_error

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading is Linux's")

LISTEN = "0A"  # the TCP state in /proc/net/tcp


def listeners(pid: int, port: int) -> int:
    """How many sockets of process `pid` listen on 127.0.0.1:`port`."""
    return len(_listening_inodes(pid, port))


def started(server: ServerProcess, count: int = 2) -> list[int]:
    """The worker pids once `count` of them answer fresh connections."""
    server.wait_ready()
    deadline = time.monotonic() + 60
    while not (len(workers := _workers(server.process.pid)) == count and _ready_everywhere(server)):
        assert time.monotonic() < deadline, (workers, server.log()[-2000:])
        time.sleep(0.1)
    return workers


def test_each_worker_listens_on_its_own_socket_and_a_replacement_too(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    with ServerProcess(["serve", str(bundle), "--trust", "--workers", "2"]) as server:
        workers = started(server)
        assert [listeners(pid, server.port) for pid in workers] == [1, 1]
        assert listeners(server.process.pid, server.port) == 0  # the supervisor only holds the address
        # The workers' sockets are distinct: each has its own inode.
        sockets = [_listening_inodes(pid, server.port) for pid in workers]
        assert sockets[0].isdisjoint(sockets[1]), sockets

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            now = _workers(server.process.pid)
            replaced = len(now) == 2 and workers[0] not in now and all(listeners(pid, server.port) == 1 for pid in now)
            if replaced and _models_ready(server) >= 3 and _ready_everywhere(server):  # the new one loaded too
                break
            assert time.monotonic() < deadline, (now, server.log()[-3000:])
            time.sleep(0.2)
        with server.client() as client:
            assert client.post("/v1/models/iris/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}).status_code == 200
        assert server.terminate() == 0


def test_reuse_port_false_keeps_one_shared_socket(tmp_path: Path) -> None:
    bundle = iris_bundle(tmp_path)
    env = {"SERVEKIT_REUSE_PORT": "false"}
    with ServerProcess(["serve", str(bundle), "--trust", "--workers", "2"], env=env) as server:
        workers = started(server)
        sockets = [_listening_inodes(pid, server.port) for pid in workers]
        assert sockets[0] == sockets[1] and len(sockets[0]) == 1, sockets  # the same socket, inherited
        assert server.terminate() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_with_one_line_before_loading(tmp_path: Path, workers: str) -> None:
    bundle = iris_bundle(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [SERVEKIT, "serve", str(bundle), "--trust", "--workers", workers, "--port", str(port)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    line = one_line_error(result)
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line, line  # and no uvicorn log


def _listening_inodes(pid: int, port: int) -> set[str]:
    """The inodes of the sockets that `pid` holds and that listen on 127.0.0.1:`port`."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[len("socket:[") : -1])
    local = f"0100007F:{port:04X}"
    lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    return {f[9] for f in (line.split() for line in lines) if f[1] == local and f[3] == LISTEN and f[9] in held}
