"""Label: the current round's queue, best first, keyboard first.

Number keys give a class (1-9, then 0), S skips ("not now": the image is
postponed to the end of this round's order), Z undoes, the arrow keys move. When the current round trained a task model, its suggestion for the
image is shown and Enter accepts it, by the same path as a class key. Every
label is one SQLite transaction the moment it is given; the page keeps only
where the cursor is, so a refresh, a second tab or a server restart resumes
at the next unlabeled image.

A press can only label the image it was pressed on: every drawing of the
page gives its buttons keys of their own (the image's id and a fresh
token), so a press that reaches the server after the page moved on still
names the image the person saw, and the store writes each token once and
refuses a label that changed since the page showed it (another tab), saying
so, instead of overwriting it.
"""

from __future__ import annotations

import uuid

import streamlit as st

from views import keyboard
from views.common import class_keys, picture, plain, require_project
from vaal_core.data.images import image_root_problem
from vaal_core.errors import LabelConflict, VaalError
from vaal_core.learn import disc_quality
from vaal_core.progress import Event, phase_label
from vaal_core.services import labeling
from vaal_core.store import Project, Suggestion
from vaal_core.store.labels import SOURCE_WORDS, ago

GRID = 16  # 4 x 4 thumbnails
SINGLE_WIDTH = 448

project = require_project()
classes = project.classes()
st.title("Label")
if not classes:
    st.warning("This project has no classes yet: add them on the Project page, in the order of the number keys.")
    st.page_link("views/project.py", label="Edit classes", icon=":material/edit:")
    st.stop()
problem = image_root_problem(project)
if problem:
    st.warning(plain(problem), icon=":material/folder_off:")
KEYS = class_keys(classes)


@st.cache_resource(max_entries=8, show_spinner=False)
def _order(path: str, version: tuple, _project: Project) -> labeling.LabelOrder:
    return labeling.label_order(_project)


def current_order() -> labeling.LabelOrder:
    return _order(str(project.root), labeling.order_version(project), project)


def audit_marker(order: labeling.LabelOrder) -> str:
    """The plain note an audit pick carries (loop/audit.py)."""
    return (f"random audit pick ({order.audit_fraction:.0%} of this batch is drawn at random, so the accuracy "
            "estimate is honest)")


def queue_note(order: labeling.LabelOrder) -> None:
    """Says so when the queue's round ranked with a discriminator that is
    near chance (disc_quality): then 'rank 1' means little."""
    if order.round_id is None:
        return
    d = disc_quality.of_round(project.round(order.round_id)["metrics"])
    if d is not None and d["near_chance"]:
        st.warning(d["verdict"], icon=":material/casino:")


# Each sampler scores on its own scale (VAAL: 1 - P(labeled); typiclust: its pick order); only the order is
# comparable, so the page never lets a score pass for a confidence.
SCORE_MEANS = "(the sampler's ranking score: higher comes first; not a probability)"


def where(order: labeling.LabelOrder, item_id: int) -> str:
    """Why this image is here, in words."""
    if item_id in order.pushed:
        return "pushed to the front from Explore"
    if order.round_id is None:
        return "no round trained yet: images in random order (train a round for a ranked queue)"
    if item_id in order.ranks:
        return (f"rank {order.ranks[item_id]:,} of {len(order.ranks):,} in round {order.round_id}'s batch · "
                f"score {order.scores[item_id]:.3f} {SCORE_MEANS}")
    if item_id in order.scores:
        return f"beyond round {order.round_id}'s batch · score {order.scores[item_id]:.3f} {SCORE_MEANS}"
    return "added after the last round (not scored yet)"


# -- actions (button callbacks: they run before the fragment re-renders) ----

PAGE_SOURCES = ("ui", "suggestion", "grid")  # labels given on this page


def drawing() -> str:
    """A token for one drawing of a view: this tab's id and a fresh part.
    Buttons are keyed by it (and the image), so each press names the
    drawing it was made on; the store writes each token once."""
    tab = st.session_state.setdefault("tab_id", uuid.uuid4().hex[:8])
    return f"{tab}-{uuid.uuid4().hex[:10]}"


