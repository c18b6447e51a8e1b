"""The notebook widgets without a browser or a kernel: `vc.Labeler` (its
logic in `vaal_core.notebook.session.LabelSession`) and `vc.LatentMap`, on
real digit images (scikit-learn's digits written as PNG files), real
`--fast` rounds and the real SQLite store; every write is checked through a
second `Project.open` of the project, as the app would read it.

One project is trained once for the module (`trained`: a coreset round, 12
labels, an entropy round whose task model gives suggestions, and round 1's
map); a test that writes works on its own copy (`fresh`). Pre-selected
(calibrated) suggestions need ~300 labels, so the tests of them record a
round through the store's own round calls instead (`write_calibrated_round`).

Presses reach the widget two ways, both tested: `lab.press(...)` (on what
is shown now) and `lab._on_message(...)`, the path the browser's messages
take, with the token of the drawing they were made on, or with junk.

Some tests pin bugs found and fixed while the widgets were written: a grid
press naming no tile on the page, a JSON `true` as a class number, a
conflict on the first drawing, Z on a drawing that had nothing to undo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import vaal_core as vc
from vaal_core.notebook.session import KEPT_DRAWINGS
from vaal_core.services.labeling import label_order, page_of_unlabeled
from vaal_core.store import Project

from conftest import ROOT

CLASSES = {"one": 1, "two": 2, "three": 3}
NAMES = list(CLASSES)
NOT_AN_ITEM = 999_999


# -- fixtures ------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def home(workspace_home) -> Path:
    return workspace_home


def truth(path: str) -> str:
    """An image's true class: its folder's name (one/003.png -> one)."""
    return path.split("/")[0]


@pytest.fixture(scope="module")
def trained(digits_folder, tmp_path_factory):
    """A project trained once for the module, left closed and never written
    afterwards (tests copy it): round 1 (coreset: the VAE's latents; vaal with no
    labels would hand the round to typiclust; 12 picked, no labels yet, its
    map computed and cached), the 12 picks labeled with their folder's
    class through the API, then round 2 (entropy, 10 picked) whose task
    model suggests a class for every image that was unlabeled then.

    Between the two rounds a Labeler is open and moved off the top of the
    queue; its drawings before and after round 2 are kept for the test of
    the cursor's reset (`before_round2`, `after_round2`)."""
    from vaal_core.maps.cache import round_projection

    base = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:  # the function-scoped `home` is not set up yet
        mp.setenv("VAAL_HOME", str(base / "home"))
        p = vc.create_project(base / "p", images=digits_folder, classes=NAMES, progress=False)
        p.round(sampler="coreset", budget=12, fast=True, progress=False)
        round_projection(p.project, 1)  # the map, made once: copies carry it
        first_queue = list(p.queue()["path"])
        for path in first_queue:
            p.label(path, truth(path))
        lab = vc.Labeler(p)
        lab.press("next")  # the cursor now names an image, one past the first unlabeled
        before = lab.state
        p.round(sampler="entropy", budget=10, fast=True, progress=False)
        round2_top = label_order(p.project).ids[0]
        lab.refresh()
        after = lab.state
        p.close()  # the last connection: the WAL is folded into project.db before tests copy it
    return SimpleNamespace(root=base / "p", folder=digits_folder, first_queue=first_queue,
                           before_round2=before, after_round2=after, round2_top=round2_top)


@pytest.fixture
def fresh(trained, tmp_path):
    """A copy of the trained project for one test to write to: (its root, a
    store connection to check it with, as the app would have one)."""
    root = tmp_path / "p"
    shutil.copytree(trained.root, root)
    store = Project.open(root)
    yield root, store
    store.close()


@pytest.fixture
def untrained(digits_folder, tmp_path):
    """The same 90 images in a new project with classes, no round, no labels."""
    p = vc.create_project(tmp_path / "untrained", images=digits_folder, classes=NAMES, progress=False)
    yield p
    p.close()


# -- helpers -------------------------------------------------------------------------

def send(lab, action: str, token: str | None = None, **extra) -> None:
    """A press as the browser sends it: a custom message naming the drawing's token."""
    lab._on_message(None, {"type": "press", "token": lab.state["token"] if token is None else token,
                           "action": action, **extra}, [])


def shown(lab) -> int:
    return lab.state["card"]["item_id"]


def unlabeled_in_order(store: Project) -> list[int]:
    """The images the Label page would show next, in its order (label_order)."""
    labeled, postponed = store.labeled_ids(), store.postponed_ids()
    return [i for i in label_order(store).ids if i not in labeled and i not in postponed]


