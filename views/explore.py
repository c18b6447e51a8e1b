"""Explore: a round's VAE latent space (or, for a round that trained no
VAE, the feature space its sampler picked in) in 2-D (UMAP), coloured by labeled /
unlabeled, class or discriminator score, with the next batch ringed.
Click a point to select it, or pick the box or lasso to select a region;
see the selection (paged, every image of it), label it or push it to the
front of the queue. An action on more than one image asks first, naming
the count, and acts on exactly the images it named.

UMAP runs in a background worker the first time a round is shown (its
progress is polled), and is cached per round after that.
"""

from __future__ import annotations

import uuid

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vaal_core.data.images import shown_path
from vaal_core.errors import LabelConflict, VaalError
from vaal_core.learn import disc_quality
from vaal_core.maps import cache as maps
from vaal_core.maps import explore
from vaal_core.services import worker
from vaal_core.store import Project
from vaal_core.maps import palette
from views.common import chart_text, conflict_text, picture, plain, require_project, show_error

GALLERY = 24  # images per page of a selection: 3 rows of 8
# "Select with" -> Plotly's drag mode. Streamlit makes a click select a point
# only when the drag mode is not box or lasso (it sets clickmode to
# "event+select" for pan, "event" for select/lasso), so "Click" drags to pan.
TOOLS = {"Click": "pan", "Box": "select", "Lasso": "lasso"}
project = require_project()
st.title("Explore")

rounds = explore.latent_rounds(project)
if not rounds:
    st.info("No map yet: the map shows a round's VAE latents (vaal, coreset) or the feature space its images "
            "were picked in (auto, typiclust, probcover). Train a round with one of those samplers.")
    st.page_link("views/train.py", label="Train a round", icon=":material/model_training:")
    st.stop()

top = st.columns([1, 2, 2])
round_id = top[0].selectbox("Round", rounds[::-1], format_func=lambda r: f"round {r}")
colour = top[1].segmented_control("Colour by", ["Labeled", "Class", "Discriminator"], default="Labeled",
                                  key="explore_colour") or "Labeled"
tool = top[2].segmented_control("Select with", list(TOOLS), default="Click", key="explore_tool") or "Click"


# -- the projection: from the cache, or computed in the background ------------

@st.fragment(run_every=1.0)
def wait_for_projection(round_id: int) -> None:
    if maps.has_projection(project, round_id):
        st.rerun()
    job = worker.embed_worker(project)
    if job is None or not job.running:
        if job is not None and job.error and st.session_state.get("embed_started") == round_id:
            st.error(f"The map could not be computed: {plain(job.error)}")
            if st.button("Try again"):
                st.session_state.pop("embed_started")
                st.rerun()
            return
        try:
            worker.start_embed(project, round_id)
            st.session_state["embed_started"] = round_id
        except VaalError as err:
            show_error(err)
            return
    event = maps.projection_progress(project, round_id)
    st.progress(event.fraction if event else 0.0,
                text=f"Computing the map of round {round_id} (first time only): "
                     + (event.describe() if event else "starting UMAP"))


if not maps.has_projection(project, round_id):
    wait_for_projection(round_id)
    st.stop()


@st.cache_resource(max_entries=4, show_spinner=False)
def _projection(path: str, round_id: int, _project: Project) -> maps.Projection:
    return maps.round_projection(_project, round_id)


@st.cache_resource(max_entries=4, show_spinner=False)
def _map(path: str, round_id: int, labels: tuple, queue_round: int | None, _project: Project) -> explore.LatentMap:
    # Rebuilt only when labels or the queue change, not on every selection rerun.
    return explore.latent_map(_project, _projection(path, round_id, _project))


m = _map(str(project.root), round_id, project.label_version(), project.current_round_id(), project)
selected: set[int] = set(st.session_state.get("explore_sel", {}).get(round_id, []))
rows = explore.drawn(m, selected)
classes = project.classes()


