"""`servekit.client`: against a real `servekit serve` process, and against tiny misbehaving HTTP
servers (real sockets on 127.0.0.1) that count what they receive."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from servekit import errors
from servekit.client import (
    AsyncClient,
    Client,
    Forbidden,
    PredictionResult,
    RateLimited,
    RetryPolicy,
    TimedOut,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
)
from tests.support import IRIS_FEATURES, ServerProcess, free_port, iris_bundle

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
CLASSES = ["setosa", "versicolor", "virginica"]


# --- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("client")
    bundle = iris_bundle(tmp)
    with ServerProcess(["serve", str(bundle), "--trust"], env={"SERVEKIT_HOME": str(tmp / "home")}) as process:
        yield process.wait_ready()


def test_predict_one_row_as_list_and_dict(server: ServerProcess) -> None:
    with Client(server.url) as client:
        one = client.predict("iris", SETOSA)
        named = client.predict("iris", dict(zip(IRIS_FEATURES, VIRGINICA, strict=True)))
    assert isinstance(one, PredictionResult)
    assert (one.model, len(one), one.labels) == ("iris", 1, ["setosa"])
    assert list(one.probabilities[0]) == CLASSES
    assert one[0]["confidence"] == max(one.probabilities[0].values())
    assert one.request_id and one.request_id != named.request_id
    assert named.labels == named.values == ["virginica"]


def test_predict_many_rows_array_and_frame(server: ServerProcess) -> None:
    frame = pd.DataFrame([SETOSA, VIRGINICA], columns=IRIS_FEATURES)
    with Client(server.url) as client:
        rows = client.predict("iris", [SETOSA, VIRGINICA])
        array = client.predict("iris", np.array([SETOSA, VIRGINICA, SETOSA]))
        row_array = client.predict("iris", np.array(VIRGINICA, dtype=np.float32))
        framed = client.predict("iris", frame)
        batch = client.predict_batch("iris", [tuple(SETOSA)], version="latest")
        latest = client.predict("iris", SETOSA, version="latest")
    assert rows.labels == framed.labels == ["setosa", "virginica"]
    assert array.labels == ["setosa", "virginica", "setosa"]
    assert row_array.labels == ["virginica"]
    assert [p["prediction"] for p in framed] == ["setosa", "virginica"]
    assert batch.labels == latest.labels == ["setosa"]
    assert latest.version == rows.version


def test_models_model_and_probes(server: ServerProcess) -> None:
    with Client(server.url + "/") as client:
        assert [m["name"] for m in client.models()] == ["iris"]
        detail = client.model("iris")
        assert client.ready() and client.live()
    assert detail["classes"] == CLASSES
    assert [f["name"] for f in detail["signature"]["features"]] == IRIS_FEATURES


def test_server_errors_become_servekit_errors(server: ServerProcess) -> None:
    with Client(server.url, retries=2, backoff=0.01) as client:
        with pytest.raises(errors.ModelNotFound, match="no model named 'nope'") as missing:
            client.predict("nope", SETOSA)
        with pytest.raises(errors.VersionNotFound):
            client.predict("iris", SETOSA, version="7")
        with pytest.raises(errors.InvalidInput, match="4 values") as invalid:
            client.predict("iris", [1.0, 2.0, 3.0])
        with pytest.raises(errors.InvalidInput, match="predict_batch takes a list of rows"):
            client.predict_batch("iris", SETOSA)
    assert missing.value.request_id  # type: ignore[attr-defined]
    assert invalid.value.problem["status"] == 422  # type: ignore[attr-defined]
    assert str(invalid.value) == invalid.value.problem["detail"]  # type: ignore[attr-defined]


def test_async_client_against_the_server(server: ServerProcess) -> None:
    async def main() -> tuple[PredictionResult, ...]:
        async with AsyncClient(server.url) as client:
            assert await client.ready() and await client.live()
            assert [m["name"] for m in await client.models()] == ["iris"]
            assert (await client.model("iris"))["classes"] == CLASSES
            with pytest.raises(errors.ModelNotFound):
                await client.predict("nope", SETOSA)
            return await asyncio.gather(
                client.predict("iris", SETOSA),
                client.predict("iris", dict(zip(IRIS_FEATURES, VIRGINICA, strict=True)), version="latest"),
                client.predict("iris", np.array([SETOSA, VIRGINICA])),
                client.predict_batch("iris", pd.DataFrame([VIRGINICA], columns=IRIS_FEATURES)),
            )

    one, named, array, frame = asyncio.run(main())
    assert one.labels == ["setosa"]
    assert named.labels == ["virginica"]
    assert array.labels == ["setosa", "virginica"]
    assert frame.labels == ["virginica"]


def test_probes_are_false_when_nothing_listens() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout=1) as client:
        assert not client.live()
        assert not client.ready()


# --- misbehaving servers -------------------------------------------------------------------------

PREDICTION = {"model": "m", "version": "1", "predictions": [{"prediction": 7.5}], "request_id": "abc"}


@dataclass
class Reply:
    status: int = 200
    body: object = field(default_factory=lambda: PREDICTION)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def problem(status: int, title: str, detail: str = "it went wrong") -> Reply:
    return Reply(status, {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": "/"})


class Scripted:
    """An HTTP server answering each request with the next scripted reply (the last one repeats),
    recording what it received."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.received: list[dict[str, object]] = []
        self.times: list[float] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                index = len(script.received)
                script.times.append(time.monotonic())
                script.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = script.replies[min(index, len(script.replies) - 1)]
                time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def count(self) -> int:
        return len(self.received)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fast(url: str, **options: object) -> Client:
    return Client(url, **{"retries": 3, "backoff": 0.01, "timeout": 2.0, **options})  # type: ignore[arg-type]


