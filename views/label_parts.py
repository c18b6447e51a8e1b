"""Pieces of the Label page that draw from what they are given (no page
state): the "Why this image?" card, the grid's tiles, the prompt to train
the next round, and the strip that follows a round training.

Not a page (app.py lists the pages). The words come from vaal_core
(services/label_words.py, samplers/words.py, maps/why.py); the page's
actions (labels, undo, moves) stay in views/label.py.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from PIL import Image

from vaal_core.data.images import cached_image, shown_path
from vaal_core.learn import calibration
from vaal_core.maps import why
from vaal_core.progress import Event, phase_label
from vaal_core.services import label_words, labeling, next_round, worker
from vaal_core.services.label_words import audit_marker
from vaal_core.store import Project, Suggestion
from views.common import database_gone_in_words, picture, plain

TILE = 150  # a grid thumbnail's largest side, px


def shown(item) -> str:
    """The path as the app may show it (a folder named after a hidden gold class is masked)."""
    return shown_path(item.path, item.gold)


def why_card(project: Project, order: labeling.LabelOrder, item_id: int, labeled: set[int],
             facts: label_words.RoundFacts | None, n_classes: int, expanded: bool = False) -> None:
    """'Why this image?': its rank and what its sampler does, its score in
    words, the discriminator's P(labeled), and its nearest labeled images
    in the round's map space (maps/why.py). Explore shows it open."""
    with st.expander("Why this image?", icon=":material/help:", expanded=expanded):
        if facts is None or item_id not in order.scores:
            st.caption(plain(label_words.place(order, item_id, facts, n_classes)))
            return
        st.caption(plain(label_words.how_chosen(order, item_id, facts)) + "  \nIts score: "
                   + plain(label_words.score_meaning(order, item_id, facts, n_classes)))
        if item_id in order.audit:
            st.caption(f":material/casino: {audit_marker(order)}: its score is not why it is in the batch.")
        found = why.why(project.round_dir(facts.round_id), item_id, labeled, facts.metrics.get("map_space"))
        if found.disc_prob is not None and (facts.sampler != "vaal" or facts.metrics.get("cold_start")):
            near = " (this round's discriminator is near chance: it says little)" if facts.near_chance else ""
            st.caption(f"The discriminator's P(labeled) for it: {found.disc_prob:.2f}{near}")  # vaal's score says it
        if found.nearest:
            st.caption(f"Its nearest labeled images in {found.space} (distance):")
            for col, (other, dist) in zip(st.columns(len(found.nearest)), found.nearest):
                it = project.item(other)
                col.image(picture(project, other, 96)[0], width=80)
                col.caption(f"{plain(it.label)} · {dist:.2f}", help=plain(shown(it)))
        elif found.space:
            st.caption("No labeled image in the round's map space yet.")
        recon = why.reconstruction(project.round_dir(facts.round_id), item_id)
        if recon is not None:
            size = recon.shape[0]
            st.caption(f"The image as the round's VAE takes it ({size}x{size} px), and what its decoder draws "
                       "back from the image's latent mean: what the sampler's space kept of it.")
            a, b, _ = st.columns([1, 1, 2])
            a.image(cached_image(project, project.item(item_id)).resize((128, 128)), width=128, caption="the image")
            b.image(Image.fromarray(recon).resize((128, 128)), width=128, caption="the VAE's reconstruction")


def tiles(project: Project, order: labeling.LabelOrder, ids: list[int], suggestions: dict[int, Suggestion],
          trust: calibration.Trust | None) -> None:
    """The grid's images: every tile the same size, one line of path and one
    of notes whatever it holds, so the page does not reflow from one key to
    the next. ✓ marks a suggestion the grid's Enter accepts."""
    for row in range(0, len(ids), 4):
        for col, item_id in zip(st.columns(4, gap="small"), ids[row:row + 4]):
            with col.container(height=TILE + 100, border=False, key=f"tile_{row}_{item_id}"):
                item = project.item(item_id)
                st.image(picture(project, item_id, TILE)[0], width=TILE)
                st.checkbox(plain(shown(item)), key=f"sel_{item_id}", help=plain(shown(item)))
                notes = []
                s = suggestions.get(item_id)
                if s is not None:
                    mark = " ✓" if trust is not None and calibration.preselect(s.confidence, trust) else ""
                    notes.append(f"Suggested: {plain(s.label)} · {s.confidence:.0%}{mark}")
                if item_id in order.audit:
                    notes.append(":material/casino: random audit pick")
                st.caption(" · ".join(notes) or "no suggestion",
                           help=audit_marker(order) if item_id in order.audit else None)