def row_of(store: Project, item_id: int) -> dict:
    (row,) = [r for r in store.label_rows() if r["item_id"] == item_id]
    return row


def standing(store: Project, item_id: int) -> list[dict]:
    """The item's history rows not undone."""
    return [h for h in store.label_history(item_id) if h["undone_at"] is None]


# -- the single view -----------------------------------------------------------------

def test_a_class_press_labels_the_image_shown_and_moves_to_the_next_in_queue_order(fresh):
    """Behaviour 1: the first drawing shows the first unlabeled image of
    label_order; pressing class i labels exactly that image with classes[i],
    source 'notebook' and the widget's author; the next drawing shows the
    next unlabeled image in the same order, and the progress counts move.
    The same happens for a press arriving as the browser's message."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), author="ann")
    todo = unlabeled_in_order(store)
    order = label_order(store)
    assert lab.state["view"] == "single" and not lab.state["done"]
    assert lab.state["classes"] == [{"name": "one", "key": "1"}, {"name": "two", "key": "2"},
                                    {"name": "three", "key": "3"}]
    assert shown(lab) == todo[0] == order.ids[0]  # round 2's rank 1
    card = lab.state["card"]
    assert card["label"] is None and card["position"] == "Image 1 of 90" and card["first"]
    assert card["src"].startswith("data:image/jpeg;base64,")
    progress = lab.state["progress"]
    assert progress == {"labeled": 12, "total": 90, "batch": 10, "batch_left": 10, "round": 2}
    before = store.labels()

    lab.press("class", 1)
    after = store.labels()
    assert {i: v for i, v in after.items() if before.get(i) != v} == {todo[0]: "two"}
    row = row_of(store, todo[0])
    assert (row["author"], row["source"]) == ("ann", "notebook")
    assert shown(lab) == todo[1]
    assert lab.state["progress"]["labeled"] == 13 and lab.state["progress"]["batch_left"] == 9
    assert lab.last == f"{row['path']} → two"

    send(lab, "class", index=2)  # the browser's path
    assert store.labels()[todo[1]] == "three" and row_of(store, todo[1])["source"] == "notebook"
    assert shown(lab) == todo[2] and lab.state["progress"]["labeled"] == 14
    assert len(store.labels()) == 14


def test_a_press_acts_on_the_drawing_it_was_made_on_and_is_written_once(fresh):
    """Behaviour 2: a press carries its drawing's token. A class press sent
    with the token of a drawing two drawings old labels the image that
    drawing showed, not the one shown now; the same token and action sent
    again writes nothing more (one history row); a different class sent on
    that old drawing is refused as a change made in this widget."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    todo = unlabeled_in_order(store)
    old_token = lab.state["token"]
    assert shown(lab) == todo[0]
    lab.press("next")
    lab.press("next")
    now_shown = shown(lab)
    assert now_shown != todo[0]

    send(lab, "class", token=old_token, index=2)
    assert store.labels().get(todo[0]) == "three"
    assert now_shown not in store.labels()
    version = store.label_version()
    send(lab, "class", token=old_token, index=2)  # a retried or replayed message
    assert store.label_version() == version
    assert len(store.label_history(todo[0])) == 1

    send(lab, "class", token=old_token, index=0)  # another class, on a drawing that showed it unlabeled
    assert store.labels()[todo[0]] == "three" and store.label_version() == version
    assert "in this widget" in lab.state["error"] and row_of(store, todo[0])["path"] in lab.state["error"]


