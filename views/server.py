"""What the app's server sets up once, beside Streamlit's own start-up
(app.py passes `lifespan` to `st.App`).

Nagle's algorithm off on every connection (TCP_NODELAY). Streamlit's
server binds its listening socket itself, as `socket.socket(family)`,
whose protocol number is 0, and asyncio turns Nagle's algorithm off only
on accepted sockets whose protocol is IPPROTO_TCP. So every connection
keeps it on, and a response written in two parts (its headers, then its
body) waits for the browser's delayed acknowledgement, 40 ms on Linux, on
every request after a connection's first: a page's first load fetches
about 60 of Streamlit's scripts over 6 connections, 0.6 s of waiting
(bench/streamlit_floor.py). The option set on the listening socket is
inherited by each connection it accepts (Linux, macOS).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from typing import Any

from streamlit.logger import get_logger


def nodelay_on_listeners(port: int) -> int:
    """Set TCP_NODELAY on this process's listening TCP sockets on `port`
    (found among its open files: Streamlit keeps its socket to itself);
    returns how many."""
    folder = next((f for f in ("/proc/self/fd", "/dev/fd") if os.path.isdir(f)), None)
    if folder is None:
        return 0
    done = 0
    for name in os.listdir(folder):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))  # a second handle on the same socket, closed below
        except (OSError, ValueError):
            continue
        with sock:
            try:
                if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                        and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                        and sock.getsockname()[1] == port):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    done += 1
            except OSError:
                continue
    return done


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Runs once as the server starts (its socket bound, nothing accepted yet)."""
    from streamlit import config

    port = int(config.get_option("server.port"))
    if not nodelay_on_listeners(port):
        get_logger(__name__).info("TCP_NODELAY not set: no listening socket on port %s found in this process; "
                                  "requests after a connection's first may wait 40 ms each", port)
    yield
