"""VAAL Studio's Streamlit entry point: navigation, the open project, and the
sidebar every page shares.

    streamlit run app.py -- --project PATH     (or VAAL_PROJECT=PATH)

With no project at all (a newcomer's first `make run`), it builds the digits
demo project so there is something to label at once.

This file is read twice. `streamlit run app.py` first imports it, finds
`app` (an `st.App`, Streamlit's ASGI entry point) and serves that: the
same server and pages, with `HostCheck` in front of it (a request whose
Host is not this server's address gets 403: DNS rebinding). The server
then runs this file as the script of each page view, where `main()` draws.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from vaal_core.errors import VaalError
from vaal_core.services import workspace
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


def main() -> None:
    st.set_page_config(page_title="VAAL Studio", page_icon=str(ASSETS / "logo.png"), layout="wide")
    refuse_foreign_host()
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

    pages = [
        st.Page("views/project.py", title="Project", icon=":material/folder:", default=project is None),
        st.Page("views/label.py", title="Label", icon=":material/label:", default=project is not None),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
        st.Page("views/explore.py", title="Explore", icon=":material/scatter_plot:"),
        st.Page("views/demo.py", title="Demo", icon=":material/play_circle:"),
    ]
    nav = st.navigation(pages)

    @st.fragment(run_every=3.0)
    def project_summary() -> None:
        """Counts that labeling (in a fragment, or another tab) changes."""
        if project is None:
            st.caption("No project open")
            return
        status = project.status()
        st.markdown(f"**{plain(project.root.name)}**")
        st.caption(f"{status['labeled']:,} of {status['items']:,} labeled · queue {status['queue']:,}"
                   + (" · training" if status["training"] else ""))

    with st.sidebar:
        project_summary()

    nav.run()


if get_script_run_ctx(suppress_warning=True) is None:  # imported by `streamlit run app.py`: serve
    from starlette.middleware import Middleware

    app = st.App(__file__, middleware=[Middleware(HostCheck)])
else:  # a page view (or AppTest)
    main()