def conflict_text(err: LabelConflict) -> str:
    """The store's refusal, with 'in another tab' when the label came from
    this page in a tab other than this one."""
    _, path, label, seconds, source, token = err.changed[0]
    mine = (token or "").startswith(st.session_state.get("tab_id", "?") + "-")
    where = SOURCE_WORDS.get(source, "")
    if source in PAGE_SOURCES:
        where = "in this tab" if mine else "in another tab"
    what = f"was labeled **{plain(label)}**" if label else "was unlabeled"
    more = f" (and {len(err.changed) - 1} more of them)" if len(err.changed) > 1 else ""
    return f"{plain(path)} {what} {where} {ago(seconds)}, after this page showed it{more}."


def _move_to(order: labeling.LabelOrder, pos: int | None) -> None:
    st.session_state["cursor"] = None if pos is None else order.ids[pos]


def give_label(item_id: int, pos: int, name: str, source: str, seen: str | None, token: str | None) -> None:
    """A class key, a class button, or Enter on a suggestion (source
    "suggestion", so the history tells accepted guesses from typed labels).
    `seen` is the label the page showed; None as token forces the write
    (the Replace button of a conflict)."""
    order = current_order()
    labeled, postponed = project.labeled_ids() | {item_id}, project.postponed_ids() - {item_id}
    try:
        row = project.set_label(item_id, name, source=source, token=token,
                                seen=None if token is None else {item_id: seen})
    except LabelConflict as err:
        st.session_state["conflict"] = {"item_id": item_id, "pos": pos, "name": name, "source": source,
                                        "text": conflict_text(err)}
        st.session_state["cursor"] = item_id  # stay on it: the person decides
        return
    except VaalError as err:
        st.session_state["label_error"] = str(err)
        return
    st.session_state.pop("conflict", None)
    if row is None:
        return  # the same press a second time: written once already
    accepted = " (accepted suggestion)" if source == "suggestion" else ""
    st.session_state["last_action"] = f"{project.item(item_id).path} → {name}{accepted}"
    _move_to(order, labeling.next_to_label(order, labeled, postponed, pos + 1))


def keep_theirs(pos: int) -> None:
    """A conflict's 'Keep': leave the other label and go on."""
    st.session_state.pop("conflict", None)
    order = current_order()
    _move_to(order, labeling.next_to_label(order, project.labeled_ids(), project.postponed_ids(), pos + 1))


def skip(item_id: int, pos: int, token: str) -> None:
    order = current_order()
    project.postpone(item_id, token=token)
    nxt = labeling.next_to_label(order, project.labeled_ids(), project.postponed_ids(), pos + 1)
    st.session_state["last_action"] = f"skipped {project.item(item_id).path}"
    _move_to(order, nxt)


def undo(latest: int | None) -> None:
    """Z: undoes the latest action, if it is still the one this drawing
    showed as latest (so a repeated press undoes once)."""
    done = project.undo(only=latest)
    if done is None:
        st.session_state["last_action"] = ("nothing to undo" if project.latest_action() is None else
                                            "nothing undone: the last action changed since this page was drawn "
                                            "(another tab?); press Z again to undo the latest")
        return
    st.session_state.pop("conflict", None)
    st.session_state["cursor"] = done["item_id"]  # show the image whose label came back
    n = len(done["items"])
    what = "skip" if done["action"] == "skip" else "label" + ("s" if n > 1 else "")
    st.session_state["last_action"] = (f"undid the {what} of {done['path']}" + (f" and {n - 1} more" if n > 1 else ""))


def step(pos: int, delta: int) -> None:
    order = current_order()
    _move_to(order, min(max(pos + delta, 0), len(order.ids) - 1))


def _grid_write(pairs: list[tuple[int, str]], ids: list[int], source: str, token: str | None) -> int | None:
    """One grid gesture: conditional on every tile still being unlabeled
    (what the page showed), once per token. None when refused or repeated."""
    try:
        n = project.set_labels(pairs, source=source, token=token,
                               seen=None if token is None else {i: None for i, _ in pairs})
    except LabelConflict as err:
        st.session_state["grid_conflict"] = {"pairs": pairs, "ids": ids, "source": source,
                                             "text": conflict_text(err)}
        return None
    except VaalError as err:
        st.session_state["label_error"] = str(err)
        return None
    st.session_state.pop("grid_conflict", None)
    if n is None:
        return None  # the same press a second time: written once already
    for i in ids:
        st.session_state.pop(f"sel_{i}", None)
    return n


def label_page(ids: list[int], name: str, token: str | None) -> None:
    """Grid: the selected tiles (or, with none selected, the whole page)
    get one class, in one transaction and one undoable action."""
    chosen = [i for i in ids if st.session_state.get(f"sel_{i}")] or ids
    n = _grid_write([(i, name) for i in chosen], ids, "grid", token)
    if n is not None:
        st.session_state["last_action"] = f"{len(chosen)} images → {name} ({n} changed)"