def test_an_unknown_or_too_old_token_writes_nothing_and_says_so_once(fresh):
    """Behaviour 3: a press naming a drawing the widget does not know (a
    made-up token, or one more than KEPT_DRAWINGS drawings old) writes
    nothing; the next drawing carries the error, the one after does not."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    old_token = lab.state["token"]
    version, latest = store.label_version(), store.latest_action()

    send(lab, "class", token="somebody-elses", index=0)
    assert store.label_version() == version
    assert "no longer knows" in lab.state["error"] and "nothing was written" in lab.state["error"]
    lab.refresh()
    assert lab.state["error"] == ""

    for _ in range(KEPT_DRAWINGS):
        lab.refresh()
    for action in ("class", "skip", "undo", "accept"):
        send(lab, action, token=old_token, index=0)
        assert lab.state["error"], action
    assert store.label_version() == version and store.latest_action() == latest
    assert store.postponed_ids() == set()
    lab.refresh()
    assert lab.state["error"] == ""


def test_a_label_given_elsewhere_after_the_drawing_is_not_overwritten_blind(fresh):
    """Behaviour 4: an image labeled through another connection (the app,
    source 'ui') after the widget drew it: a class press on that drawing is
    refused, the store keeps the other label, the error names the image and
    where it was labeled; the next drawing shows the other label, and
    pressing a class on it replaces that label."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), author="ann")
    lab.press("class", 0)  # the cursor now names the next image
    target = shown(lab)
    path = lab.state["card"]["path"]
    app = Project.open(root)
    app.set_label(target, "two", author="bob", source="ui")
    app.close()

    lab.press("class", 2)
    assert store.labels()[target] == "two" and row_of(store, target)["author"] == "bob"
    error = lab.state["error"]
    assert error.startswith(f"Not written: {path} was labeled two on the Label page")
    assert "after this widget showed it" in error and "Press the class again to replace it" in error
    assert shown(lab) == target and lab.state["card"]["label"] == "two"
    lab.refresh()
    assert lab.state["error"] == ""  # said once

    lab.press("class", 2)
    assert store.labels()[target] == "three"
    assert (row_of(store, target)["author"], row_of(store, target)["source"]) == ("ann", "notebook")
    assert [h["label"] for h in standing(store, target)] == ["two", "three"]


