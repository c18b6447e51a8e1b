"""DNS rebinding: a page on attacker.example whose name is re-pointed at
127.0.0.1 sends the app requests with `Host: attacker.example:PORT` (and
the same Origin, so Streamlit's same-origin check passes). The server
refuses every request, HTTP or websocket, whose Host is not an address it
is bound to, with 403; the app keeps working on localhost, in a real
browser. Against a real `streamlit run app.py` server."""

from __future__ import annotations

import base64
import http.client
import os
import re
import socket

import pytest
from conftest import make_subset
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CLASSES,
    _ready,
    _remember,
    _start_server,
    _stop_server,
)

from vaal_core.data.ingest import init_project

FORGED = "attacker.example"


def test_host_allowed_rules():
    from views.common import host_allowed

    for host in ("localhost:8501", "LOCALHOST:8501", "localhost", "127.0.0.1:8501", "[::1]:8501", "localhost.:80"):
        assert host_allowed(host, "localhost"), host
    for host in ("attacker.example:8501", "attacker.example", "localhost.attacker.example:8501", "127.0.0.1.nip.io",
                 "", None, "user@localhost:8501", "localhost:8501/x", "[::1", "localhost:port"):
        assert not host_allowed(host, "localhost"), host
    # an address given with --server.address is accepted too; nothing else is
    assert host_allowed("gpu-box.lan:8501", "gpu-box.lan") and not host_allowed("other.lan:8501", "gpu-box.lan")
    assert host_allowed("192.168.1.5:8501", "192.168.1.5") and not host_allowed("192.168.1.6:8501", "192.168.1.5")
    # bound to every interface: any IP address (a rebinding page has a name, never an IP), names still refused
    assert host_allowed("10.0.0.7:8501", "0.0.0.0") and host_allowed("[fe80::1]:8501", "::")
    assert not host_allowed(f"{FORGED}:8501", "0.0.0.0")
    # names the user lists in server.allowedHosts, as Streamlit reads them (a leading *. for subdomains)
    assert host_allowed("app.example.com", "localhost", ["app.example.com"])
    assert host_allowed("a.example.com", "localhost", ["*.example.com"])
    assert not host_allowed(f"{FORGED}:8501", "localhost", ["*.example.com"])


def test_a_page_view_under_another_host_draws_nothing(monkeypatch, tmp_path):
    """The fallback inside the script, for a server without the middleware."""
    from conftest import ROOT
    from streamlit.testing.v1 import AppTest

    import views.common

    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(views.common, "_request_host", lambda: f"{FORGED}:8501")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and len(at.error) == 1 and "answers only to its own address" in at.error[0].value
    assert not (tmp_path / "home").exists()  # stopped before anything was opened or built (the digits demo)


@pytest.fixture(scope="module")
def server(cifar_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostcheck")
    home = tmp / "home"
    images = make_subset(cifar_root, tmp / "photos", per_class=2, classes=CLASSES)
    project, _, _ = init_project(home / "projects" / "small", images, CLASSES)
    _remember(home, project.root)
    proc, url = _start_server(home)
    yield int(url.rsplit(":", 1)[1])
    _stop_server(proc)


def _get(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("localhost", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def _upgrade(port: int, host: str, origin: str) -> int:
    """The status of a websocket upgrade of /_stcore/stream (101: accepted)."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("localhost", port), timeout=10) as s:
        s.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n\r\n").encode())
        head = s.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(head.split()[1])


@pytest.mark.browser
def test_forged_host_is_refused_over_http(server):
    for path in ("/", "/train", "/_stcore/health", "/_stcore/host-config", "/favicon.png"):
        assert _get(server, path, f"{FORGED}:{server}") == 403, path
        assert _get(server, path, FORGED) == 403, path
    for host in (f"localhost:{server}", f"127.0.0.1:{server}", f"[::1]:{server}"):
        assert _get(server, "/_stcore/health", host) == 200, host
        assert _get(server, "/", host) == 200, host


@pytest.mark.browser
def test_forged_host_websocket_is_refused(server):
    assert _upgrade(server, f"{FORGED}:{server}", f"http://{FORGED}:{server}") == 403
    assert _upgrade(server, f"{FORGED}:{server}", f"http://localhost:{server}") == 403
    assert _upgrade(server, f"localhost:{server}", f"http://localhost:{server}") == 101
    assert _upgrade(server, f"127.0.0.1:{server}", f"http://127.0.0.1:{server}") == 101


@pytest.mark.browser
def test_the_app_still_works_in_a_browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for host in ("localhost", "127.0.0.1"):
                pg = browser.new_page(viewport={"width": 1200, "height": 900})
                pg.set_default_timeout(60_000)
                pg.goto(f"http://{host}:{server}/")
                _ready(pg)
                pg.get_by_role("button", name=re.compile(f"^{CLASSES[0]}")).first.wait_for()  # the Label page, with its keys
                assert "of 6 labeled" in pg.get_by_test_id("stSidebar").inner_text()
                pg.close()
        finally:
            browser.close()