def accept_page(ids: list[int], shown: dict[int, str], token: str | None) -> None:
    """Grid, Enter: the selected tiles (or, with none selected, the whole
    page) each get their own suggestion, as shown on the page, in one
    transaction and one undoable action. Tiles without one are left alone."""
    chosen = [i for i in ids if st.session_state.get(f"sel_{i}")] or ids
    pairs = [(i, shown[i]) for i in chosen if i in shown]
    left = len(chosen) - len(pairs)
    if not pairs:
        st.session_state["last_action"] = f"none of the {len(chosen)} images has a suggestion: nothing labeled"
        return
    n = _grid_write(pairs, ids, "suggestion", token)
    if n is not None:
        st.session_state["last_action"] = (f"{len(pairs)} images labeled with their suggestions ({n} changed)"
                                           + (f"; {left} without a suggestion left unlabeled" if left else ""))


def grid_replace() -> None:
    """A grid conflict's 'Replace': the same gesture, unconditionally."""
    c = st.session_state.pop("grid_conflict")
    n = _grid_write(c["pairs"], c["ids"], c["source"], None)
    if n is not None:
        st.session_state["last_action"] = f"{len(c['pairs'])} images labeled, replacing ({n} changed)"


def skip_page(ids: list[int], token: str) -> None:
    project.postpone(ids, token=token)
    for i in ids:
        st.session_state.pop(f"sel_{i}", None)
    st.session_state["last_action"] = f"skipped {len(ids)} images"


def select_all(ids: list[int], value: bool) -> None:
    for i in ids:
        st.session_state[f"sel_{i}"] = value


# -- rendering ----------------------------------------------------------------

def suggestion_text(s: Suggestion) -> str:
    """'cat · 87%', markdown-safe."""
    return f"{plain(s.label)} · {s.confidence:.0%}"


def feedback() -> None:
    if "label_error" in st.session_state:
        st.error(plain(st.session_state.pop("label_error")))
    if "last_action" in st.session_state:
        st.caption(f"Last: {plain(st.session_state['last_action'])}")


def batch_progress(order: labeling.LabelOrder, labeled: set[int]) -> None:
    batch = order.ids[:order.batch] if order.batch else order.ids
    done = sum(i in labeled for i in batch)
    if order.batch:
        text = f"{done:,} of {len(batch):,} labeled in this round's batch · {len(labeled):,} in the project"
    else:
        text = f"{done:,} of {len(batch):,} images labeled"
    st.progress(done / max(len(batch), 1), text=text)


def conflict_box(item_id: int, pos: int) -> None:
    """A label refused because it changed since the page showed it: say who
    and when, and let the person replace it or keep it."""
    c = st.session_state.get("conflict")
    if not c or c["item_id"] != item_id:
        return
    with st.container(border=True):
        st.warning(c["text"], icon=":material/group:")
        a, b = st.columns(2)
        a.button(f"Replace with {plain(c['name'])}", key=f"replace_{item_id}", on_click=give_label,
                 args=(item_id, c["pos"], c["name"], c["source"], None, None), type="primary", width="stretch")
        b.button("Keep it", key=f"keep_{item_id}", on_click=keep_theirs, args=(pos,), width="stretch")


