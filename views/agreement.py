"""The Project page's Team tab: where the store lives, who labeled what,
the overlap setting, agreement per pair of annotators, and the conflicts to
review, each resolved in one click (store/team.py holds the rules).

UI only: every figure comes from the store through `Project`.
"""

from __future__ import annotations

import streamlit as st

from views import team
from views.common import picture, plain, show_error
from vaal_core.data.images import shown_path
from vaal_core.errors import VaalError
from vaal_core.store import Project

CONFLICTS_SHOWN = 12  # a page of them: resolving one brings the next up


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _resolve(project: Project, item_id: int, label: str, reviewer: str) -> None:
    try:
        project.resolve_conflict(item_id, label, reviewer)
    except VaalError as err:
        st.session_state["team_error"] = str(err)
    else:
        st.session_state["team_done"] = f"#{item_id} resolved as {label} by {reviewer}"


def team_section(project: Project) -> None:
    where = ("SQLite, in the project folder (one app server; fine for one person or a few on one server)"
             if project.backend == "sqlite" else f"PostgreSQL: {project.db.where()}")
    st.caption(f"Store: {plain(where)}")
    if "team_error" in st.session_state:
        st.error(plain(st.session_state.pop("team_error")))
    if "team_done" in st.session_state:
        st.success(plain(st.session_state.pop("team_done")), icon=":material/gavel:")

    by = project.labels_by_annotator()
    leases = project.leases()
    a, b = st.columns(2)
    with a:
        st.markdown("**Labels by annotator** (who gave each image's current label)")
        if by:
            st.dataframe([{"annotator": k, "labels": v} for k, v in by.items()], hide_index=True, width="stretch")
        else:
            st.caption("No labels yet.")
        holders = sorted({x["annotator"] for x in leases})
        st.caption(f"On screen now: {_count(len(leases), 'image')} held by {_count(len(holders), 'annotator')}"
                   + (f" ({plain(', '.join(holders))})" if holders else "")
                   + ". An image is held while someone looks at it and freed after 5 idle minutes.")
    with b, st.form("overlap_form", border=False):
        share = st.number_input("Overlap: % of images two annotators label independently", min_value=0,
                                max_value=100, value=int(round(project.overlap() * 100)), step=5,
                                help="Those images come back to a second annotator with the first one's label "
                                     "hidden; their agreement is measured below.")
        if st.form_submit_button("Save overlap"):
            try:
                project.set_overlap(share / 100)
            except VaalError as err:
                show_error(err)
            else:
                st.toast(f"Overlap set to {share}%")

    pairs = project.agreement()
    st.markdown("**Agreement per pair**, on the doubled images both labeled")
    if pairs:
        st.dataframe([{"annotators": f"{p['a']} & {p['b']}", "images both labeled": p["n"],
                       "agreement": f"{p['agree']:.0%}",
                       "Cohen's kappa": "undefined (one class only)" if p["kappa"] is None else f"{p['kappa']:.2f}"}
                      for p in pairs], hide_index=True, width="stretch")
        st.caption("Cohen's kappa: agreement beyond what chance gives with each annotator's own class shares "
                   "(1 perfect, 0 chance level).")
    else:
        st.caption("None yet: set an overlap above; the doubled images count once two annotators have labeled them.")

    conflicts = project.conflicts()
    st.markdown(f"**Conflicts to review: {len(conflicts):,}**")
    if not conflicts:
        st.caption("Images two annotators disagree on appear here. Until resolved, training leaves them out.")
        return
    st.caption("Training leaves these out until a reviewer picks the class; the pick is a label like any other "
               "(kept in the history, undoable).")
    reviewer = st.session_state.get("annotator") or st.query_params.get(team.WHO_KEY)
    if team.sign_in_configured() and st.user.is_logged_in:
        reviewer = str(st.user.get("email") or st.user.get("name"))
    if not reviewer:
        st.info("Give your name to review: it is recorded with each resolution.")
        team.ask_name()
        return
    classes = project.classes()
    for c in conflicts[:CONFLICTS_SHOWN]:
        item = project.item(c["item_id"])
        with st.container(border=True, key=f"conflict_{c['item_id']}"):
            img_col, text_col = st.columns([1, 4], vertical_alignment="center")
            img, _ = picture(project, item.id, 96)
            img_col.image(img, width=96)
            text_col.markdown(f"{plain(shown_path(item.path, item.gold))} · "
                              + " · ".join(f"{plain(a)} says **{plain(n)}**" for a, n in c["by"].items()))
            given = list(dict.fromkeys(c["by"].values()))
            cols = text_col.columns(len(given) + 1)
            for col, name in zip(cols, given):
                col.button(f"It is {name}", key=f"resolve_{c['item_id']}_{name}", on_click=_resolve,
                           args=(project, c["item_id"], name, reviewer), width="stretch")
            other = [n for n in classes if n not in given]
            if other:
                pick = cols[-1].selectbox("Another class", other, index=None, key=f"other_{c['item_id']}",
                                          placeholder="Another class...", label_visibility="collapsed")
                if pick:
                    _resolve(project, c["item_id"], pick, reviewer)
                    st.rerun()
    if len(conflicts) > CONFLICTS_SHOWN:
        st.caption(f"and {len(conflicts) - CONFLICTS_SHOWN:,} more: they come up as these are resolved.")