# -- the figure -----------------------------------------------------------------

def hover(rows: np.ndarray) -> list[str]:
    """Each point's path (as the app may show it: m.paths) and label, one per line."""
    out = []
    for r in rows:
        lines = [chart_text(m.paths[r]), chart_text(m.labels[r]) if m.labels[r] else "unlabeled"]
        if m.queued[r]:
            lines.append("in the next batch")
        if m.disc_prob is not None and np.isfinite(m.disc_prob[r]):
            lines.append(f"P(labeled) {m.disc_prob[r]:.2f}")
        out.append("<br>".join(lines))
    return out


def trace(rows: np.ndarray, name: str, marker: dict) -> go.Scattergl:
    return go.Scattergl(x=m.xy[rows, 0], y=m.xy[rows, 1], mode="markers", name=chart_text(name),
                        customdata=m.ids[rows], hovertext=hover(rows), hoverinfo="text", marker=marker)


fig = go.Figure()
labeled = m.labeled[rows]
if colour == "Discriminator" and m.disc_prob is not None:
    fig.add_trace(trace(rows, "P(labeled)", {"size": 6, "opacity": 0.85, "color": m.disc_prob[rows],
                                             "colorscale": "Viridis", "cmin": 0, "cmax": 1,
                                             "colorbar": {"title": "P(labeled)"}}))
else:
    # unlabeled first: WebGL draws traces in order, so the labeled points lie on top
    fig.add_trace(trace(rows[~labeled], "unlabeled", palette.UNLABELED_MARKER))
    if colour == "Class":
        present = set(m.labels)
        for name in [c for c in classes if c in present]:  # legend in key order, colours by key order
            fig.add_trace(trace(rows[np.array([m.labels[r] == name for r in rows], dtype=bool)], name,
                                palette.class_marker(classes, name)))
    else:
        fig.add_trace(trace(rows[labeled], "labeled", {**palette.LABELED_MARKER, "color": palette.LABELED_COLOR}))
queued = rows[m.queued[rows]]
if len(queued):
    fig.add_trace(trace(queued, "next batch", palette.NEXT_BATCH_MARKER))
# A selected point grows and stays opaque; Plotly fades the rest.
fig.update_traces(selected={"marker": {"opacity": 1.0, "size": 11}}, unselected={"marker": {"opacity": 0.25}})
# 420 px: the whole map and its legend fit a 1280x720 window under the page's controls
fig.update_layout(height=420, margin={"t": 30, "b": 10, "l": 10, "r": 10}, dragmode=TOOLS[tool],
                  # right of the plot area, top down: a lasso starting in a corner never toggles a legend
                  # entry, ten classes' entries stay clear of the tool bar, and all are on screen with the map
                  legend={"orientation": "v", "x": 1.0, "xanchor": "left", "y": 1.0, "yanchor": "top"},
                  xaxis={"visible": False}, yaxis={"visible": False},
                  uirevision=f"map-{round_id}")  # keep zoom while colours change

if colour == "Discriminator" and m.disc_prob is None:
    st.caption("This round had no discriminator (a cold start, coreset or feature-space round): colouring by "
               "labels instead.")
round_metrics = project.round(round_id)["metrics"] or {}
quality = disc_quality.of_round(round_metrics)
if quality is not None and quality["near_chance"]:
    st.warning(f"Round {round_id}: {quality['verdict']}", icon=":material/casino:")
space = "the feature space" if round_metrics.get("map_space") == "features" else "the VAE's latent space"
note = f"{len(m.ids):,} images on the map of round {round_id} ({space})"
if len(rows) < len(m.ids):
    note += (f"; drawing {len(rows):,}: every labeled and queued image plus a fixed random sample of the rest "
             f"(the browser stays fast)")
if m.not_on_map:
    note += f"; {m.not_on_map:,} images added since this round are not on it"
how = {"Click": "Click a point to select it (shift-click adds more); drag to move the map",
       "Box": "Drag a box around points to select them", "Lasso": "Draw around points to select them"}[tool]
