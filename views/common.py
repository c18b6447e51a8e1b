"""What every page shares: the open project, text escaping, error display,
and the server's Host check.

Not a page itself (app.py lists the pages). UI only: everything it does to
a project goes through vaal_core.

User text (class names, file paths, project names, error messages that
quote them) is text everywhere: `plain()` for anything Streamlit renders as
markdown (st.markdown, caption, info/warning/error, toast, button and
progress labels, help), `chart_text()` for every string a Plotly chart
draws (legend names, axis categories, hover text, titles). Widgets that
show options as plain text (selectbox, multiselect, text_input values,
st.text, st.dataframe) take the raw name.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import streamlit as st
from PIL import Image
from streamlit.logger import get_logger

from vaal_core.data.images import fit, load_image, shown_path
from vaal_core.errors import DatabaseUnreachable, LabelConflict, VaalError
from vaal_core.loop.chart import chart_text  # noqa: F401 (the pages' one Plotly escaping; defined beside the Demo chart)
from vaal_core.services import workspace
from vaal_core.store import Project, store_file
from vaal_core.store.labels import SOURCE_WORDS, ago

QUERY_KEY = "project"  # ?project=<id> keeps the project through a refresh or a restart
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("", "0.0.0.0", "::")
_refused_hosts: set[str | None] = set()  # each refused Host is logged once, however often it is tried


def plain(text: Any) -> str:
    """User text (class names, file names) made safe for a markdown label:
    every markdown character escaped, so '**x**', '[x](url)' or '<b>' shows
    as typed."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def typed_path(text: str) -> Path | None:
    """A folder path as typed or pasted into a field: surrounding blanks and
    one pair of quotes dropped (a file manager's "Copy as path" adds them),
    ~ expanded; None when nothing was typed."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return Path(text).expanduser() if text else None


def cli_project() -> str | None:
    """`streamlit run app.py -- --project PATH`, else $VAAL_PROJECT."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--project")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return known.project or os.environ.get("VAAL_PROJECT")


@st.cache_resource(show_spinner=False)
def _shared_handle(path: str, db_inode: int) -> Project:
    # One shared handle per project folder (Project is thread-safe). The db
    # file's inode is part of the key (hashed: no leading underscore), so a
    # project deleted and re-created at the same path gets a fresh handle.
    return Project.open(path)


def open_project(path: str) -> Project:
    db = store_file(path)  # project.db, or a team project's database.json
    return _shared_handle(os.path.realpath(path), os.stat(db).st_ino if os.path.exists(db) else 0)


def select_project(path: str) -> Project:
    """Open a project, remember it and put its id in the URL."""
    project = open_project(path)
    known = workspace.remember(path)
    st.query_params[QUERY_KEY] = known.id
    st.session_state["project_path"] = str(known.path)
    return project


def current_project() -> Project | None:
    """The project this browser tab works on, or None. Resolved once per run
    from the URL's project id, the command line, or the last choice."""
    if "project_error" in st.session_state:
        del st.session_state["project_error"]
    wanted = st.query_params.get(QUERY_KEY)
    if wanted:
        known = workspace.find(wanted)
        if known is None:
            st.session_state["project_error"] = (  # raw text: pages show it through plain()
                f"This address names a project this app does not know (id {wanted}); "
                "pick one on the Project page.")
            return None
        try:
            return select_project(str(known.path)) if st.session_state.get("project_path") != str(known.path) \
                else open_project(str(known.path))
        except VaalError as err:
            st.session_state["project_error"] = str(err)
            return None
    path = st.session_state.get("project_path") or cli_project()
    if not path:
        recent = workspace.known_projects()
        path = str(recent[0].path) if recent else None
    if not path:
        return None
    try:
        return select_project(path)
    except VaalError as err:
        st.session_state["project_error"] = f"Could not open {path}: {err}"
        return None


def require_project() -> Project:
    """The open project, or a message pointing to the Project page and stop."""
    project = st.session_state.get("project")
    if project is None:
        st.info(plain(st.session_state.get("project_error") or "No project is open yet."))
        st.page_link("views/project.py", label="Open or create a project", icon=":material/folder_open:")
        st.stop()
    return project


def database_gone_in_words(fragment=None, *, quiet: bool = False):
    """For a fragment's body (under @st.fragment): a team's database that
    cannot be reached is said in one line, not a traceback (`quiet`: by the
    page's other parts only: a strip that polls says nothing), and the
    fragment draws nothing else; the first of the page's fragments to run
    once the database answers again redraws the whole page (app.py does the
    same for a full run)."""
    if fragment is None:
        return functools.partial(database_gone_in_words, quiet=quiet)

    @functools.wraps(fragment)
    def run(*args, **kwargs):
        try:
            out = fragment(*args, **kwargs)
        except DatabaseUnreachable as err:
            st.session_state["database_gone"] = True
            if not quiet:
                st.error(plain(err), icon=":material/cloud_off:")
                st.caption("Trying again in a few seconds...")
            return None
        if st.session_state.pop("database_gone", False):
            st.rerun(scope="app")
        return out
    return run


def show_error(err: Exception) -> None:
    """A VaalError's message is written for people; anything else is a bug,
    shown with its type so it can be reported. Messages quote names and
    paths, so they are shown as text, never as markdown."""
    st.error(plain(err if isinstance(err, VaalError) else f"{type(err).__name__}: {err}"), icon=":material/error:")


