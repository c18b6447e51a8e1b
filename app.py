"""VAAL Studio's Streamlit entry point.

For now a single status page over the engine; the labeling, training,
exploring and demo pages come with the app issue. Open a project with
`streamlit run app.py -- --project PATH` or the VAAL_PROJECT variable.
"""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from vaal_core.errors import VaalError
from vaal_core.project import Project


def project_arg() -> str | None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--project")
    known, _ = parser.parse_known_args(sys.argv[1:])
    return known.project or os.environ.get("VAAL_PROJECT")


st.set_page_config(page_title="VAAL Studio", layout="wide")
st.title("VAAL Studio")
st.caption("Active learning for your image folders: a VAAL discriminator ranks what to label next.")

path = project_arg()
if not path:
    st.info("No project open. Create one with `python -m vaal_core init PROJECT --images DIR`, "
            "then start the app with `make run PROJECT=PROJECT`.")
    st.stop()
try:
    status = Project.open(path).status()
except VaalError as err:
    st.error(str(err))
    st.stop()

st.subheader(status["project"])
cols = st.columns(4)
for col, key in zip(cols, ("items", "labeled", "unlabeled", "skipped")):
    col.metric(key.capitalize(), status[key])
st.write("Labels per class")
st.dataframe({"class": list(status["per_class"]), "labels": list(status["per_class"].values())},
             hide_index=True)
st.write(f"Rounds: {status['rounds']} · queue: {status['queue']} items")
