"""A team server signs people in with Streamlit's own `st.login` (OIDC), and
every label records the signed-in identity as its author.

A tiny OpenID Connect provider runs inside the test (http.server on
127.0.0.1, RS256 id_tokens signed with a key made here by joserfc, the JOSE
library Authlib itself uses): discovery, /authorize (which signs "Alice" in
at once and sends the browser back with a code and the same state),
/token, /jwks and /userinfo. A real `streamlit run app.py` server reads an
`[auth]` section from a secrets.toml of the test's own (`--secrets.files`),
with VAAL_TEAM=1, on a small project of real CIFAR-10 JPEGs.

Chromium opens the Label page: it asks to sign in and shows no image. A
click on "Sign in" goes through Streamlit's /auth/login to the provider and
back through /oauth2callback (Authlib checks the id_token's signature, issuer,
audience, expiry and nonce there); the sidebar then says "Signed in as
alice@example.org", a "1" labels the image on screen, and the store says the
label's author is alice@example.org.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import ROOT, make_subset
from test_browser import (_free_port, _ready, _remember, _server_log, _shot, _shown_path, _start_server,
                          _stop_server)
from test_browser import browser  # noqa: F401  (the fixture: one Chromium per module)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASSES = ["airplane", "cat", "ship"]
CLIENT_ID = "vaal-studio-test"
CLIENT_SECRET = "not-a-real-secret-" + secrets.token_hex(8)
EMAIL, NAME = "alice@example.org", "Alice"


class Provider:
    """An OpenID Connect provider on 127.0.0.1 that signs one person in
    without asking (the authorization-code flow, as Google's or Okta's)."""

    def __init__(self, redirect_uri: str):
        from joserfc.jwk import RSAKey

        self.redirect_uri = redirect_uri
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, str | None] = {}  # code -> the nonce /authorize was sent
        self.access_tokens: set[str] = set()
        self.seen: list[str] = []  # "GET /authorize", "POST /token", ... in order
        self.errors: list[str] = []  # requests it refused, and why
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Provider:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def metadata(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["authorization_code"],
        }

    def id_token(self, nonce: str | None) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.url, "sub": "alice-0001", "aud": CLIENT_ID, "iat": now, "exp": now + 600,
                  "email": EMAIL, "email_verified": True, "name": NAME}
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key)

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: pytest shows `seen` and `errors` on failure
                pass

            def _json(self, body: dict, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, why: str, status: int = 400) -> None:
                provider.errors.append(f"{self.command} {self.path}: {why}")
                self._json({"error": "invalid_request", "error_description": why}, status)

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                provider.seen.append(f"GET {url.path}")
                if url.path == "/.well-known/openid-configuration":
                    self._json(provider.metadata())
                elif url.path == "/jwks":
                    self._json({"keys": [provider.key.as_dict(private=False)]})
                elif url.path == "/authorize":
                    if query.get("client_id") != CLIENT_ID:
                        return self._refuse(f"unknown client_id {query.get('client_id')!r}")
                    if query.get("response_type") != "code":
                        return self._refuse(f"response_type {query.get('response_type')!r}")
                    if query.get("redirect_uri") != provider.redirect_uri:
                        return self._refuse(f"redirect_uri {query.get('redirect_uri')!r} is not registered")
                    if "openid" not in query.get("scope", "").split() or not query.get("state"):
                        return self._refuse(f"scope {query.get('scope')!r}, state {query.get('state')!r}")
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = query.get("nonce")
                    back = provider.redirect_uri + "?" + urllib.parse.urlencode(
                        {"code": code, "state": query["state"]})
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if token not in provider.access_tokens:
                        return self._refuse("bad access token", 401)
                    self._json({"sub": "alice-0001", "email": EMAIL, "email_verified": True, "name": NAME})
                else:
                    self._refuse("no such endpoint", 404)

            def do_POST(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                provider.seen.append(f"POST {url.path}")
                if url.path != "/token":
                    return self._refuse("no such endpoint", 404)
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                    client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
                else:
                    client_id, secret = form.get("client_id"), form.get("client_secret")
                if (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
                    return self._refuse(f"client authentication failed for {client_id!r}", 401)
                if form.get("grant_type") != "authorization_code":
                    return self._refuse(f"grant_type {form.get('grant_type')!r}")
                if form.get("redirect_uri") != provider.redirect_uri:
                    return self._refuse(f"redirect_uri {form.get('redirect_uri')!r}")
                if form.get("code") not in provider.codes:
                    return self._refuse(f"unknown or used code {form.get('code')!r}")
                nonce = provider.codes.pop(form["code"])  # a code is good once
                access_token = secrets.token_urlsafe(24)
                provider.access_tokens.add(access_token)
                self._json({"access_token": access_token, "token_type": "Bearer", "expires_in": 600,
                            "scope": "openid email profile", "id_token": provider.id_token(nonce)})

        return Handler


def _start_signed_in_server(home: Path, port: int, secrets_file: Path) -> tuple[subprocess.Popen, str]:
    """test_browser's server, with this test's secrets.toml and VAAL_TEAM=1."""
    return _start_server(home, port, flags=("--secrets.files", str(secrets_file)),
                         env={"VAAL_TEAM": "1", "NO_PROXY": "127.0.0.1,localhost"})


# What of the labeling view is on the page, if anything: the image the keys act on, a class
# button, the count above the image or the class picker's heading.
LABELING_VIEW = """() => {
  if (document.querySelector("img.vaal-shown")) return "an image (img.vaal-shown)";
  const main = document.querySelector('[data-testid="stMain"]');
  const text = main ? main.innerText : "";
  if ([...document.querySelectorAll("button")].some(b => /^airplane/.test(b.innerText.trim())))
    return "the class buttons";
  for (const words of ["images labeled", "Pick the class"]) if (text.includes(words)) return JSON.stringify(words);
  return null;
}"""


def _labeling_view_within(pg, seconds: float) -> str | None:
    """The first part of the labeling view that appears within `seconds`, or None."""
    deadline = time.monotonic() + seconds
    while True:
        found = pg.evaluate(LABELING_VIEW)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_sign_in_and_label_as_the_signed_in_person(browser, cifar_root, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    images = make_subset(cifar_root, tmp_path / "photos", per_class=3, classes=CLASSES)
    root = home / "projects" / "photos"
    init_project(root, images, CLASSES)
    project_id = _remember(home, root)
    project = Project.open(root)

    port = _free_port()
    redirect_uri = f"http://localhost:{port}/oauth2callback"
    with Provider(redirect_uri) as provider:
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "{redirect_uri}"\n'
            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            f'client_id = "{CLIENT_ID}"\n'
            f'client_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{provider.url}/.well-known/openid-configuration"\n')
        proc, url = _start_signed_in_server(home, port, secrets_file)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        visited: list[str] = []
        page.on("request", lambda r: r.is_navigation_request() and visited.append(r.url))  # redirects too
        try:
            # 1. Not signed in: the Label page asks to sign in and shows no image.
            page.goto(f"{url}/label?project={project_id}")
            _ready(page)
            sign_in = page.get_by_role("button", name="Sign in")
            sign_in.wait_for()
            page.get_by_text("This is a team server: sign in").wait_for()
            shown = _labeling_view_within(page, seconds=4.0)  # the page may still be drawing: watch a while
            _shot(page, "sign-in-before")
            assert shown is None, f"before anyone signed in, the Label page shows {shown}"
            assert "Signed in as" not in page.get_by_test_id("stSidebar").inner_text()
            assert provider.seen == [], "the provider was asked before the click"
            assert not any(c["name"].startswith("_streamlit_user") for c in context.cookies(url))
            # every page waits for it, and the images are not served either
            page.goto(f"{url}/project?project={project_id}")
            page.get_by_role("button", name="Sign in").wait_for()
            assert "Classes" not in page.get_by_test_id("stMain").inner_text()
            assert page.request.get(f"{url}/vaal/thumb/{project_id}/1").status == 401
            page.goto(f"{url}/label?project={project_id}")
            sign_in = page.get_by_role("button", name="Sign in")
            sign_in.wait_for()

            # 2. Sign in: Streamlit -> the provider -> /oauth2callback -> the app, signed in.
            sign_in.click()
            sidebar = page.get_by_test_id("stSidebar")
            try:
                sidebar.get_by_text(f"Signed in as {EMAIL}").wait_for()
            except Exception as err:  # say what the provider and the server saw
                raise AssertionError(f"not signed in: provider saw {provider.seen}, refused {provider.errors}; "
                                     f"browser went {visited}\n" + _server_log(home)[-3000:]) from err
            page.get_by_role("button", name="Sign out").wait_for()
            page.locator("img.vaal-shown").wait_for()
            page.get_by_role("button", name=re.compile("^airplane")).wait_for()
            _ready(page)
            _shot(page, "sign-in-after")
            assert provider.errors == [], provider.errors
            assert provider.seen[:1] == ["GET /.well-known/openid-configuration"]
            assert {"GET /authorize", "POST /token", "GET /jwks"} <= set(provider.seen), provider.seen
            # The browser itself went there and back (no shortcut through the server).
            went = [u.split("?")[0] for u in visited]
            assert f"{url}/auth/login" in went, visited
            assert went[went.index(f"{url}/auth/login"):][:3] == [
                f"{url}/auth/login", f"{provider.url}/authorize", f"{url}/oauth2callback"], visited
            assert "_streamlit_user" in {c["name"] for c in context.cookies(url)}
            assert page.request.get(f"{url}/vaal/thumb/{project_id}/1").status == 200  # signed in: served

            # 3. Label the image on screen: the label is alice's.
            assert project.labels() == {}
            first = _shown_path(page)
            page.keyboard.press("1")
            page.wait_for_function("(before) => { const t = document.querySelector('img.vaal-shown');"
                                   " return t && t.dataset.path !== before; }", arg=first)
            rows = Project.open(root).db.rows("SELECT item_id, author FROM labels")
            assert [r["author"] for r in rows] == [EMAIL], [dict(r) for r in rows]
            (labeled,) = Project.open(root).labels()
            assert Project.open(root).item(labeled).path == first
        finally:
            context.close()
            _stop_server(proc)
    print(f"\nprovider saw: {provider.seen}\nbrowser went: {visited}")
