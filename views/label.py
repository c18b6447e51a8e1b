"""Label: the current round's queue, best first, keyboard first.

Number keys give a class (1-9, then 0), S skips ("not now": the image is
postponed to the end of this round's order), Z undoes, the arrow keys move.
Every label is one SQLite transaction the moment it is given; the page
keeps only where the cursor is, so a refresh, a second tab or a server
restart resumes at the next unlabeled image.

When the current round trained a task model, its suggestion is shown with
its calibrated confidence and how many held-out labels calibrated it
(learn/calibration.py). Only a calibrated suggestion at or above the
threshold is pre-selected (its class button stands out, its Accept button
is the prominent one) and only those are accepted by the grid's Enter; the
others are shown and left to the person. In the single view Enter accepts
whatever suggestion is shown beside the one image: the person has it in
front of them, as they would a class key. Enter never overwrites a label.

A press can only label the image it was pressed on: every drawing of the
page has a fresh token, sent with each key press and each click of the
single view's buttons (the keyboard component draws those) or carried in
the grid's button keys, so a press that reaches the server after the page
moved on still names the image the person saw, and the store writes each
token once and refuses a label that changed since the page showed it
(another tab), saying so, instead of overwriting it.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid

import streamlit as st

from views import keyboard, label_parts, team
from views.common import conflict_text, database_gone_in_words, picture, plain, require_project
from views.label_parts import shown
from vaal_core.data.images import image_root_problem
from vaal_core.errors import LabelConflict, VaalError
from vaal_core.learn import calibration
from vaal_core.services import label_words, labeling, next_round
from vaal_core.services.label_words import audit_marker, why_not
from vaal_core.store import Project, Suggestion

GRID = 16  # 4 x 4 thumbnails
SINGLE_WIDTH = 448  # the single view's image, px; the keyboard component shrinks it on a short screen
# A laptop screen (1280 x 720) shows the whole single view: less padding above the page, tighter rows.
COMPACT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3rem; padding-bottom: 1rem; }
[data-testid="stMainBlockContainer"] h1 { padding: 0 0 0.25rem 0; }
.st-key-label_single [data-testid="stVerticalBlock"] { gap: 0.45rem; }
.st-key-label_grid [data-testid="stCheckbox"] label p {
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>"""

project = require_project()
classes = project.classes()
keyboard.listen()  # first, so a key pressed while the page is still drawing is not lost
st.html(COMPACT_CSS)
head, switch = st.columns([3, 1], vertical_alignment="bottom")
head.title("Label")
if not classes:
    st.warning("This project has no classes yet: add them on the Project page, in the order of the number keys.")
    st.page_link("views/project.py", label="Edit classes", icon=":material/edit:")
    st.stop()
problem = image_root_problem(project)
if problem:
    st.warning(plain(problem), icon=":material/folder_off:")
KEYS = label_words.class_keys(classes)
WHO = team.current()  # None: a one-person project (labels by "user", leases not needed); app.py asked
AUTHOR = WHO or "user"


@st.cache_resource(max_entries=8, show_spinner=False)
def _order(path: str, version: tuple, _project: Project) -> labeling.LabelOrder:
    return labeling.label_order(_project)


def current_order() -> labeling.LabelOrder:
    return _order(str(project.root), labeling.order_version(project), project)


@st.cache_resource(max_entries=16, show_spinner=False)
def _round_facts(path: str, handle: int, round_id: int, _project: Project) -> label_words.RoundFacts:
    return label_words.round_facts(_project, round_id)  # a finished round's record never changes


def facts(round_id: int | None) -> label_words.RoundFacts | None:
    # Keyed by the shared handle too: a project made again at the same path gets a new one (views/common.py).
    return None if round_id is None else _round_facts(str(project.root), id(project), round_id, project)


def queue_note(order: labeling.LabelOrder) -> None:
    """Says so when the queue's round ranked with a discriminator that is
    near chance (disc_quality): then 'rank 1' means little."""
    f = facts(order.round_id)
    if f is not None and f.near_chance:
        st.warning(f.disc["verdict"], icon=":material/casino:")


