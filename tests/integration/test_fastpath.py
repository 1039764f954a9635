"""Which requests the HTTP fast path answers itself, and which it leaves to ASGI (uvicorn with
`ServekitHttpProtocol`, serving the real app on a real socket, in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from servekit.server import create_app, fastpath
from servekit.settings import Settings
from tests.support import free_port, iris_bundle

SETOSA = {"features": [5.1, 3.5, 1.4, 0.2]}
ORIGIN = "https://app.example"


@contextmanager
def serving(settings: Settings, root_path: str = "") -> Iterator[str]:
    """The app of `settings` under uvicorn with the fast-path protocol, in a thread: its URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        http=fastpath.ServekitHttpProtocol,
        loop="uvloop",
        log_level="warning",
        root_path=root_path,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        models=[str(iris_bundle(tmp_path_factory.mktemp("fastpath")))],
        trust=True,
        cors_origins=[ORIGIN],
        home=tmp_path_factory.mktemp("home"),
    )
    with serving(settings) as url:
        yield url


@pytest.fixture
def fast_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests the fast path answers."""
    seen: list[str] = []
    original = fastpath._Exchange.start

    def start(self) -> None:
        seen.append(self.path)
        original(self)

    monkeypatch.setattr(fastpath._Exchange, "start", start)
    return seen


def test_plain_predictions_take_the_fast_path(served: str, fast_answers: list[str]) -> None:
    with httpx.Client(base_url=served) as client:
        assert client.post("/v1/models/iris/predict", json=SETOSA).json()["predictions"][0]["prediction"] == "setosa"
        assert client.post("/v1/models/iris/versions/latest/predict", json=SETOSA).status_code == 200
        assert client.post("/predict", json=SETOSA).json()["prediction"] == "setosa"
        assert client.post("/predict/batch", json=[SETOSA, SETOSA]).status_code == 200
        assert client.post("/v1/models/iris/predict", json={"features": [1]}).status_code == 422
        csv = client.post("/v1/models/iris/predict", content=b"a,b", headers={"content-type": "text/csv"})
        assert csv.status_code == 415
        infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA["features"]}]}
        assert client.post("/v2/models/iris/infer", json=infer).json()["outputs"][0]["data"] == ["setosa"]
        assert client.post("/v2/models/iris/versions/latest/infer", json=infer).status_code == 200
    assert fast_answers == [
        "/v1/models/iris/predict",
        "/v1/models/iris/versions/latest/predict",
        "/predict",
        "/predict/batch",
        "/v1/models/iris/predict",
        "/v1/models/iris/predict",
        "/v2/models/iris/infer",
        "/v2/models/iris/versions/latest/infer",
    ]


def test_everything_else_takes_the_asgi_way(served: str, fast_answers: list[str]) -> None:
    with httpx.Client(base_url=served) as client:
        assert client.get("/v1/models/iris").status_code == 200
        chunked = client.post("/predict", content=iter([b'{"features": [5.1, 3.5, 1.4, 0.2]}']))
        assert chunked.json()["prediction"] == "setosa"
        cors = client.post("/predict", json=SETOSA, headers={"origin": ORIGIN})
        assert cors.status_code == 200 and cors.headers["access-control-allow-origin"] == ORIGIN
        assert client.post("/v1/models/iris/pre%64ict", json=SETOSA).status_code == 200  # percent-encoded
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        body = b'{"features": [5.1, 3.5, 1.4, 0.2]}'
        head = f"POST /predict HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode())
        sock.settimeout(10)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while b'"confidence"' not in answer:
            chunk = sock.recv(4096)
            assert chunk
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
    assert fast_answers == []


def test_mounting_under_a_root_path_changes_nothing(tmp_path: Path, fast_answers: list[str]) -> None:
    settings = Settings(models=[str(iris_bundle(tmp_path))], trust=True, home=tmp_path / "home")
    with serving(settings, root_path="/ml") as url:
        bad = httpx.post(f"{url}/v1/models/iris/predict", json={"features": [1]})
        assert bad.status_code == 422 and bad.json()["instance"] == "/ml/v1/models/iris/predict"
    assert fast_answers == ["/ml/v1/models/iris/predict"]
