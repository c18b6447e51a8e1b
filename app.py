"""VAAL Studio's Streamlit entry point: navigation, the open project, and the
sidebar every page shares.

    streamlit run app.py -- --project PATH     (or VAAL_PROJECT=PATH)

With no project at all (a newcomer's first `make run`), it builds the digits
demo project so there is something to label at once.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from views.common import current_project, plain, select_project, show_error
from vaal_core.errors import VaalError
from vaal_core.services import workspace

ASSETS = Path(__file__).parent / "assets"
# Pages live in views/, not pages/: Streamlit treats a folder named pages/
# beside the entry script as a legacy multipage app until this script has
# run once, so after a server restart a tab reconnecting on /train would run
# that page alone, without this file's project and navigation.

st.set_page_config(page_title="VAAL Studio", page_icon=str(ASSETS / "logo.png"), layout="wide")
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