def where(order: labeling.LabelOrder, item_id: int) -> str:
    return label_words.place(order, item_id, facts(order.round_id), len(classes))


# -- actions (button callbacks: they run before the fragment re-renders) ----

def reported(action):
    """A callback whose store error (a team's database gone away, a full
    disk) becomes the page's one-line message instead of a traceback: the
    press wrote nothing, and the page says so."""
    @functools.wraps(action)
    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except VaalError as err:
            st.session_state["label_error"] = f"Nothing was written: {err}"
    return run


def drawing() -> str:
    """A token for one drawing of a view: this tab's id and a fresh part.
    Each press is sent with it (keys and the single view's buttons) or the
    button is keyed by it (the grid), so it names the drawing it was made
    on; the store writes each token once."""
    tab = st.session_state.setdefault("tab_id", uuid.uuid4().hex[:8])
    return f"{tab}-{uuid.uuid4().hex[:10]}"


def _move_to(order: labeling.LabelOrder, pos: int | None, chosen: bool = False) -> None:
    """Where the single view goes next. `chosen`: the person went there (an
    arrow key); otherwise it is the next image to label, which for a team
    is only a place to look from (a teammate may hold it by the next draw)."""
    st.session_state["cursor"] = None if pos is None else order.ids[pos]
    st.session_state["cursor_chosen"] = chosen


@reported
def give_label(item_id: int, pos: int, name: str, source: str, seen: str | None, token: str | None) -> None:
    """A class key, a class button, or Enter on a suggestion (source
    "suggestion", so the history tells accepted guesses from typed labels).
    `seen` is the label the page showed; None as token forces the write
    (the Replace button of a conflict)."""
    order = current_order()
    labeled, postponed = project.labeled_ids() | {item_id}, project.postponed_ids(order.round_id) - {item_id}
    try:
        row = project.set_label(item_id, name, author=AUTHOR, source=source, token=token,
                                seen=None if token is None else {item_id: seen})
    except LabelConflict as err:
        st.session_state["conflict"] = {"item_id": item_id, "pos": pos, "name": name, "source": source,
                                        "text": conflict_text(project, err)}
        st.session_state["cursor"] = item_id  # stay on it: the person decides
        st.session_state["cursor_chosen"] = True
        return
    except VaalError as err:
        st.session_state["label_error"] = str(err)
        return
    st.session_state.pop("conflict", None)
    if row is None:
        return  # the same press a second time: written once already
    accepted = " (accepted suggestion)" if source == "suggestion" else ""
    st.session_state["last_action"] = f"{shown(project.item(item_id))} → {name}{accepted}"
    _move_to(order, labeling.next_to_label(order, labeled, postponed, pos + 1))


@reported
def keep_theirs(pos: int) -> None:
    """A conflict's 'Keep': leave the other label and go on."""
    st.session_state.pop("conflict", None)
    order = current_order()
    _move_to(order, labeling.next_to_label(order, project.labeled_ids(), project.postponed_ids(order.round_id),
                                           pos + 1))


@reported
def skip(item_id: int, pos: int, token: str) -> None:
    order = current_order()
    project.postpone(item_id, author=AUTHOR, token=token)
    nxt = labeling.next_to_label(order, project.labeled_ids(), project.postponed_ids(order.round_id), pos + 1)
    st.session_state["last_action"] = f"skipped {shown(project.item(item_id))}"
    _move_to(order, nxt)


@reported
def undo(latest: int | None) -> None:
    """Z: undoes the latest action, if it is still the one this drawing
    showed as latest (so a repeated press undoes once)."""
    done = project.undo(only=latest, author=WHO)  # an annotator's Z undoes their own latest, never a teammate's
    if done is None:
        st.session_state["last_action"] = ("nothing to undo" if project.latest_action(WHO) is None else
                                            "nothing undone: the last action changed since this page was drawn "
                                            "(another tab?); press Z again to undo the latest")
        return
    st.session_state.pop("conflict", None)
    st.session_state["cursor"] = done["item_id"]  # show the image whose label came back
    st.session_state["cursor_chosen"] = True
    n = len(done["items"])
    what = "skip" if done["action"] == "skip" else "label" + ("s" if n > 1 else "")
    path = shown(project.item(done["item_id"]))
    st.session_state["last_action"] = f"undid the {what} of {path}" + (f" and {n - 1} more" if n > 1 else "")