st.caption(f"{note}. {how}.")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key=f"map_{round_id}",
                        config={"displaylogo": False, "scrollZoom": True})


# -- the selection ------------------------------------------------------------------

def selection_from(event) -> list[int]:
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", []) or []
    ids = []
    for p in points:
        data = p.get("customdata")
        if isinstance(data, list):
            data = data[0] if data else None
        if data is not None:
            ids.append(int(data))
    return list(dict.fromkeys(ids))


def void(what: str) -> None:
    """Forget a question whose selection or class changed since it was asked."""
    st.session_state.pop("explore_ask")
    st.info(f"The {what} changed after you were asked, so nothing was done: ask again.", icon=":material/undo:")


picked = selection_from(event)
if picked:
    st.session_state.setdefault("explore_sel", {})[round_id] = picked
else:
    st.session_state.get("explore_sel", {}).pop(round_id, None)
# A question asked on an earlier run holds only while the selection and the map
# are the ones it named (and the class, checked below); else nothing is done.
question: explore.Question | None = st.session_state.get("explore_ask")
if question is not None and not question.holds(picked, question.label, round_id):
    void("selection")
    question = None

if not picked:
    st.caption("Nothing selected.")
    st.stop()


def choose_class(where) -> str | None:
    """The class to label with: none until the user picks one (a new widget
    after each label, so the last class is never silently reused)."""
    key = f"explore_class_{st.session_state.get('explore_class_gen', 0)}"
    if not classes:
        return None
    return where.selectbox("Class", classes, index=None, placeholder="Choose a class", key=key)


def labeled_now(ids, label: str, token: str | None = None, seen: dict | None = None) -> None:
    """Label `ids` in one undoable action (refused if any label changed
    since it was shown: `seen`), then start the page afresh."""
    try:
        project.set_labels([(i, label) for i in ids], source="explore", token=token, seen=seen)
    except LabelConflict as err:
        st.error(conflict_text(project, err) + " Nothing was labeled: look at the selection again.",
                 icon=":material/group:")
        return
    except VaalError as err:
        show_error(err)
        return
    st.session_state["explore_class_gen"] = st.session_state.get("explore_class_gen", 0) + 1
    many = f"{len(ids):,} images" if len(ids) > 1 else "1 image"
    st.toast(f"{many} labeled {plain(label)} (one undo on the Label page takes {'them' if len(ids) > 1 else 'it'} "
             f"back)")
    st.rerun()


if len(picked) == 1:  # one point: the image large, with what the map knows of it; acts at once
    st.subheader("1 selected")
    item = project.item(picked[0])
    left, right = st.columns([1, 2])
    left.image(picture(project, item.id, 320)[0], width=320)
    right.text(shown_path(item.path, item.gold))
    row = int(np.flatnonzero(m.ids == item.id)[0])
    facts = [f"label: {item.label or 'unlabeled'}", f"in the next batch: {'yes' if m.queued[row] else 'no'}"]
    if m.disc_prob is not None and np.isfinite(m.disc_prob[row]):
        facts.append(f"discriminator P(labeled) in round {round_id}: {m.disc_prob[row]:.3f}")
    right.caption(plain(" · ".join(facts)))
    a, b, c = right.columns([2, 2, 2], vertical_alignment="bottom")
    target = choose_class(a)
    if b.button(f"Label as {plain(target)}" if target else "Label as…", type="primary", disabled=target is None,
                help=None if target else "Choose a class first"):
        labeled_now([item.id], target, seen={item.id: item.label})
    if c.button("Push to the front of the queue"):
        project.push_to_front([item.id])
        st.toast("It is next on the Label page")
    right.page_link("views/label.py", label="Go to Label", icon=":material/label:")
    st.stop()


# -- many points: ask once, naming the count, and act on exactly those ---------------

