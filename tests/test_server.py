"""The app server's start-up (views/server.py): Nagle's algorithm is turned
off on the connections of a listening socket bound the way Streamlit binds
its own (protocol 0, which asyncio leaves alone), and on no other socket.
Real sockets on the loopback interface."""

from __future__ import annotations

import socket

from views.server import nodelay_on_listeners


def _listener() -> socket.socket:
    sock = socket.socket(family=socket.AF_INET)  # as streamlit's starlette_server._bind_socket makes it
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def _accepted_nodelay(listener: socket.socket) -> int:
    with socket.create_connection(listener.getsockname(), timeout=5):
        conn, _ = listener.accept()
        with conn:
            return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_connections_of_the_servers_listening_socket_send_at_once():
    server, other = _listener(), _listener()
    with server, other:
        assert server.proto == 0
        assert _accepted_nodelay(server) == 0  # what Streamlit's socket gives every connection: Nagle on
        assert nodelay_on_listeners(server.getsockname()[1]) == 1
        assert _accepted_nodelay(server) != 0  # inherited by each connection accepted after
        assert _accepted_nodelay(other) == 0  # another port's listener is left as it was


def test_no_listener_on_the_port_changes_nothing():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # bound, not listening
        assert nodelay_on_listeners(free) == 0
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