@reported
def step(pos: int, delta: int) -> None:
    order = current_order()
    _move_to(order, min(max(pos + delta, 0), len(order.ids) - 1), chosen=True)


def _grid_write(pairs: list[tuple[int, str]], ids: list[int], source: str, token: str | None) -> int | None:
    """One grid gesture: conditional on every tile still being unlabeled
    (what the page showed), once per token. None when refused or repeated."""
    try:
        n = project.set_labels(pairs, author=AUTHOR, source=source, token=token,
                               seen=None if token is None else {i: None for i, _ in pairs})
    except LabelConflict as err:
        st.session_state["grid_conflict"] = {"pairs": pairs, "ids": ids, "source": source,
                                             "text": conflict_text(project, err)}
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


@reported
def label_page(ids: list[int], name: str, token: str | None) -> None:
    """Grid: the selected tiles (or, with none selected, the whole page)
    get one class, in one transaction and one undoable action."""
    chosen = [i for i in ids if st.session_state.get(f"sel_{i}")] or ids
    n = _grid_write([(i, name) for i in chosen], ids, "grid", token)
    if n is not None:
        st.session_state["last_action"] = f"{len(chosen)} images → {name} ({n} changed)"


@reported
def accept_page(ids: list[int], sure: dict[int, str], unsure: frozenset[int], why_not: str, token: str) -> None:
    """Grid, Enter: the selected tiles (or, with none selected, the whole
    page) with a pre-selected suggestion (`sure`, as shown) each get theirs,
    in one transaction and one undoable action; the feedback says how many
    were left and why (`why_not`, for the `unsure` ones)."""
    chosen = [i for i in ids if st.session_state.get(f"sel_{i}")] or ids
    pairs = [(i, sure[i]) for i in chosen if i in sure]
    left = label_words.left_words(chosen, sure, unsure, why_not)
    if not pairs:
        st.session_state["last_action"] = f"nothing labeled: {left}"
        return
    n = _grid_write(pairs, ids, "suggestion", token)
    if n is not None:
        st.session_state["last_action"] = (f"{len(pairs)} images labeled with their suggestions ({n} changed)"
                                           + (f"; {left}" if left else ""))


@reported
def grid_replace() -> None:
    """A grid conflict's 'Replace': the same gesture, unconditionally."""
    c = st.session_state.pop("grid_conflict")
    n = _grid_write(c["pairs"], c["ids"], c["source"], None)
    if n is not None:
        st.session_state["last_action"] = f"{len(c['pairs'])} images labeled, replacing ({n} changed)"


@reported
def skip_page(ids: list[int], token: str) -> None:
    project.postpone(ids, author=AUTHOR, token=token)
    for i in ids:
        st.session_state.pop(f"sel_{i}", None)
    st.session_state["last_action"] = f"skipped {len(ids)} images"


def select_all(ids: list[int], value: bool) -> None:
    for i in ids:
        st.session_state[f"sel_{i}"] = value


def start_next(plan: next_round.NextRound) -> None:
    """The batch-done prompt's button: the next round, as the last one."""
    try:
        next_round.start(project, plan)
    except VaalError as err:
        st.session_state["label_error"] = f"Round {plan.number} could not start: {err}"
    else:
        st.session_state["last_action"] = f"started round {plan.number} ({plan.words()})"


# -- rendering ----------------------------------------------------------------

def trust_of(s: Suggestion) -> calibration.Trust:
    return facts(s.round_id).trust


def suggestion_line(s: Suggestion) -> str:
    """'Suggested: **cat** · 87% (round 3's task model) — calibrated on 42
    held-out labels', saying when it is not pre-selected and why."""
    return label_words.suggestion_sentence(s, trust_of(s), lambda name: f"**{plain(name)}**")


def feedback() -> None:
    if "label_error" in st.session_state:
        st.error(plain(st.session_state.pop("label_error")))
    last = st.session_state.get("last_action")
    st.caption(f"Last: {plain(last)}" if last else "Last: nothing yet on this page")  # one line, always: no reflow


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