LABEL_PAGE_SOURCES = ("ui", "suggestion", "grid")  # labels given on the Label page (tokens start with a tab id)


def conflict_text(project: Project, err: LabelConflict) -> str:
    """The store's refusal in the pages' words (markdown): the image named as
    the pages show it (a hidden gold class's folder masked, where the
    store's message quotes the raw path), who labeled it and when, with
    'in this tab' / 'in another tab' for the Label page's own labels."""
    item_id, _, label, seconds, source, token = err.changed[0]
    where = SOURCE_WORDS.get(source, "")
    if source in LABEL_PAGE_SOURCES:
        mine = (token or "").startswith(st.session_state.get("tab_id", "?") + "-")
        where = "in this tab" if mine else "in another tab"
    what = f"was labeled **{plain(label)}**" if label else "was unlabeled"
    more = f" (and {len(err.changed) - 1} more of them)" if len(err.changed) > 1 else ""
    item = project.item(item_id)
    return (f"{plain(shown_path(item.path, item.gold))} {what} {where} {ago(seconds)}, "
            f"after this page showed it{more}.")


@st.cache_resource(max_entries=512, show_spinner=False)
def _picture(path: str, item_id: int, side: int, _project: Project) -> tuple[Image.Image, str | None]:
    img, note = load_image(_project, _project.item(item_id), max_side=side)
    return fit(img, side), note


def picture(project: Project, item_id: int, side: int) -> tuple[Image.Image, str | None]:
    """An item's image with its longer side `side` px (smaller ones enlarged
    smoothly, drawn as pictures rather than blocks of pixels), and a note
    when the cached copy stands in for a missing original."""
    img, note = _picture(str(project.root), item_id, side, project)
    if note is not None:  # a stand-in is not kept: the folder may be back, or read from its new place, next time
        _picture.clear(str(project.root), item_id, side, project)
    return img, note


# -- the Host check (DNS rebinding) ---------------------------------------------------

def _host_matches(name: str, pattern: str) -> bool:
    """`server.allowedHosts` as Streamlit reads it: a name, `*.domain` for
    its subdomains, or `*` for any."""
    pattern = pattern.strip().lower().strip("[]").rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str | None, address: str | None, allowed: Sequence[str] = ()) -> bool:
    """Whether a request's Host header names this server, which listens on
    `address` (`server.address`): localhost, 127.0.0.1 or [::1]; the
    address itself when one was given (`--server.address gpu-box.lan`); any
    IP address when bound to all interfaces (0.0.0.0, ::: a rebinding page
    reaches the server through a name, never an IP); or a name listed in
    `server.allowedHosts`. The port is not compared: an `ssh -L` tunnel or
    a container's port mapping shows the browser another port, and a
    rebinding page is told apart by its name. A missing or malformed Host
    is refused."""
    if not host:
        return False
    try:
        parts = urlsplit(f"//{host}")
        name, _ = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:
        return False
    if not name or "@" in parts.netloc or parts.path or parts.query or parts.fragment:
        return False
    name = name.rstrip(".")
    bound = (address or "").strip().lower().strip("[]").rstrip(".")
    return (name in LOCAL_NAMES or name == bound or (bound in ANY_ADDRESS and _is_ip(name))
            or any(_host_matches(name, pattern) for pattern in allowed))


def server_host_allowed(host: str | None) -> bool:
    """`host_allowed` against this server's own settings."""
    from streamlit import config

    address = config.get_option("server.address")
    if address and address.startswith("unix://"):
        address = None  # a socket has no name: localhost and server.allowedHosts only
    return host_allowed(host, address or "", config.get_option("server.allowedHosts") or ())


HOST_REFUSED = ("This server answers only to its own address (localhost, 127.0.0.1, [::1], or the "
                "--server.address it was started with); this request named another host, as a DNS "
                "rebinding page would. To reach it by another name, start it with "
                "--server.allowedHosts NAME.")


class HostCheck:
    """ASGI middleware (app.py serves the app through it): an HTTP request
    or a websocket (/_stcore/stream) whose Host is not this server's
    (`server_host_allowed`) gets 403 before Streamlit sees it, so a page on
    another name that resolves to 127.0.0.1 cannot read from or drive the
    app. Streamlit's own `server.allowedHosts` checks only the websocket,
    and accepts any Host while the list is empty (its default)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
            if not server_host_allowed(host):
                if host not in _refused_hosts and len(_refused_hosts) < 100:
                    _refused_hosts.add(host)
                    get_logger(__name__).warning("Refused requests for Host %r: not this server's address "
                                                 "(DNS rebinding guard; see --server.allowedHosts)", host)
                if scope["type"] == "websocket":  # closing before accepting: the server answers 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = HOST_REFUSED.encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"x-content-type-options", b"nosniff")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _request_host() -> str | None:
    return st.context.headers.get("host")


def refuse_foreign_host() -> None:
    """The same check inside a script run, should the app ever be served
    without `HostCheck` (another launcher, an older Streamlit): a session
    opened under another name draws nothing. No Host at all (AppTest) is no
    browser and passes."""
    host = _request_host()
    if host is not None and not server_host_allowed(host):
        st.error(plain(HOST_REFUSED))
        st.stop()
