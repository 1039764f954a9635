"""The HTTP fast path (`servekit.server.fastpath`) in a real `servekit serve` process: the same
answers as the ASGI way, keep-alive, pipelining, HTTP/1.0 and `Connection: close`, a client that
leaves before its answer."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_hotpath import CASES, SETOSA
from tests.support import ServerProcess, iris_bundle, iris_model

LIMIT = 4096
# An over-limit body is refused by its declared length or, chunked, while it streams in (two
# different messages): both are tested elsewhere.
FAST_CASES = [case for case in CASES if len(case[1]) <= LIMIT]
SETOSA_BODY = json.dumps({"features": SETOSA}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    bundle = iris_bundle(tmp_path_factory.mktemp("fast"))
    env = {"SERVEKIT_MAX_BODY_BYTES": str(LIMIT), "SERVEKIT_MAX_ROWS": "5"}
    with ServerProcess(["serve", str(bundle), "--trust"], env=env) as process:
        yield process.wait_ready()


def _post(server: ServerProcess, path: str, body: bytes, headers: dict[str, str], *, chunked: bool):
    """(status, header names, content type, JSON or bytes) of one POST on a fresh connection;
    `chunked` sends the body with chunked transfer encoding, which the fast path leaves to ASGI."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        sent = {"content-type": "application/json", **headers}
        if chunked:
            conn.request("POST", path, body=iter([body] if body else []), headers=sent, encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=sent)
        response = conn.getresponse()
        content = response.read()
        names = sorted(name.lower() for name, _ in response.getheaders() if name.lower() != "date")
        media = response.getheader("content-type", "")
        request_id = response.getheader("x-request-id")
    finally:
        conn.close()
    if not media.endswith("json"):
        return response.status, names, media, content
    data = json.loads(content)
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict):
            assert item.pop("request_id", request_id) == request_id
    return response.status, names, media, data


@pytest.mark.parametrize(("path", "body", "headers"), FAST_CASES)
def test_fast_path_answers_as_the_asgi_way(server, path: str, body: bytes, headers: dict[str, str]) -> None:
    fast = _post(server, path, body, headers, chunked=False)
    asgi = _post(server, path, body, headers, chunked=True)
    assert fast == asgi


def _request(path: str, body: bytes, request_id: str, *, version: str = "1.1", extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/{version}\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def _responses(sock: socket.socket, count: int, timeout: float = 10) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` HTTP responses read off `sock` (each with a Content-Length), in order."""
    sock.settimeout(timeout)
    data, found = b"", []
    while len(found) < count:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {len(found)} answers"
        data += chunk
        while (end := data.find(b"\r\n\r\n")) >= 0:
            lines = data[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            length = int(headers["content-length"])
            if len(data) < end + 4 + length:
                break
            found.append((int(lines[0].split()[1]), headers, data[end + 4 : end + 4 + length]))
            data = data[end + 4 + length :]
    return found


def test_pipelined_requests_are_answered_in_order(server) -> None:
    bad = b'{"features": [1, 2]}'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            _request("/predict", SETOSA_BODY, "first")
            + _request("/v1/models/iris/predict", bad, "second")
            + _request("/v1/models/iris/predict", SETOSA_BODY, "third")
        )
        answers = _responses(sock, 3)
    assert [(status, headers["x-request-id"]) for status, headers, _ in answers] == [
        (200, "first"),
        (422, "second"),
        (200, "third"),
    ]
    assert json.loads(answers[0][2])["prediction"] == "setosa"
    assert json.loads(answers[2][2])["predictions"][0]["prediction"] == "setosa"


def test_one_connection_keeps_answering(server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.connect()
        first = conn.sock
        for index in range(50):
            conn.request("POST", "/predict", body=SETOSA_BODY, headers={"X-Request-ID": f"keep-{index}"})
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("x-request-id") == f"keep-{index}"
            assert json.loads(response.read())["prediction"] == "setosa"
        assert conn.sock is first  # never reconnected
    finally:
        conn.close()


@pytest.mark.parametrize(("version", "extra"), [("1.0", ""), ("1.1", "Connection: close\r\n")])
def test_an_answer_that_ends_the_connection_says_so(server, version: str, extra: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_request("/predict", SETOSA_BODY, "last", version=version, extra=extra))
        [(status, headers, body)] = _responses(sock, 1)
        assert status == 200 and headers["connection"] == "close" and json.loads(body)["prediction"] == "setosa"
        sock.settimeout(10)
        assert sock.recv(1024) == b""  # and the server closes it


def test_a_client_that_leaves_is_recorded_as_499(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    model, _ = iris_model(tmp_path, name="slow.joblib", trees=500)
    body = json.dumps({"instances": np.tile(load_iris().data, (20, 1)).tolist()}).encode()
    with ServerProcess(["serve", str(model), "--trust"]) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(_request("/v1/models/slow/predict", body, "gone-early"))
        with socket.create_connection(("127.0.0.1", server.port)) as sock:  # the server goes on serving
            sock.sendall(_request("/v1/models/slow/predict", body, "stayed"))
            [(status, _, answer)] = _responses(sock, 1, timeout=30)
            assert status == 200 and len(json.loads(answer)["predictions"]) == 3000
        ours = ("gone-early", "stayed")
        deadline = time.monotonic() + 10
        while not all(f'"request_id":"{rid}"' in server.log() for rid in ours) and time.monotonic() < deadline:
            time.sleep(0.05)  # access lines are written off the request path
        lines = [json.loads(line) for line in server.log().splitlines() if '"request_id":"' in line]
    statuses = [(line["request_id"], line["status"]) for line in lines if line["request_id"] in ours]
    assert sorted(statuses) == [("gone-early", 499), ("stayed", 200)]
    assert "Traceback" not in server.log()
