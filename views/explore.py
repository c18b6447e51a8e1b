"""Explore: a round's VAE latent space (or, for a round that trained no
VAE, the feature space its sampler picked in) in 2-D (UMAP), coloured by labeled /
unlabeled, class or discriminator score, with the next batch ringed.
Select points with a click, a box or the lasso to see them, label them in
one action, or push them to the front of the queue.

UMAP runs in a background worker the first time a round is shown (its
progress is polled), and is cached per round after that.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vaal_core.errors import VaalError
from vaal_core.learn import disc_quality
from vaal_core.maps import cache as maps
from vaal_core.maps import explore
from vaal_core.services import worker
from vaal_core.store import Project
from views.common import chart_text, picture, plain, require_project, show_error

GALLERY = 24
project = require_project()
st.title("Explore")

rounds = explore.latent_rounds(project)
if not rounds:
    st.info("No map yet: the map shows a round's VAE latents (vaal, coreset) or the feature space its images "
            "were picked in (auto, typiclust, probcover). Train a round with one of those samplers.")
    st.page_link("views/train.py", label="Train a round", icon=":material/model_training:")
    st.stop()

top = st.columns([1, 2, 3])
round_id = top[0].selectbox("Round", rounds[::-1], format_func=lambda r: f"round {r}")
colour = top[1].segmented_control("Colour by", ["Labeled", "Class", "Discriminator"], default="Labeled",
                                  key="explore_colour") or "Labeled"


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


# -- the figure -----------------------------------------------------------------

def hover(rows: np.ndarray) -> list[str]:
    """Each point's file path and label as text, one per line."""
    out = []
    for r in rows:
        lines = [chart_text(m.paths[r]), chart_text(m.labels[r]) if m.labels[r] else "unlabeled"]
        if m.disc_prob is not None and np.isfinite(m.disc_prob[r]):
            lines.append(f"P(labeled) {m.disc_prob[r]:.2f}")
        out.append("<br>".join(lines))
    return out


def trace(rows: np.ndarray, name: str, **marker) -> go.Scattergl:
    return go.Scattergl(x=m.xy[rows, 0], y=m.xy[rows, 1], mode="markers", name=chart_text(name),
                        customdata=m.ids[rows], hovertext=hover(rows), hoverinfo="text",
                        marker={"size": 5, "opacity": 0.8, **marker})


fig = go.Figure()
labeled = m.labeled[rows]
if colour == "Class":
    present = set(m.labels)
    names = [c for c in project.classes() if c in present]  # legend in key order
    fig.add_trace(trace(rows[~labeled], "unlabeled", color="#cbd5e1"))
    for name in names:
        fig.add_trace(trace(rows[np.array([m.labels[r] == name for r in rows], dtype=bool)], name))
elif colour == "Discriminator" and m.disc_prob is not None:
    fig.add_trace(trace(rows, "P(labeled)", color=m.disc_prob[rows], colorscale="Viridis", cmin=0, cmax=1,
                        colorbar={"title": "P(labeled)"}))
else:
    fig.add_trace(trace(rows[~labeled], "unlabeled", color="#94a3b8"))
    fig.add_trace(trace(rows[labeled], "labeled", color="#2563eb"))
queued = rows[m.queued[rows]]
if len(queued):
    fig.add_trace(trace(queued, "next batch", color="rgba(0,0,0,0)", size=9,
                        line={"color": "#f97316", "width": 2}, opacity=1.0))
fig.update_layout(height=620, margin={"t": 40, "b": 10, "l": 10, "r": 10}, dragmode="lasso",
                  # above the plot area, so a lasso starting in a corner never toggles a legend entry
                  legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"},
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
st.caption(note + ". Click, box or lasso points to select them.")
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key=f"map_{round_id}",
                        config={"displaylogo": False})


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


picked = selection_from(event)
if picked:
    st.session_state.setdefault("explore_sel", {})[round_id] = picked
else:
    st.session_state.get("explore_sel", {}).pop(round_id, None)

if not picked:
    st.caption("Nothing selected.")
    st.stop()

st.subheader(f"{len(picked):,} selected")
classes = project.classes()
a, b, c = st.columns([2, 2, 2], vertical_alignment="bottom")
target = a.selectbox("Class", classes) if classes else None  # a selectbox shows its options as plain text
if b.button(f"Label {len(picked):,} as this class", type="primary", disabled=target is None):
    try:
        n = project.set_labels([(i, target) for i in picked], source="explore")
    except VaalError as err:
        show_error(err)
    else:
        st.toast(f"{n:,} labels set to {plain(target)} (one undo on the Label page takes them back)")
        st.rerun()
if c.button(f"Push {len(picked):,} to the front of the queue"):
    project.push_to_front(picked)
    st.toast("They are next on the Label page")
st.page_link("views/label.py", label="Go to Label", icon=":material/label:")

if len(picked) == 1:  # one point clicked: the image large, with what the map knows of it
    item = project.item(picked[0])
    left, right = st.columns([1, 2])
    left.image(picture(project, item.id, 320)[0], width=320)
    right.text(item.path)
    row = int(np.flatnonzero(m.ids == item.id)[0])
    facts = [f"label: {item.label or 'unlabeled'}", f"in the next batch: {'yes' if m.queued[row] else 'no'}"]
    if m.disc_prob is not None and np.isfinite(m.disc_prob[row]):
        facts.append(f"discriminator P(labeled) in round {round_id}: {m.disc_prob[row]:.3f}")
    right.caption(plain(" · ".join(facts)))
    st.stop()

shown = picked[:GALLERY]
for start in range(0, len(shown), 8):
    cols = st.columns(8)
    for col, item_id in zip(cols, shown[start:start + 8]):
        img, _ = picture(project, item_id, 128 if len(picked) > 1 else 384)
        item = project.item(item_id)
        col.image(img, width="stretch")
        col.caption(f"{plain(item.path)} · {plain(item.label) if item.label else 'unlabeled'}")
if len(picked) > GALLERY:
    st.caption(f"Showing {GALLERY} of {len(picked):,}.")