n = len(picked)
st.subheader(f"{n:,} selected")
a, b, c = st.columns([2, 2, 2], vertical_alignment="bottom")
target = choose_class(a)

if question is not None and not question.holds(picked, target, round_id):
    void("class")
    question = None

# Asking is a plain button; the one primary (orange) button is the answer "Yes".
if b.button(f"Label {n:,} images as {plain(target)}…" if target else f"Label {n:,} images as…",
            disabled=target is None, help=None if target else "Choose a class first"):
    now = project.labels()
    question = explore.Question("label", tuple(picked), target, round_id, uuid.uuid4().hex,
                                tuple((i, now.get(i)) for i in picked))
if c.button(f"Push {n:,} to the front of the queue…"):
    question = explore.Question("push", tuple(picked), None, round_id, uuid.uuid4().hex)
st.session_state["explore_ask"] = question

if question is not None:
    with st.container(border=True):
        if question.action == "label":
            st.warning(f"Label {n:,} images as {plain(question.label)}?", icon=":material/help:")
            relabel = sum(1 for _, was in question.seen if was is not None and was != question.label)
            st.caption(f"Exactly the {n:,} images below (page through them all)"
                       + (f"; {relabel:,} of them have another label now, which this replaces" if relabel else "")
                       + ". One undo on the Label page takes them all back.")
            yes = f"Yes, label {n:,} as {plain(question.label)}"
        else:
            st.warning(f"Put these {n:,} images at the front of the Label page's queue?", icon=":material/help:")
            st.caption("They come next on the Label page, in the order selected, ahead of the round's batch.")
            yes = f"Yes, push {n:,}"
        ok, cancel, _ = st.columns([2, 1, 3])
        if ok.button(yes, type="primary", key=f"yes_{question.token}"):
            st.session_state.pop("explore_ask")
            if question.action == "label":
                labeled_now(question.ids, question.label, token=question.token, seen=dict(question.seen))
            else:
                project.push_to_front(list(question.ids))
                st.toast(f"{n:,} images are next on the Label page")
                st.rerun()
        if cancel.button("Cancel", key=f"no_{question.token}"):
            st.session_state.pop("explore_ask")
            st.rerun()

# -- the selection's images, paged: every one can be seen before confirming ----------

def turn(key: str, by: int) -> None:
    # a callback: the page number is settled before the buttons are drawn, so
    # Previous / Next are enabled for the page actually shown
    held, page = st.session_state.get("explore_page", (key, 0))
    st.session_state["explore_page"] = (key, (page if held == key else 0) + by)


sel_key = explore.selection_key(picked, round_id)
if st.session_state.get("explore_page", ("", 0))[0] != sel_key:
    st.session_state["explore_page"] = (sel_key, 0)  # a new selection starts at its first page
start, stop, page = explore.page_span(n, st.session_state["explore_page"][1], GALLERY)
st.session_state["explore_page"] = (sel_key, page)
prev, where, nxt = st.columns([1, 4, 1], vertical_alignment="center")
prev.button("Previous", icon=":material/chevron_left:", disabled=page == 0, width="stretch",
            on_click=turn, args=(sel_key, -1))
nxt.button("Next", icon=":material/chevron_right:", disabled=stop >= n, width="stretch",
           on_click=turn, args=(sel_key, 1))
where.markdown(f"images {start + 1:,}-{stop:,} of {n:,} (page {page + 1} of {-(-n // GALLERY)})"
               if n > GALLERY else f"all {n:,} images")
items = {it.id: it for it in project.items(picked[start:stop])}
for first in range(start, stop, 8):
    cols = st.columns(8)
    for col, item_id in zip(cols, picked[first:min(stop, first + 8)]):
        item = items[item_id]
        col.image(picture(project, item_id, 128)[0], width="stretch")
        col.caption(f"{plain(shown_path(item.path, item.gold))} · {plain(item.label) if item.label else 'unlabeled'}")
st.page_link("views/label.py", label="Go to Label", icon=":material/label:")