def single_buttons(acts: dict[str, keyboard.Action], highlight: str | None, sure: bool,
                   suggestion: Suggestion | None) -> list[list[dict]]:
    """The single view's buttons, in rows, each naming the action of its
    key in `acts` (added to it as the button's id): the keyboard component
    draws them (views/keyboard.py). Accept is the prominent one only when
    the suggestion is pre-selected."""
    rows: list[list[dict]] = []
    if "Enter" in acts:
        acts["accept"] = acts["Enter"]
        rows.append([dict(id="accept", label=f"Accept: {suggestion.label}", key="Enter", primary=sure, icon="✓")])
    per_row = 2 if len(classes) > 4 else 1  # 10 classes: 5 rows, not 10; a row at a time: keys in tab order
    for i, name in enumerate(classes):
        if i % per_row == 0:
            rows.append([])
        rows[-1].append(dict(id=f"class_{i}", label=name, key=KEYS[i], primary=highlight == name))
    moves = {"prev": "ArrowLeft", "skip": "s", "undo": "z", "next": "ArrowRight"}
    acts.update({name: acts[key] for name, key in moves.items() if key in acts})
    rows.append([dict(id="prev", label="Prev", disabled="prev" not in acts, help="Key: ←"),
                 dict(id="skip", label="Skip", help="Key: S (it comes back after every other image of this round)"),
                 dict(id="undo", label="Undo", help="Key: Z"),
                 dict(id="next", label="Next", disabled="next" not in acts, help="Key: →")])
    return rows


def team_pick(order: labeling.LabelOrder, labeled: set[int], postponed: set[int], pos: int | None,
              opinion: set[int]) -> int | None:
    """The position to show this annotator, leased to them: the image they
    went to (an arrow key, an undo) unless a teammate holds it; else the
    next image from the cursor on that nobody else holds."""
    if pos is not None and st.session_state.get("cursor_chosen"):
        item_id = order.ids[pos]
        if item_id in labeled and item_id not in opinion:
            project.claim(WHO, [])  # looking back at a labeled image: hold nothing
            return pos
        if project.claim(WHO, [item_id], labeled_ok=opinion):
            return pos
    return labeling.next_for(project, order, WHO, labeled, postponed, pos or 0)


