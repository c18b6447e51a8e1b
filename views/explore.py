"""Explore: a round's VAE latent space (or, for a round that trained no
VAE, the feature space its sampler picked in) in 2-D (UMAP), every image
drawn (views/latent_map.py: WebGL), coloured by labeled / class / sampler
score / discriminator / round picked, the next batch in black; the image
under the pointer appears beside it; Replay steps through the rounds.
Click a point to see why it is where it is in the queue, or pick Box or
Lasso to select a region; see the selection (paged, every image of it),
label it or push it to the front of the queue. An action on more than one
image asks first, naming the count, and acts on exactly the images it named.

UMAP runs in a background worker the first time a round is shown (its
progress is polled), and is cached per round after that.
"""

from __future__ import annotations

import uuid

import streamlit as st

from vaal_core.data.images import shown_path
from vaal_core.errors import LabelConflict, VaalError
from vaal_core.learn import disc_quality
from vaal_core.maps import cache as maps
from vaal_core.maps import explore
from vaal_core.services import label_words, labeling, worker, workspace
from views import label_parts, routes, team
from views.common import conflict_text, database_gone_in_words, picture, plain, require_project, show_error
from views.latent_map import COLOURS, latent_map

GALLERY = 24  # images per page of a selection: 3 rows of 8
project = require_project()
st.title("Explore")

rounds = explore.latent_rounds(project)
if not rounds:
    st.info("No map yet: the map shows a round's VAE latents (vaal, coreset) or the feature space its images "
            "were picked in (auto, typiclust, probcover). Train a round with one of those samplers.")
    st.page_link("views/train.py", label="Train a round", icon=":material/model_training:")
    st.stop()

top = st.columns([1, 4])
round_id = top[0].selectbox("Round", rounds[::-1], format_func=lambda r: f"round {r}")
colour = top[1].segmented_control("Colour by", list(COLOURS), default="Labeled", key="explore_colour") or "Labeled"


# -- the projection: from the cache, or computed in the background ------------

@st.fragment(run_every=1.0)
@database_gone_in_words
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
routes.warm(workspace.project_id(project.root), round_id)  # the map's points, made while the page loads


selected: list[int] = st.session_state.get("explore_sel", {}).get(round_id, [])
classes = project.classes()
round_metrics = project.round(round_id)["metrics"] or {}
if colour == "Discriminator" and not (project.round_dir(round_id) / "disc_prob.npy").is_file():
    st.caption("This round had no discriminator (a cold start, coreset or feature-space round): its points are "
               "drawn grey. Colour by Labeled or Sampler score instead.")
if colour == "Sampler score":
    current = project.current_round_id()
    sampler = project.round(current)["sampler"] if current is not None else "the sampler"
    st.caption(f"Sampler score: the order round {current}'s sampler ({plain(sampler)}) ranked the pool in, as a "
               "percentile (its scale differs from sampler to sampler; the Label page's \"Why this image?\" says "
               "what one image's score means).")
quality = disc_quality.of_round(round_metrics)
if quality is not None and quality["near_chance"]:
    st.warning(f"Round {round_id}: {quality['verdict']}", icon=":material/casino:")
space = "the feature space" if round_metrics.get("map_space") == "features" else "the VAE's latent space"
st.caption(f"The map of round {round_id} ({space}, in 2-D by UMAP). Labels, the next batch and pushed images are "
           "as they are now; Replay shows each round's labels and batch in turn.")
picked = latent_map(project, round_id, colour, selected, key=f"map_{round_id}")


# -- the selection ------------------------------------------------------------------

def void(what: str) -> None:
    """Forget a question whose selection or class changed since it was asked."""
    st.session_state.pop("explore_ask")
    st.info(f"The {what} changed after you were asked, so nothing was done: ask again.", icon=":material/undo:")


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
        project.set_labels([(i, label) for i in ids], author=team.current() or "user", source="explore", token=token,
                           seen=seen)
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


if len(picked) == 1:  # one point: the image large and why it is where it is in the queue; acts at once
    st.subheader("1 selected: why it is where it is")
    item = project.item(picked[0])
    left, right = st.columns([1, 2])
    left.image(picture(project, item.id, 320)[0], width=320)
    right.text(shown_path(item.path, item.gold))
    order = labeling.label_order(project)
    facts = label_words.round_facts(project, order.round_id) if order.round_id is not None else None
    right.caption(plain(f"label: {item.label or 'unlabeled'} · "
                        + label_words.place(order, item.id, facts, len(classes))))
    suggestion = project.suggestions([item.id]).get(item.id)
    if suggestion is not None and facts is not None:
        right.caption(label_words.suggestion_sentence(suggestion, facts.trust, lambda name: f"**{plain(name)}**"))
    with right:
        label_parts.why_card(project, order, item.id, project.labeled_ids(), facts, len(classes), expanded=True)
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
