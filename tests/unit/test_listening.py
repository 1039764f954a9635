"""The supervisor's socket for several workers: it reserves the address, never listens, and each
process that unpickles it (as uvicorn's supervisor hands it to a worker) gets a socket of its own."""

from __future__ import annotations

import socket
import sys
from multiprocessing.reduction import ForkingPickler

import pytest

from servekit.errors import InvalidInput
from servekit.server.listening import WorkerSocket, reserve_address, supported

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading is Linux's")


def test_each_unpickled_copy_is_a_new_socket_on_the_reserved_address() -> None:
    assert supported()
    reserved = reserve_address("127.0.0.1", 0)
    twins = [ForkingPickler.loads(ForkingPickler.dumps(reserved)) for _ in range(2)]
    try:
        assert isinstance(reserved, WorkerSocket)
        for twin in twins:
            assert type(twin) is socket.socket
            assert twin.getsockname() == reserved.getsockname()
            assert twin.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            twin.listen()
        assert twins[0].fileno() != twins[1].fileno()
        with socket.create_connection(reserved.getsockname(), timeout=2):
            pass  # one of the two listeners took it
        with pytest.raises(OSError):
            reserved.accept()  # the reserved socket itself never listens
    finally:
        for sock in (reserved, *twins):
            sock.close()


def test_an_address_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput, match=f"127.0.0.1:{port} is already in use"):
            reserve_address("127.0.0.1", port)


def test_an_ipv6_address_gets_ipv6_sockets() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    reserved = reserve_address("::1", 0)
    twin = ForkingPickler.loads(ForkingPickler.dumps(reserved))
    try:
        assert twin.family == socket.AF_INET6 and twin.getsockname() == reserved.getsockname()
    finally:
        twin.close()
        reserved.close()
