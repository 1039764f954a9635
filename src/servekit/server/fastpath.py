"""The HTTP fast path: uvicorn's httptools protocol, answering predictions without ASGI.

Under ASGI every request costs uvicorn a task, an event, a request-response cycle and two
messages checked header by header: about as much CPU as a micro-batched prediction itself. For
the prediction routes (`HotRoute`s with a `submit`, see `servekit.server.hotpath`: native, seed
and OIP `infer`), `ServekitHttpProtocol` skips all of that: once the body is in, it validates it
and hands it to the model's runner from the parser's callback, and writes the answer (status
line, headers and body in one write) from the callback of the runner's future. Same checks, same
answers, same errors, same monitoring as the ASGI way; `tests/e2e/test_fastpath.py` runs both.

Anything unusual takes the ASGI way unchanged: other methods and paths, API keys and rate
limits, CORS, `Expect: 100-continue`, chunked or over-limit bodies, percent-encoded paths,
pipelined requests, a client that does not read its answers, a concurrency limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from servekit.monitoring.context import CURRENT, RequestContext
from servekit.server.bodies import check_identity_encoding, check_json_content_type, parse_json
from servekit.server.headers import header_lines, header_pairs
from servekit.server.hotpath import CLIENT_CLOSED, ServekitApp, error_answer
from servekit.server.hotroutes import HotRoute
from servekit.server.middleware import accepted_request_id, new_request_id
from servekit.server.routes._common import JSON_OPTIONS

__all__ = ["PROTOCOL", "ServekitHttpProtocol"]

PROTOCOL = "servekit.server.fastpath:ServekitHttpProtocol"
"""What `servekit serve` passes to uvicorn as its `http` protocol."""

_JSON = b"application/json"

logger = logging.getLogger("servekit.server")


class ServekitHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the fast path for `ServekitApp`'s prediction routes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.servekit = _servekit_app(self.app)

    def on_message_begin(self) -> None:
        # uvicorn's ASGI scope is made only for the requests that take the ASGI way.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        app = self.servekit
        exchange = (
            None
            if (
                app is None
                or self.parser.get_method() != b"POST"
                or not (self.cycle is None or self.cycle.response_complete)
                or self.expect_100_continue
                or self.flow.write_paused
                or self.limit_concurrency is not None
                or self.parser.should_upgrade()
            )
            else self._exchange(app)
        )
        if exchange is not None:
            self.cycle = exchange  # type: ignore[assignment]
            return
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()  # the scope, as uvicorn makes it
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers
        super().on_headers_complete()

    def _exchange(self, app: ServekitApp) -> _Exchange | None:
        try:
            return _exchange(self, app)
        except Exception:  # never expected; the ASGI way still answers
            logger.exception("the fast path failed to take a request")
            return None

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is _Exchange:  # the declared length is within the limit: no flow control
            cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is _Exchange:
            cycle.start()
            return
        super().on_message_complete()


def _servekit_app(app: Any) -> ServekitApp | None:
    """The `ServekitApp` under uvicorn's wrappers (proxy headers, message logger), if any."""
    for _ in range(8):
        if isinstance(app, ServekitApp):
            return app
        app = getattr(app, "app", None)
    return None


def _exchange(protocol: ServekitHttpProtocol, app: ServekitApp) -> _Exchange | None:
    """The fast exchange for the request whose headers were just parsed, or `None` when it must
    take the ASGI way."""
    path = httptools.parse_url(protocol.url).path
    if b"%" in path:
        return None
    found = app.fast_route(path.decode("ascii"))
    if found is None:
        return None
    bound = app.bound
    request_id = content_type = encoding = None
    length = -1
    for key, value in protocol.headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif key == b"x-request-id":
            request_id = accepted_request_id(value)
        elif key == b"content-encoding":
            encoding = value
        elif key == b"transfer-encoding" or (key == b"origin" and app.cors):
            return None
    if length < 0 or length > bound[0]:
        return None  # no declared length, or too long: the ASGI way reads or refuses it
    keep_alive = protocol.parser.should_keep_alive() and protocol.parser.get_http_version() != "1.0"
    exchange = _Exchange(protocol, bound, found, request_id or new_request_id(), content_type, encoding, keep_alive)
    exchange.path = protocol.root_path + path.decode("ascii")
    if found[0].raw:  # raw routes read the headers they need themselves (OIP: its binary header length)
        exchange.named = {k.decode("latin-1"): v.decode("latin-1") for k, v in protocol.headers}
    return exchange