def test_a_conflict_on_the_first_drawing_shows_the_image_labeled_elsewhere(fresh):
    """Behaviour 4 on a widget's very first drawing (nothing pressed yet):
    after the refusal, the next drawing must show the image labeled
    elsewhere with its new label, as the error promises."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    target = shown(lab)
    app = Project.open(root)
    app.set_label(target, "two", source="ui")
    app.close()
    lab.press("class", 2)
    assert "was labeled two on the Label page" in lab.state["error"]
    assert store.labels()[target] == "two"
    assert shown(lab) == target and lab.state["card"]["label"] == "two"


def test_skip_postpones_undo_restores_and_z_twice_on_one_drawing_undoes_once(fresh):
    """Behaviour 5: S postpones the image shown (store's postponed_ids) and
    moves on; Z brings it back and shows it; a label is undone the same
    way; Z pressed twice on the same drawing (the same token) undoes one
    action only and says why the second did nothing."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    todo = unlabeled_in_order(store)
    a = shown(lab)
    assert a == todo[0]

    lab.press("skip")
    assert store.postponed_ids() == {a}
    assert shown(lab) == todo[1] and lab.last.startswith("skipped ")
    lab.press("undo")
    assert store.postponed_ids() == set()
    assert shown(lab) == a and lab.last.startswith("undid the skip of ")

    labels_before = store.labels()
    lab.press("class", 1)
    assert store.labels()[a] == "two"
    lab.press("undo")
    assert store.labels() == labels_before
    assert shown(lab) == a and lab.state["card"]["label"] is None and lab.last.startswith("undid the label of ")

    lab.press("class", 0)
    token = lab.state["token"]  # drawn after the label: Z on it undoes that label, once
    send(lab, "undo", token=token)
    assert store.labels() == labels_before
    send(lab, "undo", token=token)
    assert store.labels() == labels_before  # the fixture's 12 labels stand
    assert lab.last == "nothing undone: the last action changed since this view was drawn; press Z again"


def test_undo_with_nothing_to_undo_says_so(untrained):
    """Behaviour 5: Z on a project with no action says 'nothing to undo'."""
    lab = vc.Labeler(untrained)
    lab.press("undo")
    assert lab.last == "nothing to undo" and untrained.project.latest_action() is None


def test_z_twice_on_a_drawing_that_had_nothing_to_undo_undoes_at_most_once(untrained):
    """Behaviour 5 ('Z pressed twice on the same drawing undoes once') when
    the drawing was made before any action existed and two labels were then
    given in the app: two Z presses on that drawing must not undo both."""
    lab = vc.Labeler(untrained)
    token = lab.state["token"]
    app = Project.open(untrained.root)
    first, second = sorted(app.paths())[:2]
    app.set_label(first, "one", source="ui")
    app.set_label(second, "two", source="ui")
    send(lab, "undo", token=token)
    send(lab, "undo", token=token)
    assert len(app.labels()) >= 1
    app.close()


def test_prev_and_next_move_without_writing(fresh):
    """Behaviour 6: ←/→ move the single view along label_order (labeled
    images included, clamped at the ends) and write nothing."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    order = label_order(store)
    version = store.label_version()
    assert shown(lab) == order.ids[0]
    lab.press("prev")  # already at the top
    assert shown(lab) == order.ids[0] and lab.state["card"]["first"]
    for k in (1, 2, 3):
        lab.press("next")
        assert shown(lab) == order.ids[k] and lab.state["card"]["position"] == f"Image {k + 1} of 90"
    send(lab, "prev")
    assert shown(lab) == order.ids[2]
    assert store.label_version() == version and store.postponed_ids() == set()


def test_enter_accepts_the_suggestion_but_never_overwrites_a_label(fresh):
    """Behaviour 6: Enter on an unlabeled image with a suggestion labels it
    with the suggestion (source 'notebook_suggestion'); on a labeled image
    (shown with its label, or through the drawing from before it was
    labeled) it writes nothing."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), author="ann")
    a = shown(lab)
    suggestion = lab.state["card"]["suggestion"]
    expected = store.suggestions([a])[a].label
    assert suggestion["label"] == expected and suggestion["sure"] is False  # 12 labels: not calibrated
    assert "not calibrated" in suggestion["text"]
    lab.press("accept")
    assert store.labels()[a] == expected
    assert (row_of(store, a)["source"], row_of(store, a)["author"]) == ("notebook_suggestion", "ann")
    assert lab.last.endswith("(accepted suggestion)")

    b = shown(lab)
    b_suggestion = store.suggestions([b])[b].label
    other = next(n for n in NAMES if n != b_suggestion)
    token_before = lab.state["token"]  # drawn while b was unlabeled: Enter on it would offer the suggestion
    lab.press("class", NAMES.index(other))
    version = store.label_version()
    send(lab, "accept", token=token_before)
    assert store.labels()[b] == other and store.label_version() == version
    assert "in this widget" in lab.state["error"]

    # The refusal stays on b (pressing again would replace the label): it now shows the label given.
    assert shown(lab) == b and lab.state["card"]["label"] == other
    assert lab.state["card"]["suggestion"]["label"] == b_suggestion  # shown, but Enter does not take it
    lab.press("accept")
    assert store.labels()[b] == other and store.label_version() == version
    assert lab.last == ("nothing to accept: no suggestion for this image "
                        "(it has a label: press a class key to change it)")


def test_enter_without_a_suggestion_writes_nothing_and_says_so(untrained):
    """Behaviour 6: before any round there are no suggestions: Enter writes
    nothing and says there is none."""
    lab = vc.Labeler(untrained)
    assert lab.state["card"]["suggestion"] is None
    lab.press("accept")
    assert lab.last == "nothing to accept: no suggestion for this image"
    assert untrained.project.latest_action() is None and untrained.project.labels() == {}


# -- the grid ------------------------------------------------------------------------

def test_grid_labels_exactly_the_ticked_tiles_shown_in_one_undoable_action(fresh):
    """Behaviour 7: the grid shows up to 12 unlabeled images in queue order
    (page_of_unlabeled); a class press with two tiles' ids labels exactly
    those two in one action (one Z restores both, and the page then starts
    at the first of them); ids naming an image not on the page are ignored
    when a tile is named too; no ids label the whole page; a grid drawing
    accepts nothing here (the round's suggestions are not calibrated) and
    says so; S postpones the whole page."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), view="grid")
    assert lab.state["card"] is None
    ids = [t["item_id"] for t in lab.state["tiles"]]
    order = label_order(store)
    assert ids == page_of_unlabeled(order, store.labeled_ids(), store.postponed_ids(), 0, 12)
    assert len(ids) == 12 and not set(ids) & store.labeled_ids()
    assert all(t["src"].startswith("data:image/jpeg;base64,") for t in lab.state["tiles"])
    suggestions = store.suggestions(ids)
    assert [t["suggestion"] for t in lab.state["tiles"]] == [suggestions[i].label for i in ids]
    labels_before = store.labels()

    send(lab, "class", index=1, ids=[ids[3], ids[5]])
    assert {i: v for i, v in store.labels().items() if i not in labels_before} == {ids[3]: "two", ids[5]: "two"}
    assert {row_of(store, i)["source"] for i in (ids[3], ids[5])} == {"notebook"}
    assert lab.last == "2 images → two"
    assert ids[3] not in [t["item_id"] for t in lab.state["tiles"]]  # the page shows unlabeled ones only
    lab.press("undo")
    assert store.labels() == labels_before
    assert "and 1 more" in lab.last

    # The images whose labels came back are on the page again (the grid keeps its place).
    tiles = [t["item_id"] for t in lab.state["tiles"]]
    assert ids[3] in tiles and ids[5] in tiles
    assert tiles == page_of_unlabeled(order, store.labeled_ids(), set(), 0, 12)
    send(lab, "class", index=2, ids=[tiles[0], NOT_AN_ITEM, min(labels_before)])
    assert {i: v for i, v in store.labels().items() if labels_before.get(i) != v} == {tiles[0]: "three"}
    lab.press("undo")

    send(lab, "class", index=0)  # no ids: the whole page
    assert {i for i in store.labels() if i not in labels_before} == set(tiles)
    lab.press("undo")
    assert store.labels() == labels_before

    assert lab.state["grid_words"] == "Enter accepts none of these suggestions (its confidence is not calibrated)"
    assert not any(t["sure"] for t in lab.state["tiles"])
    version = store.label_version()
    send(lab, "accept", ids=[])
    assert store.label_version() == version
    assert lab.last == "nothing labeled: 12 left unlabeled: its confidence is not calibrated"

    tiles = [t["item_id"] for t in lab.state["tiles"]]
    lab.press("skip")
    assert store.postponed_ids() == set(tiles) and lab.last == "skipped 12 images"
    assert not set(tiles) & {t["item_id"] for t in lab.state["tiles"]}  # the next page


def test_switching_views_keeps_the_session(fresh):
    """G and V switch views (no token needed) and write nothing."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    version = store.label_version()
    first = shown(lab)
    send(lab, "grid")
    assert lab.state["view"] == "grid" and lab.state["tiles"][0]["item_id"] == first
    send(lab, "single")
    assert lab.state["view"] == "single" and shown(lab) == first
    assert store.label_version() == version


@pytest.mark.parametrize("ids", ["off the page", "strings", "a string"])
def test_grid_press_naming_no_tile_on_the_page_writes_nothing(fresh, ids):
    """Behaviour 7 / the press docstring ('a press naming something it did
    not show writes nothing'): a grid press whose ids name no tile of its
    page (an id from elsewhere, the tiles' ids as strings, a string instead
    of a list) must not label the whole page."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), view="grid")
    tiles = [t["item_id"] for t in lab.state["tiles"]]
    payload = {"off the page": [NOT_AN_ITEM], "strings": [str(i) for i in tiles[:2]], "a string": str(tiles[0])}[ids]
    version = store.label_version()
    send(lab, "class", index=0, ids=payload)
    assert store.label_version() == version


def write_calibrated_round(store: Project) -> tuple[int, list[int], dict[int, str]]:
    """A finished round recorded through the store as the round runner
    records one (start_round, finish_round), whose task model is marked
    calibrated: calibration needs 30 held-out labels (300 labels at the 10%
    slice), more than a test on 90 images can give, and without it no
    suggestion is ever pre-selected. Its batch: the first 12 unlabeled
    images; ranks 1-5 suggested their true class at 95% (pre-selected),
    6-9 at 55% (shown, not pre-selected), 10-12 without a suggestion.
    Returns (round id, the batch in rank order, {id: the sure suggestions})."""
    paths = store.paths()
    labeled = store.labeled_ids()
    ids = sorted(paths)
    batch = [i for i in ids if i not in labeled][::-1][:12]  # not round 2's order, so the new top is visible
    rank = {i: k + 1 for k, i in enumerate(batch)}
    suggestion = {i: (truth(paths[i]), 0.95) for i in batch[:5]}
    suggestion |= {i: (truth(paths[i]), 0.55) for i in batch[5:9]}
    rid = store.start_round("entropy", 12, 0, {})
    store.finish_round(rid, ids, [1.0 - rank.get(i, 99) / 100 for i in ids], [rank.get(i) for i in ids],
                       len(labeled), {}, {"task": {"calibration": {"calibrated": True, "temperature": 1.0,
                                                                   "n_held_out": 40}}},
                       suggestions=[suggestion.get(i) for i in ids])
    return rid, batch, {i: truth(paths[i]) for i in batch[:5]}


def test_grid_enter_takes_only_preselected_suggestions_and_says_what_it_left(fresh):
    """Behaviour 7: with a calibrated round, grid tiles whose suggestion is
    pre-selected are marked `sure`; Enter labels only those (source
    'notebook_suggestion', one action) and says what it left and why; the
    single view shows the same suggestion as pre-selected."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root), view="grid")
    rid, batch, sure = write_calibrated_round(store)
    lab.refresh()
    tiles = lab.state["tiles"]
    assert [t["item_id"] for t in tiles] == batch and lab.state["progress"]["round"] == rid
    assert {t["item_id"] for t in tiles if t["sure"]} == set(sure)
    assert lab.state["grid_words"].startswith("Enter gives the 5 marked ✓ their suggestion (calibrated on 40 ")
    labels_before, latest = store.labels(), store.latest_action()

    send(lab, "accept", ids=[])
    assert {i: v for i, v in store.labels().items() if i not in labels_before} == sure
    assert {row_of(store, i)["source"] for i in sure} == {"notebook_suggestion"}
    assert lab.last == ("5 images labeled with their suggestions; 4 left unlabeled: below 80% calibrated "
                        "confidence; 3 without a suggestion left unlabeled")
    assert len(store.undo()["items"]) == 5 and store.latest_action() == latest  # one action
    lab.refresh()

    send(lab, "accept", ids=[batch[0], batch[6]])  # ticked: one sure, one not
    assert {i: v for i, v in store.labels().items() if i not in labels_before} == {batch[0]: sure[batch[0]]}
    assert lab.last.endswith("; 1 left unlabeled: below 80% calibrated confidence")

    send(lab, "single")
    assert shown(lab) == batch[1]
    assert lab.state["card"]["suggestion"]["sure"] is True
    assert lab.state["card"]["where"].startswith(f"rank 2 of 12 in round {rid}'s batch")


# -- rounds and the end of the queue -------------------------------------------------

def test_a_new_round_moves_the_cursor_to_the_new_queues_top(trained, fresh):
    """Behaviour 8: a Labeler open while a round runs shows, once refreshed,
    the new round's rank 1, wherever its cursor was: for the real round 2
    (kept by the fixture) and for a round written while a Labeler is open."""
    before, after = trained.before_round2, trained.after_round2
    assert before["progress"]["round"] == 1 and after["progress"]["round"] == 2
    assert before["card"]["item_id"] != trained.round2_top
    assert after["card"]["item_id"] == trained.round2_top
    assert after["card"]["position"] == "Image 1 of 90" and after["card"]["where"].startswith(
        "rank 1 of 10 in round 2's batch")

    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    lab.press("next")
    lab.press("next")
    rid, batch, _ = write_calibrated_round(store)
    assert shown(lab) != batch[0]
    lab.refresh()
    assert shown(lab) == batch[0] and lab.state["progress"]["round"] == rid


def test_when_everything_is_labeled_the_widget_says_done_and_undo_still_works(fresh):
    """Behaviour 9: the last unlabeled image labeled in the widget: the
    drawing is `done` with no card; Z there brings that image back."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    last = shown(lab)
    paths = store.paths()
    store.set_labels([(i, truth(paths[i])) for i in unlabeled_in_order(store) if i != last], source="ui")
    lab.refresh()
    assert shown(lab) == last and lab.state["progress"]["labeled"] == 89
    lab.press("class", NAMES.index(truth(paths[last])))
    assert lab.state["done"] and lab.state["card"] is None and lab.state["progress"]["labeled"] == 90
    version = store.label_version()
    for action in ("class", "skip", "accept"):
        lab.press(action, 0)
    assert store.label_version() == version
    send(lab, "grid")
    assert lab.state["done"] and lab.state["tiles"] == []
    send(lab, "single")

    lab.press("undo")
    assert not lab.state["done"] and shown(lab) == last and last not in store.labels()


def test_a_project_without_classes_draws_a_note_and_writes_nothing(digits_folder, tmp_path):
    """Behaviour 10: no classes yet: the widget draws a note and no card or
    tiles, in both views, and no press writes anything."""
    p = vc.create_project(tmp_path / "bare", images=digits_folder, progress=False)
    for view in ("single", "grid"):
        lab = vc.Labeler(p, view=view)
        state = lab.state
        assert state["classes"] == [] and state["card"] is None and state["tiles"] == []
        assert "no classes yet" in state["notes"][0]
        for action in ("class", "accept", "skip", "undo"):
            lab.press(action, 0, [1, 2])
            send(lab, action, index=0, ids=[1, 2])
    assert p.project.latest_action() is None and p.project.postponed_ids() == set() and p.project.labels() == {}
    p.close()


# -- what the browser may send -------------------------------------------------------

def test_malformed_messages_write_nothing_and_never_raise(fresh):
    """Messages that are not a well-formed press (not a dict, another type,
    a token of the wrong type or unknown, an unknown action, an index that
    is not an int) write nothing and raise nothing; a well-formed press
    afterwards still labels the image shown."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    token = lab.state["token"]
    version = store.label_version()
    junk = [None, [], "press", 7, {"type": "click", "token": token, "action": "class", "index": 0},
            {"token": token, "action": "class", "index": 0},  # no type
            {"type": "press"}, {"type": "press", "token": None, "action": "class", "index": 0},
            {"type": "press", "token": 12345, "action": "class", "index": 0},
            {"type": "press", "token": [token], "action": "class", "index": 0},
            {"type": "press", "token": token, "action": "explode", "index": 0},
            {"type": "press", "token": token, "action": None, "index": 0},
            {"type": "press", "token": token, "action": ["class"], "index": 0},
            {"type": "press", "token": token, "action": "class"},
            {"type": "press", "token": token, "action": "class", "index": "1"},
            {"type": "press", "token": token, "action": "class", "index": 1.0},
            {"type": "press", "token": token, "action": "class", "index": 3},
            {"type": "press", "token": token, "action": "class", "index": -1},
            {"type": "press", "token": token, "action": "class", "index": None, "ids": "x"}]
    for content in junk:
        lab._on_message(None, content, [])
        assert store.label_version() == version, content
    assert store.postponed_ids() == set()
    lab.refresh()

    target = shown(lab)
    send(lab, "class", index=0, ids=["not", "ints"])  # ids that are not item ids: refused, whatever the view
    assert target not in store.labels() and "not understood" in lab.state["error"]


def test_a_boolean_index_is_not_a_class_number(fresh):
    """A press whose index is a JSON boolean is malformed: nothing written."""
    root, store = fresh
    lab = vc.Labeler(Project.open(root))
    version = store.label_version()
    send(lab, "class", index=True)
    assert store.label_version() == version


# -- the latent map ------------------------------------------------------------------

def test_latent_map_refuses_what_it_cannot_draw(untrained, fresh):
    """Behaviour 11: BadInput before any round, for a round that kept no
    latents (the entropy round) or does not exist, for an unknown
    `color_by`, and for color_by='score' on round 1 (a VAE round with no
    labels trains no discriminator: every score is NaN)."""
    _, store = fresh
    with pytest.raises(vc.BadInput, match="no round has kept latents"):
        vc.LatentMap(untrained, progress=False)
    with pytest.raises(vc.BadInput, match="round 2 kept no latents; rounds with a map: 1"):
        vc.LatentMap(store, round_id=2, progress=False)
    with pytest.raises(vc.BadInput, match="round 7 kept no latents"):
        vc.LatentMap(store, round_id=7, progress=False)
    with pytest.raises(vc.BadInput, match="color_by must be one of labeled, class, score"):
        vc.LatentMap(store, color_by="size", progress=False)
    assert vc.LatentMap(store, progress=False).frame["score"].isna().all()
    with pytest.raises(vc.BadInput, match="round 1 kept no discriminator score"):
        vc.LatentMap(store, color_by="score", progress=False)
    with pytest.raises(vc.BadInput, match="give a project"):
        vc.LatentMap(42, progress=False)


def test_latent_map_frame_selection_labels_and_push(fresh):
    """Behaviour 11: the map's frame has one row per image with its state
    read from the store; the selection round-trips in item ids; labeling it
    writes exactly the selected images in one undoable action and
    recolours; pushing puts them at the front of the Label queue (the store
    and label_order); empty selections and unknown classes are refused and
    write nothing; color_by='class' names the classes."""
    root, store = fresh
    m = vc.LatentMap(vc.open_project(root), progress=False)
    frame = m.frame
    assert m.round_id == 1 and len(frame) == 90 and frame.attrs == {"round": 1, "not_on_map": 0}
    assert list(frame.columns) == ["x", "y", "item_id", "path", "label", "state", "score", "thumbnail"]
    assert set(frame["item_id"]) == set(store.paths())
    assert dict(zip(frame["item_id"], frame["path"])) == store.paths()
    assert frame["thumbnail"].str.startswith("data:image/jpeg;base64,").all()
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    state = dict(zip(frame["item_id"], frame["state"].astype(str)))
    queue = {q["item_id"] for q in store.queue()}
    labeled = store.labeled_ids()
    assert {i for i, s in state.items() if s == "labeled"} == labeled
    assert {i for i, s in state.items() if s == "next batch"} == queue and len(queue) == 10
    assert dict(zip(frame["item_id"], frame["label"].astype(str))) == {
        i: store.labels().get(i) or ("next batch" if i in queue else "unlabeled") for i in store.paths()}

    assert m.selection == []
    pick = [i for i in frame["item_id"] if i not in labeled and i not in queue][:3]
    m.selection = list(reversed(pick))
    assert sorted(m.selection) == sorted(pick)
    assert m.selection == [i for i in frame["item_id"] if i in pick]  # the map's order
    assert list(m.selected()["item_id"]) == m.selection
    assert list(m.selected().columns) == ["item_id", "path", "label", "state", "score"]
    assert "3 selected" in repr(m)

    labels_before, latest = store.labels(), store.latest_action()
    with pytest.raises(vc.UnknownClass):
        m.label_selection("seven")
    assert store.labels() == labels_before and store.latest_action() == latest

    assert m.label_selection("two", author="ann") == 3
    assert {i: v for i, v in store.labels().items() if i not in labels_before} == {i: "two" for i in pick}
    assert {(row_of(store, i)["author"], row_of(store, i)["source"]) for i in pick} == {("ann", "notebook")}
    assert set(m.frame.loc[m.frame["item_id"].isin(pick), "state"].astype(str)) == {"labeled"}
    assert set(m.frame.loc[m.frame["item_id"].isin(pick), "label"].astype(str)) == {"two"}
    assert sorted(m.selection) == sorted(pick)  # kept through the recolouring
    undone = store.undo()
    assert sorted(it["item_id"] for it in undone["items"]) == sorted(pick)
    assert store.labels() == labels_before and store.latest_action() == latest
    m.refresh()
    assert set(m.frame.loc[m.frame["item_id"].isin(pick), "state"].astype(str)) == {"unlabeled"}

    assert m.push_selection() == 3
    pushed = m.selection
    assert store.priority_ids() == pushed
    assert list(label_order(store).ids[:3]) == pushed
    lab = vc.Labeler(store)
    assert shown(lab) == pushed[0] and lab.state["card"]["where"] == "pushed to the front from Explore"

    m.selection = []
    assert m.selection == []
    with pytest.raises(vc.BadInput, match="nothing is selected"):
        m.label_selection("one")
    with pytest.raises(vc.BadInput, match="nothing is selected"):
        m.push_selection()
    m.selection = [NOT_AN_ITEM]
    assert m.selection == []

    by_class = vc.LatentMap(store, color_by="class", progress=False)
    queue = {q["item_id"] for q in store.queue()}
    assert dict(zip(by_class.frame["item_id"], by_class.frame["label"].astype(str))) == {
        i: store.labels().get(i) or ("next batch" if i in queue else "unlabeled") for i in store.paths()}
    assert list(by_class.frame["label"].cat.categories) == [*NAMES, "next batch", "unlabeled"]


# -- the package ---------------------------------------------------------------------

@pytest.mark.parametrize("color_by", ["labeled", "class"])
def test_latent_map_draws_each_point_in_its_own_colour_after_a_refresh(fresh, color_by):
    """Each point's colour in the widget is the palette's colour for its
    state or class, also once a class with no labels yet gets its first
    one (jupyter-scatter codes the values present, so a colour map naming
    an absent class once shifted every colour after it)."""
    import matplotlib.colors as mc

    root, store = fresh
    m = vc.LatentMap(vc.open_project(root), color_by=color_by, progress=False, thumbnails=False)
    column = "state" if color_by == "labeled" else "label"

    def check() -> None:
        wanted = m._encoding()["color_map"]
        codes, colors = m.scatter._color_categories, m.scatter.color()["map"]
        assert set(codes) == set(m.frame[column].astype(str))
        for value, code in codes.items():
            assert np.allclose(mc.to_rgba(wanted[value]), colors[code]), value

    check()
    m.selection = [int(m.frame["item_id"][m.frame["state"].astype(str) == "unlabeled"].iloc[0])]
    m.label_selection("three")
    check()


def test_the_widgets_load_only_when_asked_for():
    """Behaviour 12: `import vaal_core` loads neither the notebook package
    nor anywidget; `vc.Labeler` and `vc.LatentMap` resolve on first use."""
    code = ("import sys, vaal_core as vc\n"
            "print('vaal_core.notebook' in sys.modules, 'anywidget' in sys.modules)\n"
            "L, M = vc.Labeler, vc.LatentMap\n"
            "print('vaal_core.notebook' in sys.modules, L.__module__, M.__module__)\n"
            "print('Labeler' in dir(vc), 'LatentMap' in vc.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False", "True", "vaal_core.notebook.labeler",
                                  "vaal_core.notebook.latent_map", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'Labelr'"):
        vc.Labelr  # noqa: B018
