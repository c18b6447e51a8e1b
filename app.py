"""VAAL Studio's Streamlit entry point: navigation, the open project, and the
sidebar every page shares.

    streamlit run app.py -- --project PATH     (or VAAL_PROJECT=PATH)

With no project at all (a newcomer's first `make run`), it builds the digits
demo project so there is something to label at once.

Every page has its own address, /project, /label, /train, /explore and
/demo (with ?project=ID for the open project), so a bookmark or a reload
opens that page; the root address sends the tab on to Label, or to Project
when no project is open.

This file is read twice. `streamlit run app.py` first imports it, finds
`app` (an `st.App`, Streamlit's ASGI entry point) and serves that: the
same server and pages, with `HostCheck` in front of it (a request whose
Host is not this server's address gets 403: DNS rebinding), and the routes
the Explore map fetches its points and thumbnails from (views/routes.py). The server
then runs this file as the script of each page view, where `main()` draws.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vaal_core.errors import DatabaseUnreachable, VaalError
from vaal_core.services import labeling, workspace
from vaal_core.store import Project
from views import team
from views.common import (
    HostCheck,
    current_project,
    plain,
    refuse_foreign_host,
    select_project,
    show_error,
)

ASSETS = Path(__file__).parent / "assets"
# Pages live in views/, not pages/: Streamlit treats a folder named pages/
# beside the entry script as a legacy multipage app until this script has
# run once, so after a server restart a tab reconnecting on /train would run
# that page alone, without this file's project and navigation.


def _root() -> None:
    """The page at the root URL: never drawn (main() sends "/" on first)."""


def batch_words(project: Project, labeled: set[int]) -> str | None:
    """What is left of the current round's batch, counted as the Label page
    counts it (the round's ranked batch and the images pushed from Explore),
    e.g. "12 of 15 left in round 3's batch"; None before the first round."""
    round_id, batch = labeling.batch_ids(project)
    if round_id is None or not batch:
        return None
    left = len(batch - labeled)
    if not left:
        return f"round {round_id}'s batch of {len(batch):,} done"
    return f"{left:,} of {len(batch):,} left in round {round_id}'s batch"


@st.fragment(run_every=3.0)
def project_summary(project: Project | None) -> None:
    """Counts that labeling (in a fragment, or another tab) changes."""
    if project is None:
        st.caption("No project open")
        return
    try:
        status = project.status(team=False)
    except DatabaseUnreachable:
        st.caption(":material/cloud_off: the project's database cannot be reached")
        return
    st.markdown(f"**{plain(project.root.name)}**")
    words = [f"{status['labeled']:,} of {status['items']:,} labeled"]
    batch = batch_words(project, project.labeled_ids())
    if batch:
        words.append(batch)
    if status["training"]:
        words.append("training")
    st.caption(" · ".join(words))


@st.fragment(run_every=3.0)
def wait_for_database(project: Project | None) -> None:
    """After a lost connection: tries the database every 3 s and redraws the
    page once it answers (nothing the person had given is lost: a label is
    written in one transaction or not at all, and the page said which)."""
    st.caption("Trying again every 3 seconds...")
    try:
        if project is not None:
            project.db.value("SELECT 1")
    except DatabaseUnreachable:
        return
    st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="VAAL Studio", page_icon=str(ASSETS / "logo.png"), layout="wide")
    refuse_foreign_host()
    team.refuse_open_team_server()
    st.logo(str(ASSETS / "logo.png"), size="large")

    project = current_project()
    if project is None and "project_error" not in st.session_state and not workspace.known_projects():
        from vaal_core.data.digits import create_demo_project

        try:
            with st.spinner("First start: building the digits demo project (1,797 images)..."):
                project = select_project(str(create_demo_project(workspace.home())))
        except (VaalError, OSError) as err:
            show_error(err)
    st.session_state["project"] = project

    # Every page has its own address (/label, /train, ...). Streamlit serves
    # its default page at "/" only (a default page's url_path becomes ""),
    # so a default Label page made /label "Page not found". The default is
    # instead a hidden page at the root that sends the tab on.
    pages = {
        "project": st.Page("views/project.py", title="Project", icon=":material/folder:", url_path="project"),
        "label": st.Page("views/label.py", title="Label", icon=":material/label:", url_path="label"),
        "train": st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        "explore": st.Page("views/explore.py", title="Explore", icon=":material/scatter_plot:",
                           url_path="explore"),
        "demo": st.Page("views/demo.py", title="Demo", icon=":material/play_circle:", url_path="demo"),
    }
    root = st.Page(_root, title="VAAL Studio", url_path="start", default=True, visibility="hidden")
    nav = st.navigation([root, *pages.values()])
    if nav.url_path == root.url_path:  # "/": Label when a project is open, else Project; ?project= kept
        st.switch_page(pages["label" if project is not None else "project"],
                       query_params=st.query_params.to_dict())
    st.set_page_config(page_title=f"{nav.title} · VAAL Studio")  # the tab says which page it holds

    with st.sidebar:
        project_summary(project)
        team.sidebar_line(project)
    team.gate(project)  # sign-in (a team server) or a name (a team project) before any page

    try:
        nav.run()
    except DatabaseUnreachable as err:  # a team's database server away: say so, and come back by itself
        st.error(plain(err), icon=":material/cloud_off:")
        wait_for_database(project)


if get_script_run_ctx(suppress_warning=True) is None:  # imported by `streamlit run app.py`: serve
    from starlette.middleware import Middleware

    from views.routes import ROUTES  # the Explore map's points, thumbnails and script
    from views.server import lifespan  # Nagle's algorithm off on the server's connections

    app = st.App(__file__, routes=ROUTES, middleware=[Middleware(HostCheck)], lifespan=lifespan)
else:  # a page view (or AppTest)
    main()