def test_503_with_retry_after_is_retried_until_success() -> None:
    busy = problem(503, "Overloaded", "the queue is full")
    busy.headers["Retry-After"] = "0"
    with Scripted(busy, busy, Reply()) as server, fast(server.url) as client:
        result = client.predict("m", [1, 2])
    assert server.count == 3
    assert result.values == [7.5] and result.probabilities == [{}]
    assert json.loads(server.received[-1]["body"]) == {"features": [1, 2]}  # type: ignore[arg-type]


def test_429_is_retried_with_backoff_when_no_retry_after() -> None:
    with Scripted(problem(429, "Too Many Requests"), Reply()) as server, fast(server.url) as client:
        assert client.predict("m", [1]).values == [7.5]
    assert server.count == 2


def test_503_given_up_after_the_retries() -> None:
    with (
        Scripted(problem(503, "Model not ready", "loading")) as server,
        fast(server.url, retries=2) as client,
        pytest.raises(errors.ModelNotReady, match="loading"),
    ):
        client.predict("m", [1])
    assert server.count == 3


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (problem(400, "Malformed request"), errors.MalformedRequest),
        (problem(401, "Unauthorized"), Unauthorized),
        (problem(403, "Forbidden"), Forbidden),
        (problem(404, "Model not found"), errors.ModelNotFound),
        (problem(404, "Version not found"), errors.VersionNotFound),
        (problem(413, "Payload too large"), errors.PayloadTooLarge),
        (problem(415, "Unsupported media type"), errors.UnsupportedMediaType),
        (problem(422, "Invalid input"), errors.InvalidInput),
        (problem(500, "Prediction failed"), errors.PredictionFailed),
        (Reply(418, b"<html>teapot</html>"), UnexpectedResponse),
    ],
)
def test_client_errors_are_never_retried(reply: Reply, error: type[errors.ServekitError]) -> None:
    with Scripted(reply, Reply()) as server, fast(server.url) as client, pytest.raises(error) as raised:
        client.predict("m", [1])
    assert type(raised.value) is error
    assert server.count == 1
    if isinstance(reply.body, dict):
        assert str(raised.value) == "it went wrong"
    else:
        assert int(raised.value.status) == 418 and "teapot" in str(raised.value)


def test_retry_after_is_honoured() -> None:
    busy = problem(503, "Overloaded")
    busy.headers["Retry-After"] = "1"
    with Scripted(busy, Reply()) as server, fast(server.url, backoff=0.05) as client:
        client.predict("m", [1])
    assert server.count == 2
    assert 1.0 <= server.times[1] - server.times[0] < 1.5


def test_retry_after_longer_than_max_backoff_raises_at_once() -> None:
    limited = problem(429, "Too Many Requests")
    limited.headers["Retry-After"] = "60"
    with (
        Scripted(limited, Reply()) as server,
        fast(server.url, max_backoff=2) as client,
        pytest.raises(RateLimited) as raised,
    ):
        client.predict("m", [1])
    assert server.count == 1 and raised.value.retry_after == 60