@st.fragment
@database_gone_in_words
def single_view() -> None:
    order = current_order()
    labeled, postponed = project.labeled_ids(), project.postponed_ids(order.round_id)
    # A doubled image one teammate has labeled waits for this annotator's own opinion (store/team.py).
    opinion = project.needs_opinion(WHO) if WHO else set()
    tok = drawing()
    pos = order.position(st.session_state.get("cursor")) if st.session_state.get("cursor") is not None else None
    counted = labeled  # the progress counts every label, a teammate's included
    if WHO:
        pos = team_pick(order, labeled, postponed, pos, opinion)
        labeled = labeled - opinion
    elif pos is None:
        pos = labeling.next_to_label(order, labeled, postponed, 0)
    held = project.held_by_others(WHO) - labeled if WHO and pos is None else set()
    if pos is None and held:
        st.info(f"Every image left ({len(held):,}) is on a teammate's screen right now. Each comes back to you "
                "if they leave it for a few minutes.", icon=":material/group:")
        st.button("Look again", key=f"look_again_{tok}", icon=":material/refresh:")
        feedback()
        return
    if pos is None:
        st.success(f"All {len(order.ids):,} images are labeled.", icon=":material/done_all:")
        st.page_link("views/train.py", label="Train a round", icon=":material/model_training:")
        latest = project.latest_action(WHO)
        st.button("Undo the last label" + keyboard.hint("Z"), key=f"undo_done_{tok}", on_click=undo,
                  args=(latest,))
        keyboard.keys(tok, {"z": (undo, (latest,))})
        feedback()
        return
    item_id = order.ids[pos]
    item = project.item(item_id)
    seen_label = item.label  # what the store holds: a press is written only if it still does
    if item_id in opinion:
        item = dataclasses.replace(item, label=None)  # blind: the teammate's label is not shown
    suggestion = project.suggestions([item_id], order.round_id).get(item_id)
    sure = suggestion is not None and calibration.preselect(suggestion.confidence, trust_of(suggestion))
    highlight = item.label or (suggestion.label if sure else None)  # the pre-selected class
    # What each key and button of this drawing does: a press applies to the image it was made on.
    latest = project.latest_action(WHO)
    acts: dict[str, keyboard.Action] = {"s": (skip, (item_id, pos, f"{tok}-s")), "z": (undo, (latest,))}
    if pos > 0:
        acts["ArrowLeft"] = (step, (pos, -1))
    if pos < len(order.ids) - 1:
        acts["ArrowRight"] = (step, (pos, 1))
    if suggestion and not item.label:  # Enter never overwrites a label the user gave
        acts["Enter"] = (give_label, (item_id, pos, suggestion.label, "suggestion", None, f"{tok}-a"))
    for i, name in enumerate(classes):
        acts[f"class_{i}"] = (give_label, (item_id, pos, name, "ui", seen_label, f"{tok}-{i}"))
        if KEYS[i]:
            acts[KEYS[i]] = acts[f"class_{i}"]
    buttons = single_buttons(acts, highlight, sure, suggestion)
    label_parts.batch_progress(project, order, counted, start_next)
    left, right = st.columns([3, 2], gap="medium")
    # The right-hand column is written first: its buttons reach the page before the image, so they are
    # ready to change in the same step as it (views/keyboard.py).
    with right:
        conflict_box(item_id, pos)
        if item_id in opinion:
            st.markdown("Pick the class: **a second opinion**. A teammate labeled this image too; their label "
                        "is hidden so yours is your own.")
        elif item.label:
            st.markdown(f"Labeled **{plain(item.label)}**: press a key to change it")
        else:
            st.markdown("Pick the class" + ("" if not suggestion else
                                            ", or press Enter to accept the suggestion" if sure else
                                            "; Enter takes the suggestion only if you agree with it"))
        if suggestion:
            st.caption(suggestion_line(suggestion))
        keyboard.buttons(tok, buttons)
        st.caption("Keys: `←` prev · `S` skip · `Z` undo · `→` next" + ("" if all(KEYS) else " · `/` find a class"))
        feedback()
    with left:
        img, note = picture(project, item_id, SINGLE_WIDTH)
        # The image is drawn by the keyboard component: the keys mean this drawing from the moment
        # its image is on screen, never before or after (views/keyboard.py).
        keyboard.keys(tok, acts, image=img, path=shown(item), width=SINGLE_WIDTH, item=item_id)
        st.text(shown(item))
        st.caption(f"Image {pos + 1:,} of {len(order.ids):,} · {plain(where(order, item_id))}"
                   + (" · skipped earlier" if item_id in postponed else ""))
        if item_id in order.audit:
            st.caption(f":material/casino: {audit_marker(order)}")
        if note:
            st.caption(f":material/warning: {plain(note)}")
        label_parts.why_card(project, order, item_id, labeled, facts(order.round_id), len(classes))
    # The image a class key will most likely bring up next, decoded and scaled now (after this drawing is
    # sent): a press then waits for no file read (~9 ms of the ~28 ms a press costs the server).
    nxt = labeling.next_to_label(order, labeled | {item_id}, postponed - {item_id}, pos + 1)
    if nxt is not None:
        picture(project, order.ids[nxt], SINGLE_WIDTH)


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


def grid_accept(ids: list[int], suggestions: dict[int, Suggestion], trust: calibration.Trust, acts: dict,
                tok: str, slot) -> str:
    """Enter and its button (in `slot`): only the pre-selected suggestions
    (the button says how many). Returns the sentence saying why the others
    are left."""
    sure, unsure = label_words.split(suggestions, trust)
    acts["Enter"] = (accept_page, (ids, sure, unsure, why_not(trust), f"{tok}-a"))
    label = f"Accept the {len(sure)} marked ✓" if sure else "None to accept"
    slot.button(label + keyboard.hint("Enter"), key=f"gaccept_{tok}", on_click=accept_page, args=acts["Enter"][1],
                type="primary", icon=":material/done_all:", width="stretch", disabled=not sure)
    said = f"Suggestions: round {next(iter(suggestions.values())).round_id}'s {trust.maker}, {trust.words()}. "
    if not sure:
        return said + f"Enter accepts none of the {len(unsure)} ({why_not(trust)}): use the class keys."
    return (said + f"Enter gives those marked ✓ ({trust.threshold:.0%} or more; ticked ones only, if any are "
                   f"ticked) their suggestion; the {len(unsure)} others stay unlabeled ({why_not(trust)}).")


