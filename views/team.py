"""Who is labeling: the annotator of this browser session, and a team
server's sign-in.

- A server configured for a team (an `[auth]` section in
  .streamlit/secrets.toml) signs every person in with Streamlit's own
  `st.login` (OIDC: Google, Microsoft, Okta, Keycloak, ...); the annotator is
  the signed-in identity's e-mail (or name). No password passes through this
  app.
- Otherwise a team project (its store on PostgreSQL) asks for a name at the
  start of the session; it is kept for the session and in the address
  (`?who=`), so a refresh does not ask again.
- A one-person project asks nothing: labels are the author "user", as they
  always were, unless the person names themselves in the sidebar.

`gate` runs first on every page (app.py); `current` is the answer the pages
record with each label. `refuse_open_team_server` is the rule that a team server listening beyond
this machine does not run without sign-in (launch.py refuses to start one;
this covers `streamlit run app.py` started by hand).
"""

from __future__ import annotations

import html
import os
import re

import streamlit as st

from views.common import ANY_ADDRESS, LOCAL_NAMES, plain
from vaal_core.store import Project

WHO_KEY = "who"  # ?who=<name>: the annotator, kept through a refresh
TEAM_ENV = "VAAL_TEAM"  # set (launch.py app --team) for a server shared by a team
_NAME = re.compile(r"^[\w .@+'-]{1,64}$")  # letters of any script, digits, and the marks of an e-mail or a name


def sign_in_configured() -> bool:
    """An [auth] section in .streamlit/secrets.toml (what st.login needs)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file, or one that does not parse: no sign-in configured
        return False


def team_server() -> bool:
    return os.environ.get(TEAM_ENV, "") not in ("", "0") or sign_in_configured()


def listens_beyond_localhost() -> bool:
    address = st.get_option("server.address") or ""
    return address in ANY_ADDRESS or address not in LOCAL_NAMES


def refuse_open_team_server() -> None:
    """A team server reachable from other machines signs people in, or
    does not serve at all."""
    if os.environ.get(TEAM_ENV, "") not in ("", "0") and listens_beyond_localhost() and not sign_in_configured():
        st.error("This team server listens beyond this machine but has no sign-in configured: add an [auth] "
                 "section to .streamlit/secrets.toml (see the README's team set-up), or serve on localhost only.",
                 icon=":material/lock:")
        st.stop()


def check_name(name: str) -> str | None:
    """Why `name` cannot be an annotator's name, or None."""
    name = name.strip()
    if not name:
        return "give a name: it is recorded with every label you give"
    if not _NAME.match(name):
        return (f"{name!r} cannot be a name here: use up to 64 letters, digits, spaces and . @ + ' - "
                "(an e-mail address works)")
    return None


def signed_in_name() -> str | None:
    """The signed-in person's e-mail (else name, else subject), or None."""
    if not (sign_in_configured() and st.user.is_logged_in):
        return None
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))


def gate(project: Project | None) -> None:
    """Every page, first: on a server configured for sign-in nothing is shown
    until the person signs in; on a team project (or a team server) a name is
    asked once a session. Stops the page until answered."""
    if sign_in_configured():
        if not st.user.is_logged_in:
            st.info("This is a team server: sign in, so every label records who gave it.", icon=":material/lock:")
            st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")
            st.stop()
        return
    if project is None or current() is not None:
        return
    if project.backend == "sqlite" and not team_server():
        return
    ask_name()
    st.stop()


def current() -> str | None:
    """This session's annotator: the signed-in identity, else the name given
    (kept in the session and the address), else None (a one-person project:
    its labels are by "user", as they always were)."""
    signed = signed_in_name()
    if signed is not None:
        return signed
    name = st.session_state.get("annotator") or st.query_params.get(WHO_KEY)
    if not name or check_name(name) is not None:
        return None
    name = name.strip()
    st.session_state["annotator"] = name
    if st.query_params.get(WHO_KEY) != name:
        st.query_params[WHO_KEY] = name
    return name


def _take_name() -> None:
    name = st.session_state.get("who_input", "")
    problem = check_name(name)
    if problem:
        st.session_state["who_problem"] = problem
        return
    st.session_state.pop("who_problem", None)
    st.session_state["annotator"] = name.strip()
    st.query_params[WHO_KEY] = name.strip()


def ask_name() -> None:
    st.subheader("Who is labeling?")
    st.caption("Several people label this project. Your name is recorded with every label you give, and the "
               "images shown to you are held for you while you look at them.")
    with st.form("who_form", border=False):
        st.text_input("Your name", key="who_input", max_chars=64, placeholder="e.g. alice or alice@example.org")
        st.form_submit_button("Start labeling", type="primary", on_click=_take_name)
    if "who_problem" in st.session_state:
        st.error(plain(st.session_state["who_problem"]))


def sidebar_line(project: Project | None) -> None:
    """'Labeling as alice' in the sidebar, with a way to change it (not for a
    signed-in person: their identity is the sign-in's)."""
    name = st.session_state.get("annotator") or st.query_params.get(WHO_KEY)
    signed = signed_in_name()
    if signed is not None:
        # HTML, not markdown: markdown makes an e-mail address a mailto link
        st.html(f'<div style="font-size: 0.875rem; opacity: 0.6">Signed in as {html.escape(signed)}</div>')
        st.button("Sign out", on_click=st.logout, key="sign_out")
    elif name:
        st.caption(f"Labeling as **{plain(name)}**")
        st.button("Not you?", key="who_change", on_click=forget_name)


def forget_name() -> None:
    st.session_state.pop("annotator", None)
    st.query_params.pop(WHO_KEY, None)