@st.fragment
def single_view() -> None:
    order = current_order()
    labeled, postponed = project.labeled_ids(), project.postponed_ids()
    tok = drawing()
    pos = order.position(st.session_state.get("cursor")) if st.session_state.get("cursor") is not None else None
    if pos is None:
        pos = labeling.next_to_label(order, labeled, postponed, 0)
    if pos is None:
        st.success(f"All {len(order.ids):,} images are labeled.", icon=":material/done_all:")
        st.page_link("views/train.py", label="Train a round", icon=":material/model_training:")
        latest = project.latest_action()
        st.button("Undo the last label" + keyboard.hint("Z"), key=f"undo_done_{tok}", on_click=undo,
                  args=(latest,))
        keyboard.keys(tok, {"z": (undo, (latest,))})
        feedback()
        return
    item_id = order.ids[pos]
    item = project.item(item_id)
    suggestion = project.suggestions([item_id]).get(item_id)
    highlight = item.label or (suggestion.label if suggestion else None)  # the pre-selected class
    # What each key and button of this drawing does: a press applies to the image it was made on.
    latest = project.latest_action()
    acts: dict[str, keyboard.Action] = {"s": (skip, (item_id, pos, f"{tok}-s")), "z": (undo, (latest,))}
    if pos > 0:
        acts["ArrowLeft"] = (step, (pos, -1))
    if pos < len(order.ids) - 1:
        acts["ArrowRight"] = (step, (pos, 1))
    if suggestion and not item.label:  # Enter never overwrites a label the user gave
        acts["Enter"] = (give_label, (item_id, pos, suggestion.label, "suggestion", None, f"{tok}-a"))
    for i, name in enumerate(classes):
        if KEYS[i]:
            acts[KEYS[i]] = (give_label, (item_id, pos, name, "ui", item.label, f"{tok}-{i}"))
    batch_progress(order, labeled)
    left, right = st.columns([3, 2], gap="large")
    with left:
        img, note = picture(project, item_id, SINGLE_WIDTH)
        # The image is drawn by the keyboard component: the keys mean this drawing from the moment
        # its image is on screen, never before or after (views/keyboard.py).
        keyboard.keys(tok, acts, image=img, path=item.path, width=SINGLE_WIDTH)
        st.text(item.path)
        st.caption(f"Image {pos + 1:,} of {len(order.ids):,} · {where(order, item_id)}"
                   + (" · skipped earlier" if item_id in postponed else ""))
        if item_id in order.audit:
            st.caption(f":material/casino: {audit_marker(order)}")
        if note:
            st.caption(f":material/warning: {plain(note)}")
    with right:
        conflict_box(item_id, pos)
        if item.label:
            st.markdown(f"Labeled **{plain(item.label)}**: press a key to change it")
        else:
            st.markdown("Pick the class" + (", or press Enter to accept the suggestion" if suggestion else ""))
        if suggestion:
            st.caption(f"Suggested: **{plain(suggestion.label)}** · {suggestion.confidence:.0%} "
                       f"(round {suggestion.round_id}'s task model)")
        key = f"{item_id}_{tok}"
        if "Enter" in acts:
            st.button(f"Accept: {plain(suggestion.label)}" + keyboard.hint("Enter"), key=f"accept_{key}",
                      on_click=acts["Enter"][0], args=acts["Enter"][1], type="primary", icon=":material/check:",
                      width="stretch")
        for i, name in enumerate(classes):
            st.button(plain(name) + keyboard.hint(KEYS[i]), key=f"class_{i}_{key}", on_click=give_label,
                      args=(item_id, pos, name, "ui", item.label, f"{tok}-{i}"),
                      type="primary" if highlight == name else "secondary", width="stretch")
        a, b, c, d = st.columns(4)
        a.button("Prev", key=f"prev_{key}", on_click=step, args=(pos, -1), width="stretch", disabled=pos == 0,
                 help="Key: ←")
        b.button("Skip", key=f"skip_{key}", on_click=skip, args=(item_id, pos, f"{tok}-s"), width="stretch",
                 help="Key: S (it comes back after every other image of this round)")
        c.button("Undo", key=f"undo_{key}", on_click=undo, args=(latest,), width="stretch", help="Key: Z")
        d.button("Next", key=f"next_{key}", on_click=step, args=(pos, 1), width="stretch",
                 disabled=pos >= len(order.ids) - 1, help="Key: →")
        st.caption("Keys: `←` prev · `S` skip · `Z` undo · `→` next")
        feedback()


def grid_conflict_box() -> None:
    c = st.session_state.get("grid_conflict")
    if not c:
        return
    with st.container(border=True):
        st.warning(c["text"] + " Nothing on this page was labeled.", icon=":material/group:")
        a, b = st.columns(2)
        a.button(f"Replace: label all {len(c['pairs'])}", key="grid_replace", on_click=grid_replace,
                 type="primary", width="stretch")
        b.button("Keep theirs", key="grid_keep", on_click=lambda: st.session_state.pop("grid_conflict", None),
                 width="stretch")