def test_gateway_timeout_is_retried_once_only() -> None:
    with (
        Scripted(problem(504, "Prediction timed out")) as server,
        fast(server.url, retries=5) as client,
        pytest.raises(errors.PredictionTimeout),
    ):
        client.predict("m", [1])
    assert server.count == 2


def test_bad_gateway_page_is_retried_then_raised() -> None:
    with (
        Scripted(Reply(502, b"<html>bad gateway</html>")) as server,
        fast(server.url, retries=2) as client,
        pytest.raises(UnexpectedResponse, match="502 Bad Gateway"),
    ):
        client.models()
    assert server.count == 3


def test_api_key_and_headers_are_sent() -> None:
    with Scripted(Reply(200, [])) as server, fast(server.url, api_key="s3cret", headers={"X-Team": "ml"}) as client:
        assert client.models() == []
    headers = {k.lower(): v for k, v in server.received[0]["headers"].items()}  # type: ignore[attr-defined]
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-team"] == "ml"
    assert server.received[0]["path"] == "/v1/models"


def test_connection_refused_gives_unreachable_after_backoff() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, retries=3, backoff=0.1) as client, pytest.raises(Unreachable, match="cannot reach") as raised:
        client.predict("m", [1])
    elapsed = time.monotonic() - started
    assert raised.value.attempts == 4 and raised.value.url.startswith(url)
    assert elapsed < 0.1 + 0.2 + 0.4 + 0.5  # full jitter never waits more than backoff * 2**n


def test_dropped_connections_are_retried() -> None:
    accepted = 0
    listener = socket.create_server(("127.0.0.1", 0))

    def drop() -> None:
        nonlocal accepted
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted += 1
            conn.close()

    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    try:
        with (
            fast(f"http://127.0.0.1:{listener.getsockname()[1]}", retries=2) as client,
            pytest.raises(Unreachable) as raised,
        ):
            client.predict("m", [1])
    finally:
        listener.close()
    assert raised.value.attempts == accepted == 3


def test_slow_server_times_out_on_every_attempt() -> None:
    with Scripted(Reply(delay=0.5)) as server, fast(server.url, retries=2, timeout=0.1) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut, match="3 attempts"):
            client.predict("m", [1])
        elapsed = time.monotonic() - started
    assert server.count == 3
    assert 0.3 <= elapsed < 1.0


def test_slow_first_answer_then_fast_succeeds() -> None:
    with Scripted(Reply(delay=0.5), Reply()) as server, fast(server.url, timeout=0.2) as client:
        assert client.predict("m", [1]).values == [7.5]
    assert server.count == 2


def test_async_client_retries_the_same_way() -> None:
    busy = problem(503, "Overloaded")
    busy.headers["Retry-After"] = "0"

    async def main(url: str) -> PredictionResult:
        async with AsyncClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01) as nowhere:
            with pytest.raises(Unreachable) as raised:
                await nowhere.predict("m", [1])
            assert raised.value.attempts == 2
        async with AsyncClient(url, backoff=0.01) as client:
            with pytest.raises(errors.InvalidInput):
                await client.predict("m", [1])
            return await client.predict("m", [1])

    with Scripted(problem(422, "Invalid input"), busy, busy, Reply()) as server:
        result = asyncio.run(main(server.url))
    assert result.values == [7.5]
    assert server.count == 4


def test_policy_delays_stay_within_the_jitter_window() -> None:
    policy = RetryPolicy(retries=5, backoff=0.5, max_backoff=3.0, rng=random.Random(7))
    delays = [policy.backoff_delay(n) for n in range(6) for _ in range(50)]
    caps = [min(3.0, 0.5 * 2**n) for n in range(6) for _ in range(50)]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert max(delays[-50:]) > 2.0  # jitter spreads over the window, capped at max_backoff
    assert policy.retry_after_delay(1.0) is not None and 1.0 <= policy.retry_after_delay(1.0) <= 1.5  # type: ignore[operator]
    assert policy.retry_after_delay(4.0) is None


def test_result_reads_a_regression_answer() -> None:
    result = PredictionResult.from_json({"model": "r", "version": None, "predictions": [{"prediction": 1.5}]})
    assert (result.values, result.probabilities, list(result)) == ([1.5], [{}], [{"prediction": 1.5}])
    with pytest.raises(UnexpectedResponse):
        PredictionResult.from_json({"detail": "not a prediction"})
