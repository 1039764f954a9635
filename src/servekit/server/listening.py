"""Where `servekit serve` listens: the address is bound before any model loads (a port in use is
one line, exit 2), then handed to uvicorn; with several workers on Linux, a socket per worker.

uvicorn's supervisor binds one socket and every worker accepts from it: whichever worker wakes
first takes a whole burst of new connections. Clients that keep their connections open (load
balancers, connection pools, wrk) then stay unevenly spread: 64 connections opened at once went
2/62, 14/50 and 17/47 to two workers, and one worker saturated while the other waited.

On Linux each worker here listens on a socket of its own, bound to the same address with
`SO_REUSEPORT`, and the kernel spreads new connections over the workers by their address hash.
uvicorn's supervisor (restarts, health checks, signals) runs unchanged: the socket it hands to
each worker is a `WorkerSocket`, which a worker process receives as a fresh socket of its own.
The supervisor's socket keeps the address reserved and never listens; it is bound before
`SO_REUSEPORT` is set, so a port another server already uses is refused, as with one socket.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any, cast

from servekit.errors import InvalidInput

__all__ = ["WorkerSocket", "bind_address", "reserve_address", "serve", "supported"]

STARTUP_FAILURE = 3
"""Exit status when the server could not start (uvicorn's)."""


def supported() -> bool:
    """Whether the kernel spreads connections over `SO_REUSEPORT` listeners (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class WorkerSocket(socket.socket):
    """The supervisor's bound, never-listening socket; a worker process unpickling it (uvicorn
    passes its sockets to each worker it starts) gets a new socket bound to the same address."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (worker_socket, (self.family, self.getsockname()))


def worker_socket(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A socket bound to `address` beside the others of the server (`SO_REUSEPORT`); the worker's
    server starts listening on it."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def bind_address(host: str, port: int, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A socket bound to `host`:`port` (port 0: a free one), not listening yet, inheritable by
    worker processes. Raises `InvalidInput` when the address is taken or cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            hint = "Stop the other server or choose another --port"
            raise InvalidInput(f"{host}:{port} is already in use", hint=hint) from None
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def reserve_address(host: str, port: int) -> WorkerSocket:
    """The supervisor's socket for a socket per worker (see the module's docstring)."""
    sock = cast(WorkerSocket, bind_address(host, port, WorkerSocket))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # after bind: the workers join it
    return sock


def serve(config: Any, *, reuse_port: bool = True) -> None:
    """Run uvicorn with `config` on an address bound here first: one server in this process, or
    `config.workers` under uvicorn's supervisor, each on its own socket when `reuse_port` and
    `supported()`, else sharing one. Exits with `STARTUP_FAILURE` when the server never started."""
    from uvicorn import Server
    from uvicorn.supervisors import Multiprocess

    several = config.workers > 1
    per_worker = several and reuse_port and supported()
    sock = reserve_address(config.host, config.port) if per_worker else bind_address(config.host, config.port)
    server = None if several else Server(config)
    try:
        if server is None:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled gracefully
        pass
    finally:
        sock.close()
    if server is not None and not server.started:
        sys.exit(STARTUP_FAILURE)