@st.fragment
def grid_view() -> None:
    order = current_order()
    labeled, postponed = project.labeled_ids(), project.postponed_ids()
    tok = drawing()
    cursor = st.session_state.get("cursor")
    start = order.position(cursor) or 0 if cursor is not None else 0
    ids = labeling.page_of_unlabeled(order, labeled, postponed, start, GRID)
    if not ids:
        st.success(f"All {len(order.ids):,} images are labeled.", icon=":material/done_all:")
        latest = project.latest_action()
        st.button("Undo the last label" + keyboard.hint("Z"), key=f"undo_done_grid_{tok}", on_click=undo,
                  args=(latest,))
        keyboard.keys(tok, {"z": (undo, (latest,))})
        feedback()
        return
    suggestions = project.suggestions(ids)
    batch_progress(order, labeled)
    st.caption("Tick the images of one class, then press its key. With none ticked, the key labels the whole "
               "page. One undo (Z) takes back the whole page."
               + (" Enter gives each ticked image (or, with none ticked, each image of the page) its own "
                  "suggestion." if suggestions else ""))
    grid_conflict_box()
    latest = project.latest_action()
    acts: dict[str, keyboard.Action] = {"a": (select_all, (ids, True)), "n": (select_all, (ids, False)),
                                        "s": (skip_page, (ids, f"{tok}-s")), "z": (undo, (latest,))}
    buttons = st.columns(min(len(classes), 10) or 1)
    for i, name in enumerate(classes):
        args = (ids, name, f"{tok}-{i}")
        if KEYS[i]:
            acts[KEYS[i]] = (label_page, args)
        buttons[i % len(buttons)].button(plain(name) + keyboard.hint(KEYS[i]), key=f"gclass_{i}_{tok}",
                                         on_click=label_page, args=args, width="stretch")
    a, b, c, d = st.columns(4)
    a.button("Select all" + keyboard.hint("A"), key=f"gall_{tok}", on_click=select_all, args=(ids, True),
             width="stretch")
    b.button("Select none" + keyboard.hint("N"), key=f"gnone_{tok}", on_click=select_all, args=(ids, False),
             width="stretch")
    c.button("Skip page" + keyboard.hint("S"), key=f"gskip_{tok}", on_click=skip_page, args=(ids, f"{tok}-s"),
             width="stretch")
    d.button("Undo" + keyboard.hint("Z"), key=f"gundo_{tok}", on_click=undo, args=(latest,), width="stretch")
    if suggestions:
        round_id = next(iter(suggestions.values())).round_id
        acts["Enter"] = (accept_page, (ids, {i: s.label for i, s in suggestions.items()}, f"{tok}-a"))
        st.button(f"Accept suggestions ({len(suggestions)} of {len(ids)} on this page, round {round_id}'s "
                  "task model)" + keyboard.hint("Enter"), key=f"gaccept_{tok}", on_click=accept_page,
                  args=acts["Enter"][1], type="primary", icon=":material/done_all:", width="stretch")
    keyboard.keys(tok, acts)
    feedback()
    for row in range(0, len(ids), 4):
        cols = st.columns(4)
        for col, item_id in zip(cols, ids[row:row + 4]):
            with col:
                img, _ = picture(project, item_id, 160)
                st.image(img, width="stretch")
                st.checkbox(plain(project.item(item_id).path), key=f"sel_{item_id}")
                if item_id in order.audit:
                    st.caption(":material/casino: random audit pick", help=audit_marker(order))
                if item_id in suggestions:
                    st.caption(f"Suggested: {suggestion_text(suggestions[item_id])}")


@st.fragment(run_every=2.0)
def training_strip() -> None:
    """Polls the store: says when a round trains, and swaps the new queue
    in (a full rerun) the moment one finishes."""
    status = project.status()
    seen = st.session_state.setdefault("label_round", status["current_round"])
    if status["current_round"] != seen:
        st.session_state["label_round"] = status["current_round"]
        st.session_state.pop("cursor", None)  # start at the top of the new queue
        st.session_state.pop("last_action", None)
        st.toast(f"Round {status['current_round']} finished: a new queue of {status['queue']:,} images",
                 icon=":material/autorenew:")
        st.rerun()
    last = status["last_round"]
    if status["training"] and last and last["status"] == "running":
        prog = last.get("progress") or {}
        now = (prog.get("phases") or {}).get(prog.get("phase"))
        what = Event.from_dict(now).describe() if now else phase_label(prog.get("phase", "start"))
        st.info(f"Round {last['id']} ({last['sampler']}) is training in the background: {what}. "
                "Keep labeling: the new queue appears when it is done.", icon=":material/hourglass_top:")


keyboard.listen()  # first, so a key pressed while the page is still drawing is not lost
training_strip()
queue_note(current_order())
view = st.segmented_control("View", ["Single", "Grid"], default="Single", key="label_view",
                            label_visibility="collapsed")
if view == "Grid":
    grid_view()
else:
    single_view()