class _Exchange:
    """One request on the fast path; stands in for uvicorn's request-response cycle (the
    protocol reads `response_complete`, `disconnected`, `keep_alive` and `message_event`)."""

    __slots__ = (
        "body",
        "bound",
        "content_type",
        "ctx",
        "disconnected",
        "encoding",
        "finish",
        "keep_alive",
        "named",
        "params",
        "path",
        "protocol",
        "request_id",
        "response_complete",
        "route",
        "started",
    )

    def __init__(
        self,
        protocol: ServekitHttpProtocol,
        bound: tuple[int, Any, Any, bytes],
        found: tuple[HotRoute, dict[str, str]],
        request_id: str,
        content_type: bytes | None,
        encoding: bytes | None,
        keep_alive: bool,
    ) -> None:
        self.protocol: ServekitHttpProtocol | None = protocol
        self.bound = bound  # `ServekitApp.bound`
        self.route, self.params = found
        self.request_id = request_id
        self.content_type = content_type
        self.encoding = encoding
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.response_complete = False
        self.disconnected = False
        self.ctx: RequestContext | None = None
        self.finish: Any = None
        self.named: dict[str, str] | None = None
        self.started = 0.0
        self.path = ""

    @property
    def message_event(self) -> _NoEvent:
        return _NO_EVENT

    def start(self) -> None:
        """The whole body is in: validate it and hand it to the runner (from the parser's
        callback, within the request's monitoring context)."""
        _, plane, monitor, _ = self.bound
        route = self.route
        self.ctx = ctx = RequestContext(self.request_id, route.path)
        monitor.in_flight += 1
        self.started = time.perf_counter()
        token = CURRENT.set(ctx)
        try:
            raw, self.body = bytes(self.body), None  # type: ignore[assignment]
            submit = route.submit
            if self.named is not None:  # a raw route: the bytes as they came
                answer, self.finish = submit(plane, raw, self.named, self.request_id, **self.params)  # type: ignore[misc]
            else:
                if self.content_type is not None:
                    check_json_content_type(self.content_type.decode("latin-1"))
                if self.encoding is not None:
                    check_identity_encoding(self.encoding.decode("latin-1"))
                answer, self.finish = submit(plane, parse_json(raw), self.request_id, **self.params)  # type: ignore[misc]
            if not isinstance(answer, asyncio.Future):  # the unusual cases: a coroutine, in a task
                answer = asyncio.ensure_future(answer)
                tasks = self.protocol.tasks  # type: ignore[union-attr]
                tasks.add(answer)  # uvicorn waits for these at shutdown
                answer.add_done_callback(tasks.discard)
            answer.add_done_callback(self._answered)
        except Exception as exc:
            # Sent with the answers of the loop's next turn (see `hotpath`): under load, a burst
            # of writes wakes the client side once instead of once per rejected request.
            asyncio.get_running_loop().call_soon(self._failed, exc)
        finally:
            CURRENT.reset(token)

    def _answered(self, answer: asyncio.Future[Any]) -> None:
        finish, self.finish = self.finish, None  # the request's batch is not kept past its answer
        try:
            if self.named is None:
                media, out, extra = _JSON, orjson.dumps(finish(answer.result()), option=JSON_OPTIONS), b""
            else:  # a raw route: (content, media type, extra headers)
                out, media_type, added = finish(answer.result())
                media, extra = media_type.encode(), header_lines(header_pairs(added))
        except Exception as exc:
            self._failed(exc)
            return
        self._respond(200, media, out, extra)

    def _failed(self, exc: Exception) -> None:
        status, media, out, headers = error_answer(self.route, self.path, exc, self.request_id)
        self._respond(status, media, out, header_lines(headers))

    def _respond(self, status: int, media: bytes, out: bytes, extra: bytes) -> None:
        protocol, self.protocol = self.protocol, None  # no cycle between the protocol and its exchange
        self.response_complete = True
        elapsed = time.perf_counter() - self.started
        monitor = self.bound[2]
        monitor.in_flight -= 1
        if protocol is None or self.disconnected or protocol.transport.is_closing():
            monitor.request_done(self.ctx, "POST", CLIENT_CLOSED, elapsed)
            return
        head = b"%s%s%scontent-type: %s\r\ncontent-length: %d\r\nx-request-id: %s\r\n%s%s\r\n" % (
            STATUS_LINE[status],
            _default_headers(protocol.server_state.default_headers),
            self.bound[3],
            media,
            len(out),
            self.request_id.encode(),
            extra,
            b"" if self.keep_alive else b"connection: close\r\n",
        )
        protocol.transport.write(head + out)
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()
        monitor.request_done(self.ctx, "POST", status, elapsed)


class _NoEvent:
    """What uvicorn's protocol `set()`s on a cycle's message event: nothing waits on it here."""

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()
_rendered: tuple[Any, bytes] = (None, b"")


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (`server`, `date`) as header lines; uvicorn renews the list
    every second, so the lines are rendered once per list."""
    global _rendered
    if _rendered[0] is not headers:
        _rendered = (headers, header_lines(headers))
    return _rendered[1]
