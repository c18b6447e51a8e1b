"""What every page shares: the open project, text escaping, error display.

Not a page itself (app.py lists the pages). UI only: everything it does to
a project goes through vaal_core.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

import streamlit as st
from PIL import Image

from vaal_core.data.images import load_image
from vaal_core.errors import VaalError
from vaal_core.services import workspace
from vaal_core.store import DB_NAME, Project

QUERY_KEY = "project"  # ?project=<id> keeps the project through a refresh or a restart
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def plain(text: Any) -> str:
    """User text (class names, file names) made safe for a markdown label:
    every markdown character escaped, so '**x**' or '<b>' shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


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
    db = os.path.join(path, DB_NAME)
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
            st.session_state["project_error"] = (
                f"This address names a project this app does not know (id {plain(wanted)}); "
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
        st.info(st.session_state.get("project_error") or "No project is open yet.")
        st.page_link("views/project.py", label="Open or create a project", icon=":material/folder_open:")
        st.stop()
    return project


def show_error(err: Exception) -> None:
    """A VaalError's message is written for people; anything else is a bug,
    shown with its type so it can be reported."""
    st.error(str(err) if isinstance(err, VaalError) else f"{type(err).__name__}: {err}", icon=":material/error:")


def class_keys(classes: list[str]) -> list[str | None]:
    """Number keys for the classes in their order: 1-9, then 0 for the
    tenth; classes past the tenth get no key."""
    keys = [str(k) for k in range(1, 10)] + ["0"]
    return [keys[i] if i < len(keys) else None for i in range(len(classes))]


@st.cache_resource(max_entries=512, show_spinner=False)
def _picture(path: str, item_id: int, side: int, _project: Project) -> tuple[Image.Image, str | None]:
    img, note = load_image(_project, _project.item(item_id), max_side=side)
    if max(img.size) < side // 2:  # tiny images (CIFAR, digits): crisp pixels, not a blur
        factor = max(1, side // max(img.size))
        img = img.resize((img.width * factor, img.height * factor), Image.NEAREST)
    return img, note


def picture(project: Project, item_id: int, side: int) -> tuple[Image.Image, str | None]:
    """An item's image no larger than `side` (tiny ones enlarged), and a note
    when the cached copy stands in for a missing original."""
    return _picture(str(project.root), item_id, side, project)