def batch_progress(project: Project, order: labeling.LabelOrder, labeled: set[int],
                   start: Callable[[next_round.NextRound], None]) -> None:
    """The batch's progress; once it is all labeled (and no round trains),
    the prompt to train the next round like the last one in its place, one
    button calling `start` (labeling goes on below)."""
    batch = order.ids[:order.batch] if order.batch else order.ids
    done = sum(i in labeled for i in batch)
    if order.batch:
        text = f"{done:,} of {len(batch):,} labeled in this round's batch · {len(labeled):,} in the project"
    else:
        text = f"{done:,} of {len(batch):,} images labeled"
    plan = None
    if order.round_id is not None and order.batch and done == len(batch) and not next_round.busy(project):
        plan = next_round.like_last(project)
    if plan is None:
        st.progress(done / max(len(batch), 1), text=text)
        return
    with st.container(border=True, key="batch_done"):
        a, b = st.columns([3, 1], vertical_alignment="center")
        a.markdown(f"**Round {order.round_id}'s batch is labeled.** Train round {plan.number} with the same "
                   f"settings? ({plain(plan.words())}" + (f"; {plain(plan.dropped)})" if plan.dropped else ")"))
        b.button(f"Train round {plan.number}", key=f"next_round_{order.round_id}", on_click=start, args=(plan,),
                 type="primary", icon=":material/play_arrow:", width="stretch")


@st.fragment(run_every=2.0)
@database_gone_in_words(quiet=True)  # the view below says it; this strip's next run notices the way back
def training_strip(project: Project) -> None:
    """Polls the store: says when a round trains (or its worker is still
    starting, or could not start), and swaps the new queue in (a full
    rerun) the moment one finishes."""
    status = project.status(team=False)
    seen = st.session_state.setdefault("label_round", status["current_round"])
    if status["current_round"] != seen:
        st.session_state["label_round"] = status["current_round"]
        st.session_state.pop("cursor", None)  # start at the top of the new queue
        st.session_state.pop("last_action", None)
        # Said by the run this rerun starts, not before it: a toast sent just
        # before st.rerun(), in the first run after the tab came from another
        # page, blanked the tab (Streamlit's frontend: "Bad delta path index";
        # 2 of 3 newcomer browser runs).
        st.session_state["round_toast"] = (f"Round {status['current_round']} finished: a new queue of "
                                           f"{status['queue']:,} images")
        st.rerun()
    toast = st.session_state.pop("round_toast", None)
    if toast:
        st.toast(toast, icon=":material/autorenew:")
    last = status["last_round"]
    job = worker.round_worker(project)
    if status["training"] and last and last["status"] == "running":
        prog = last.get("progress") or {}
        now = (prog.get("phases") or {}).get(prog.get("phase"))
        what = Event.from_dict(now).describe() if now else phase_label(prog.get("phase", "start"))
        st.info(f"Round {last['id']} ({last['sampler']}) is training in the background: {what}. "
                "Keep labeling: the new queue appears when it is done.", icon=":material/hourglass_top:")
    elif job is not None and job.running:  # the worker has not opened its round yet (importing PyTorch)
        st.info("Starting the training worker (loading PyTorch)... Keep labeling.", icon=":material/hourglass_top:")
    elif job is not None and job.error and job.started_at > ((project.last_round() or {}).get("created_at") or ""):
        st.error(f"The last round could not start: {plain(job.error)}", icon=":material/error:")  # before its row