@st.fragment
@database_gone_in_words
def grid_view() -> None:
    order = current_order()
    labeled, postponed = project.labeled_ids(), project.postponed_ids(order.round_id)
    tok = drawing()
    cursor = st.session_state.get("cursor")
    start = order.position(cursor) or 0 if cursor is not None else 0
    if WHO:  # a team: only images nobody else holds, leased to this annotator
        ids = labeling.page_for(project, order, WHO, labeled, postponed, start, GRID)
    else:
        ids = labeling.page_of_unlabeled(order, labeled, postponed, start, GRID)
    if not ids:
        st.success(f"All {len(order.ids):,} images are labeled.", icon=":material/done_all:")
        latest = project.latest_action(WHO)
        st.button("Undo the last label" + keyboard.hint("Z"), key=f"undo_done_grid_{tok}", on_click=undo,
                  args=(latest,))
        keyboard.keys(tok, {"z": (undo, (latest,))})
        feedback()
        return
    suggestions = project.suggestions(ids, order.round_id)
    trust = trust_of(next(iter(suggestions.values()))) if suggestions else None  # all from the queue's round
    label_parts.batch_progress(project, order, labeled, start_next)
    grid_conflict_box()
    latest = project.latest_action(WHO)
    acts: dict[str, keyboard.Action] = {"a": (select_all, (ids, True)), "n": (select_all, (ids, False)),
                                        "s": (skip_page, (ids, f"{tok}-s")), "z": (undo, (latest,))}
    per_row = min(len(classes), 5)  # 5 a row: room for "automobile `2`"
    for i, name in enumerate(classes):
        args = (ids, name, f"{tok}-{i}")
        if KEYS[i]:
            acts[KEYS[i]] = (label_page, args)
        if i % per_row == 0:
            buttons = st.columns(per_row, gap="small")
        buttons[i % per_row].button(plain(name) + keyboard.hint(KEYS[i]), key=f"gclass_{i}_{tok}",
                                    on_click=label_page, args=args, width="stretch")
    a, b, c, d, e = st.columns([1, 1, 1, 1, 2], gap="small")
    a.button("All" + keyboard.hint("A"), key=f"gall_{tok}", on_click=select_all, args=(ids, True),
             width="stretch", help="Tick every image of the page")
    b.button("None" + keyboard.hint("N"), key=f"gnone_{tok}", on_click=select_all, args=(ids, False),
             width="stretch", help="Untick every image of the page")
    c.button("Skip page" + keyboard.hint("S"), key=f"gskip_{tok}", on_click=skip_page, args=(ids, f"{tok}-s"),
             width="stretch")
    d.button("Undo" + keyboard.hint("Z"), key=f"gundo_{tok}", on_click=undo, args=(latest,), width="stretch")
    said = grid_accept(ids, suggestions, trust, acts, tok, e) if suggestions else ""
    with st.container(height=128, border=False):  # one height whatever it says: the tiles below never move
        st.caption("Tick the images of one class and press its key (none ticked: the whole page); Z undoes the "
                   "whole page. " + said)
        feedback()
    label_parts.tiles(project, order, ids, suggestions, trust)
    keyboard.keys(tok, acts)  # right after what the person looks at (views/keyboard.py)


label_parts.training_strip(project)
queue_note(current_order())
view = switch.segmented_control("View", ["Single", "Grid"], default="Single", key="label_view",
                                label_visibility="collapsed")
if view == "Grid":
    with st.container(key="label_grid"):
        grid_view()
else:
    with st.container(key="label_single"):
        single_view()
