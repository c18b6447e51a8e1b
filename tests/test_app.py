"""The Streamlit pages' logic, run by Streamlit's AppTest against real
projects built from real CIFAR-10 JPEGs, with the SQLite store checked after
every action."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from vaal_core.data.digits import DEMO_PROJECT
from vaal_core.data.images import shown_path
from vaal_core.data.ingest import init_project
from vaal_core.loop.round import RoundConfig, run_round
from vaal_core.progress import Phase
from vaal_core.services import workspace
from vaal_core.services.worker import round_worker as worker_state
from vaal_core.store import Project

from conftest import ROOT, drawn, key_button, make_subset

CLASSES = ["airplane", "cat", "dog"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAAL_PROJECT", raising=False)
    return tmp_path / "home"


@pytest.fixture
def images(cifar_root, tmp_path) -> Path:
    return make_subset(cifar_root, tmp_path / "images", per_class=6, classes=CLASSES)


@pytest.fixture
def project(images, home) -> Project:
    proj, _, _ = init_project(home / "projects" / "pets", images, CLASSES, gold_from_folders=True)
    return proj


def app(project: Project | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    if project is not None:
        at.query_params["project"] = workspace.remember(project.root).id
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "text", "info", "success", "warning", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# -- entry and projects ------------------------------------------------------------

def test_first_start_builds_the_digits_demo(home):
    at = app()
    demo = home / "projects" / DEMO_PROJECT
    assert (demo / "project.db").is_file()
    p = Project.open(demo)
    assert len(p.items()) == 1797 and p.classes()[:3] == ["1", "2", "3"]
    assert at.query_params["project"] == [workspace.project_id(demo)] or \
        at.query_params["project"] == workspace.project_id(demo)
    assert "0 of 1,797 labeled" in texts(at)  # the sidebar's counts
    classes = [b for b in single_buttons(at).values() if b["id"].startswith("class_")]
    assert [(b["label"], b["key"]) for b in classes] == [(d, d) for d in "1234567890"]  # name, then its key


def test_an_unknown_project_id_or_path_gets_a_message(home, project, monkeypatch):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["project"] = "0123456789"
    at.run()
    assert not at.exception and "does not know" in texts(at)
    monkeypatch.setenv("VAAL_PROJECT", str(home / "nowhere"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and "no project at" in texts(at)


def test_env_variable_opens_a_project(home, project, monkeypatch):
    monkeypatch.setenv("VAAL_PROJECT", str(project.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "pets" in texts(at) and "0 of 18 labeled" in texts(at)


def _create(at: AppTest, name: str, folder: str, classes: str = "") -> AppTest:
    at.text_input[[t.label for t in at.text_input].index("Project name")].input(name)
    at.text_input[[t.label for t in at.text_input].index("Image folder")].input(folder)
    at.text_input[[t.label for t in at.text_input].index("Classes, in key order (comma-separated)")].input(classes)
    at.button[[b.label for b in at.button].index("Create project")].click()
    return at.run()


def test_create_project_validates_the_folder_and_reports_skipped_files(home, project, images, tmp_path):
    at = app(project, "views/project.py")
    at = _create(at, "new", str(tmp_path / "no-such-folder"))
    assert "does not exist" in texts(at) and not (home / "projects" / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    at = _create(at, "new", str(empty))
    assert "no image files" in texts(at) and not (home / "projects" / "new").exists()
    assert not at.get("progress"), "a stale Scanning... bar above the error"
    at = _create(at, "../escape", str(images))
    assert "not usable" in texts(at)
    at = _create(at, "pets", str(images))
    assert "exists already" in texts(at)

    (images / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (images / ".thumbnails").mkdir()
    at = _create(at, "new", f' "{images}" ', "airplane, cat, dog")  # pasted as a file manager copies a path
    assert not at.exception
    assert "18 images added, 1 files skipped; left out 1 hidden file or folder" in texts(at).replace("\\", "")
    skipped = at.dataframe[0].value
    assert list(skipped["path"]) == ["cat/broken.jpg"]
    assert skipped["reason"][0].startswith("not an image")
    created = Project.open(home / "projects" / "new")
    assert created.classes() == CLASSES and len(created.items()) == 18
    assert at.query_params["project"] in (workspace.project_id(created.root), [workspace.project_id(created.root)])


def test_class_edits_keep_labels(project):
    items = project.items()
    project.set_label(items[0].id, "cat")
    at = app(project, "views/project.py")
    # rename
    box = next(t for t in at.text_input if t.value == "cat")
    box.input("kitten").run()
    assert project.classes() == ["airplane", "kitten", "dog"] and project.labels() == {items[0].id: "kitten"}
    # reorder: move dog up, so key 2 is now dog
    at.button(key="up_2").click().run()
    assert project.classes() == ["airplane", "dog", "kitten"]
    # a used class cannot be removed; an unused one can
    at.button(key="del_2").click().run()
    assert "rename it" in texts(at) and "kitten" in project.classes()
    at.button(key="del_0").click().run()
    assert project.classes() == ["dog", "kitten"]
    # add, with a name made of markdown characters: shown as typed, not as formatting
    form = next(t for t in at.text_input if t.label.startswith("Add classes"))
    form.input("**bold**, <img src=x onerror=alert(1)>")
    at.button[[b.label for b in at.button].index("Add")].click().run()
    assert project.classes() == ["dog", "kitten", "**bold**", "<img src=x onerror=alert(1)>"]
    at.switch_page("views/label.py").run()
    labels = [b["label"] for b in single_buttons(at).values() if b["id"].startswith("class_")]
    assert labels == ["dog", "kitten", "**bold**", "<img src=x onerror=alert(1)>"]  # drawn as text, never as HTML
    assert [b["key"] for b in single_buttons(at).values() if b["id"].startswith("class_")] == ["1", "2", "3", "4"]


def test_labels_import_from_a_file_is_previewed_checked_and_undoable(project):
    items = project.items()
    a, b, c = (items[k] for k in (0, 7, 14))
    project.set_label(a.id, "cat")  # given before the import
    at = app(project, "views/project.py")
    mine = f"path,label\n{a.path},dog\n{b.path},airplane\n{c.path},cat\n".encode()
    at.file_uploader(key="import_file").set_value(("mine.csv", mine, "text/csv")).run()
    said = texts(at).replace("\\", "")
    assert "**mine.csv**: 3 rows · 2 images not labeled yet · 1 labeled otherwise now · 0 already so" in said
    assert f"{shown_path(a.path, a.gold)}: cat → dog" in said
    assert at.button(key="import_go").label == "Import 2 labels" and project.labels() == {a.id: "cat"}  # a preview

    at.checkbox(key="import_replace").check().run()
    at.button(key="import_go").click().run()
    assert not at.exception, at.exception
    assert project.labels() == {a.id: "dog", b.id: "airplane", c.id: "cat"}
    assert "Imported 3 labels from mine.csv" in texts(at).replace("\\", "")
    assert {r["source"] for r in project.label_rows()} == {"csv"}
    at.button(key="undo_import").click().run()  # one action: all three back as they were
    assert project.labels() == {a.id: "cat"}

    bad = json.dumps({"labels": [{"path": b.path, "label": "a/b"}]}).encode()  # as the JSON export writes
    at.file_uploader(key="import_file").set_value(("bad.json", bad, "application/json")).run()
    assert "bad.json label 1: class name 'a/b' is not usable" in texts(at).replace("\\", "")
    assert not [x for x in at.button if x.key == "import_go"] and project.labels() == {a.id: "cat"}

    # A class the project lacks: the page names it and imports only once told to add it
    horse = json.dumps({"labels": [{"path": b.path, "label": "horse"}, {"path": c.path, "label": "cat"}]}).encode()
    at.file_uploader(key="import_file").set_value(("horse.json", horse, "application/json")).run()
    assert "horse.json names 1 class this project lacks: horse." in texts(at).replace("\\", "")
    assert at.button(key="import_go").disabled and project.classes() == ["airplane", "cat", "dog"]
    at.checkbox(key="import_add_classes").check().run()
    at.button(key="import_go").click().run()
    assert project.classes() == ["airplane", "cat", "dog", "horse"]
    assert project.labels() == {a.id: "cat", b.id: "horse", c.id: "cat"}
    assert "Imported 2 labels from horse.json. Added the classes horse." in texts(at).replace("\\", "")
    at.button(key="undo_import").click().run()  # the labels go back; the class stays, to be removed if unwanted
    assert project.labels() == {a.id: "cat"} and project.classes() == ["airplane", "cat", "dog", "horse"]

    # Labels given elsewhere after the preview: nothing is written, a new class included
    later = json.dumps([{"path": b.path, "label": "dog"}, {"path": c.path, "label": "lion"}]).encode()
    at.file_uploader(key="import_file").set_value(("later.json", later, "application/json")).run()
    at.checkbox(key="import_add_classes").check().run()
    project.set_label(b.id, "cat", source="ui")  # given elsewhere after the preview was read
    at.button(key="import_go").click().run()  # the preview on screen said b was unlabeled
    said = texts(at).replace("\\", "")
    assert "Nothing imported:" in said and "was labeled **cat**" in said and "1 image not labeled yet" in said
    assert project.labels() == {a.id: "cat", b.id: "cat"}  # the later label stands
    assert "lion" not in project.classes()  # the class came with the labels or not at all


def test_project_defaults_start_from_the_default_sampler(project):
    """Saving another default (the budget) keeps auto, the sampler a project starts with."""
    at = app(project, "views/project.py")
    box = next(s for s in at.selectbox if s.label == "Default sampler")
    assert box.value == "auto"
    next(n for n in at.number_input if n.label == "Default budget").set_value(7)
    at.button[[b.label for b in at.button].index("Save defaults")].click().run()
    assert {k: project.settings()[k] for k in ("sampler", "budget")} == {"sampler": "auto", "budget": 7}
    at.switch_page("views/train.py").run()
    assert next(s for s in at.selectbox if s.label == "Sampler").value == "auto"


def test_export_writes_an_imagefolder_copy(project, home):
    items = project.items()
    project.set_labels([(items[0].id, "cat"), (items[1].id, "dog")])
    at = app(project, "views/project.py")
    assert {b.label for b in at.get("download_button")} == {"Download CSV", "Download JSON"}
    out = home / "exports" / "copy"
    box = next(t for t in at.text_input if t.label.startswith("Write an ImageFolder copy"))
    box.input(str(out))
    at.button[[b.label for b in at.button].index("Write copy")].click().run()
    assert "Copied 2 images" in texts(at)
    copied = sorted(str(f.relative_to(out)) for f in out.rglob("*.jpg"))
    assert copied == sorted([f"cat/{items[0].path.replace('/', '__')}", f"dog/{items[1].path.replace('/', '__')}"])
    at.button[[b.label for b in at.button].index("Write copy")].click().run()  # again: refused, not overwritten
    assert "not empty" in texts(at)


def test_switching_between_recent_projects(project, images, home):
    other, _, _ = init_project(home / "projects" / "other", images, ["x", "y"])
    workspace.remember(other.root)
    at = app(project, "views/project.py")
    assert "pets" in texts(at)
    recent = next(s for s in at.selectbox if s.label == "Recent projects")
    recent.set_value(workspace.project_id(other.root)).run()  # "Open" is enabled once the choice differs
    at.button[[b.label for b in at.button].index("Open")].click().run()
    assert not at.exception
    assert at.query_params["project"] in (workspace.project_id(other.root), [workspace.project_id(other.root)])
    assert "other" in texts(at) and "0 of 18 labeled" in texts(at)


# -- labeling -----------------------------------------------------------------------

def _shown_path(at: AppTest) -> str:
    """The stored path of the image on screen. The page shows it masked
    (this project's class folders are its hidden gold labels: `•••/0002.jpg`,
    the same for every class), so the image is named by its buttons' keys."""
    [image] = drawn(at, "image")
    item = at.session_state["project"].item(image["item"])
    assert image["path"] == shown_path(item.path, item.gold)
    assert at.text[0].value == shown_path(item.path, item.gold) and "•••/" in at.text[0].value
    return item.path


def single_buttons(at: AppTest) -> dict[str, dict]:
    """The single view's buttons by id, as the keyboard component draws them."""
    [data] = drawn(at, "buttons")
    return {b["id"]: b for row in data["buttons"] for b in row}


def test_labeling_writes_to_the_store_and_undo_takes_it_back(project):
    at = app(project, "views/label.py")
    first = _shown_path(at)
    key_button(at, "class_1").click().run()  # "cat"
    item = project.item(project.item_id(first))
    assert item.label == "cat"
    assert project.label_history(item.id)[-1]["source"] == "ui"
    second = _shown_path(at)
    assert second != first  # moved on to the next unlabeled image
    key_button(at, "class_2").click().run()
    assert project.labels() == {item.id: "cat", project.item_id(second): "dog"}
    key_button(at, "undo").click().run()
    assert project.labels() == {item.id: "cat"} and _shown_path(at) == second  # back at the undone image
    key_button(at, "prev").click().run()
    assert _shown_path(at) == first and "Labeled" in texts(at)
    key_button(at, "class_0").click().run()  # relabel from the history
    assert project.item(item.id).label == "airplane"
    assert _shown_path(at) == second  # the next unlabeled one, not a labeled one


def test_skip_moves_on_and_a_fresh_session_resumes_at_the_next_unlabeled(project):
    at = app(project, "views/label.py")
    first = _shown_path(at)
    key_button(at, "skip").click().run()
    second = _shown_path(at)
    assert second != first and project.postponed_ids() == {project.item_id(first)}
    key_button(at, "class_0").click().run()
    # a new session (a refresh, a second tab, a restarted server) starts at the next unlabeled, unskipped image
    again = app(project, "views/label.py")
    shown = _shown_path(again)
    assert shown not in (first, second)
    assert project.item(project.item_id(shown)).label is None


def test_two_tabs_on_one_image_the_second_writer_is_told_and_chooses(project):
    """Two sessions (two tabs) show the same image; B labels it first. A's
    press is refused with who and when, not written over B's label; A then
    replaces it or keeps it. The grid refuses a page another tab labeled."""
    tab_a, tab_b = app(project, "views/label.py"), app(project, "views/label.py")
    shown = _shown_path(tab_a)
    assert _shown_path(tab_b) == shown
    item = project.item_id(shown)
    key_button(tab_b, "class_1").click().run()  # B: cat
    key_button(tab_a, "class_2").click().run()  # A, still showing it unlabeled: dog
    assert project.item(item).label == "cat"  # B's label stands
    warning = " ".join(w.value for w in tab_a.warning).replace("\\", "")  # markdown escapes
    masked = shown_path(shown, project.item(item).gold)  # the page never shows the gold class's folder
    assert f"{masked} was labeled **cat** in another tab" in warning and "after this page showed it" in warning
    assert _shown_path(tab_a) == shown  # A stays on the image to decide
    [replace] = [b for b in tab_a.button if b.label == "Replace with dog"]
    replace.click().run()
    assert project.item(item).label == "dog"
    assert [h["label"] for h in project.label_history(item)] == ["cat", "dog"]
    assert not tab_a.warning and _shown_path(tab_a) != shown  # on to the next image
    # Keep: B labels A's current image, A presses, keeps B's label and moves on.
    now = _shown_path(tab_a)
    tab_b.run()
    key_button(tab_b, "prev").click().run()
    while _shown_path(tab_b) != now:
        key_button(tab_b, "next").click().run()
    key_button(tab_b, "class_0").click().run()
    key_button(tab_a, "class_1").click().run()
    [keep] = [b for b in tab_a.button if b.label == "Keep it"]
    keep.click().run()
    assert project.item(project.item_id(now)).label == "airplane" and _shown_path(tab_a) != now
    # Grid: B labels one tile of A's page; A's page key is refused whole.
    tab_a.segmented_control(key="label_view").set_value("Grid").run()
    tab_b.segmented_control(key="label_view").set_value("Grid").run()
    before = project.labels()
    tab_b.checkbox[0].check().run()
    key_button(tab_b, "gclass_0").click().run()  # one tile
    key_button(tab_a, "gclass_2").click().run()  # the page as A saw it
    assert "Nothing on this page was labeled" in " ".join(w.value for w in tab_a.warning)
    assert len(project.labels()) == len(before) + 1


def test_grid_labels_a_page_in_one_action(project):
    at = app(project, "views/label.py")
    at.segmented_control[0].set_value("Grid").run()
    boxes = [c for c in at.checkbox if c.key and c.key.startswith("sel_")]
    assert len(boxes) == 16
    ticked = [int(boxes[i].key[4:]) for i in (0, 3)]
    for i in (0, 3):
        boxes[i].check()
    key_button(at, "gclass_2").click().run()
    assert project.labels() == {i: "dog" for i in ticked}
    key_button(at, "gclass_0").click().run()  # nothing ticked: the whole page
    assert len(project.labels()) == 18  # 2 + 16: all of them
    assert "All 18 images are labeled" in texts(at)
    key_button(at, "undo_done_grid").click().run()  # one undo takes the whole page back
    assert project.labels() == {i: "dog" for i in ticked}
    assert len([c for c in at.checkbox if c.key and c.key.startswith("sel_")]) == 16


def test_label_page_survives_a_moved_image_folder(project, images):
    images.rename(images.with_name("moved"))
    at = app(project, "views/label.py")
    images_drawn = drawn(at, "image")
    assert "missing" in texts(at) and len(images_drawn) == 1 and images_drawn[0]["image"].startswith("data:image/jpeg")
    assert "showing the cached copy" in texts(at)
    key_button(at, "class_0").click().run()
    assert len(project.labels()) == 1


def test_project_page_reads_a_moved_folder_from_its_new_place(project, images, cifar_root, tmp_path):
    project.set_label(project.items()[0].id, "cat")
    moved = images.rename(images.with_name("moved"))
    other = make_subset(cifar_root, tmp_path / "other", per_class=6, classes=CLASSES, offset=50)
    at = app(project, "views/project.py")
    assert "is missing" in texts(at)

    at.text_input(key="move_from_warning_where").input(str(other))
    at.button(key="move_from_warning_go").click().run()  # other JPEGs, none with the project's paths and sizes
    assert "holds none of the project's 18 images" in texts(at).replace("\\", "")
    assert project.image_root == images.resolve()

    at.text_input(key="move_from_warning_where").input(str(moved))
    at.button(key="move_from_warning_go").click().run()
    assert not at.exception, at.exception
    said = texts(at).replace("\\", "")  # as shown: plain() escapes markdown's characters
    assert f"Images now read from {moved.resolve()} (was {images.resolve()}): 18 of 18 found there" in said
    assert "Scanned: 0 new images added, 0 missing" in said and "is missing" not in said
    assert project.image_root == moved.resolve() and len(project.labels()) == 1  # the label kept
    assert "showing the cached copy" not in texts(app(project, "views/label.py"))  # the originals again

    shutil.copy(other / "cat" / sorted(p.name for p in (other / "cat").iterdir())[0], moved / "cat" / "new.jpg")
    at = app(project, "views/project.py")
    at.button(key="rescan").click().run()
    assert "Scanned: 1 new image added, 0 missing" in texts(at).replace("\\", "") and project.item_count()[0] == 19

    # The labeled image sorted into a new folder, and a hidden one beside it: both said after the rescan.
    labeled = project.item(next(iter(project.labels())))
    (moved / "sorted").mkdir()
    (moved / labeled.path).rename(moved / "sorted" / "kept.jpg")
    (moved / ".thumbnails").mkdir()
    at.button(key="rescan").click().run()
    said = texts(at).replace("\\", "")
    assert ("Scanned: 0 new images added, 0 missing, 0 files skipped; 1 image was found under a new name (moved "
            "or renamed in the folder) and keeps its label; left out 1 hidden file or folder (names starting "
            "with '.').") in said
    assert project.item(labeled.id).path == "sorted/kept.jpg" and project.labels() == {labeled.id: "cat"}


# -- task-model suggestions ------------------------------------------------------------

# A round whose task model was calibrated (learn/calibration.py), as the round's metrics record it.
CALIBRATED = {"task": {"accuracy": 0.7, "n_val": 42, "calibration": {"calibrated": True, "n_held_out": 42,
                                                                      "temperature": 1.5}}}


def _suggesting_round(project: Project, guesses: dict[int, tuple[str, float]], metrics: dict | None = None,
                      sampler: str = "entropy") -> int:
    """A finished round written through the store, as the engine's round
    runner writes one: every item scored (queue = item id order, the first 5
    ranked), the task model's (class, confidence) for the items in `guesses`."""
    ids = [it.id for it in project.items()]
    rid = project.start_round(sampler, 5, 0, {})
    project.finish_round(rid, ids, [1.0 - k / len(ids) for k in range(len(ids))],  # entropies, in nats
                         [k + 1 if k < 5 else None for k in range(len(ids))], len(project.labeled_ids()), {},
                         metrics or {}, suggestions=[guesses.get(i) for i in ids])
    return rid


def test_single_view_shows_the_suggestion_and_enter_accepts_it(project):
    project.add_classes(["**bold**"])  # markdown characters: shown as typed
    ids = [it.id for it in project.items()]
    rid = _suggesting_round(project, {ids[0]: ("**bold**", 0.87), ids[2]: ("dog", 0.55)}, CALIBRATED)
    at = app(project, "views/label.py")
    first = project.item(ids[0]).path
    assert _shown_path(at) == first
    assert (rf"Suggested: **\*\*bold\*\*** · 87% (round {rid}'s task model) — calibrated on 42 held-out labels"
            in texts(at)) and "not pre-selected" not in texts(at)
    assert key_button(at, "accept").type == "primary"  # calibrated, at or above 80%: the prominent one
    accept = key_button(at, "accept")
    assert accept.label == "Accept: **bold** Enter"  # drawn by the keyboard component (views/keyboard.py), as text
    types = {b["label"]: b.get("primary", False) for b in single_buttons(at).values() if b["id"].startswith("class_")}
    assert types["**bold**"]  # the pre-selected class stands out
    assert not any(t for label, t in types.items() if label != "**bold**")

    accept.click().run()  # what Enter does
    assert project.labels() == {ids[0]: "**bold**"}
    last = project.label_history(ids[0])[-1]
    assert last["author"] == "user" and last["source"] == "suggestion"
    assert _shown_path(at) == project.item(ids[1]).path  # moved on, like a class key
    # no suggestion for this image: nothing extra, no Enter button
    assert "Suggested" not in texts(at) and "accept" not in single_buttons(at)
    assert not any(b.get("primary", False) for b in single_buttons(at).values())

    key_button(at, "undo").click().run()  # Z takes the accepted suggestion back
    assert project.labels() == {} and _shown_path(at) == first
    assert key_button(at, "accept").label == "Accept: **bold** Enter"

    # an image the user labeled already: the suggestion is shown, Enter cannot overwrite the label
    key_button(at, "class_1").click().run()  # cat, not the suggested class
    key_button(at, "prev").click().run()
    assert _shown_path(at) == first and "Labeled **cat**" in texts(at)
    assert "Suggested" in texts(at) and "accept" not in single_buttons(at)
    assert key_button(at, "class_1").type == "primary"


def test_grid_accepts_each_images_own_suggestion_in_one_action(project):
    ids = [it.id for it in project.items()]
    # calibrated confidences 70%, 73%, 76%, 79% (below the 80% threshold), then 82% ... 97%
    guesses = {i: (CLASSES[k % 3], 0.7 + 0.03 * k) for k, i in enumerate(ids[:10])}
    sure = {i: g[0] for i, g in guesses.items() if g[1] >= 0.8}
    _suggesting_round(project, guesses, CALIBRATED)
    at = app(project, "views/label.py")
    at.segmented_control[0].set_value("Grid").run()
    assert "Suggested: airplane · 70%" in texts(at) and "Suggested: cat · 82% ✓" in texts(at)  # ✓: Enter takes it
    assert key_button(at, "gaccept").label == "Accept the 6 marked ✓ `Enter`"
    assert "the 4 others stay unlabeled (below 80% calibrated confidence)" in texts(at)

    # ticked: one below the threshold, one above, one without a suggestion
    for i in (ids[0], ids[4], ids[12]):
        at.checkbox(key=f"sel_{i}").check()
    key_button(at, "gaccept").click().run()
    assert project.labels() == {ids[4]: "cat"}
    assert ("1 images labeled with their suggestions (1 changed); 1 left unlabeled: below 80% calibrated confidence; "
            "1 without a suggestion left unlabeled") in texts(at).replace("\\", "")  # the feedback is markdown-escaped

    # none ticked: the whole page, each confident image with its own class, in one action
    key_button(at, "gaccept").click().run()
    assert project.labels() == sure and len(set(sure.values())) == 3
    assert ("5 images labeled with their suggestions (5 changed); 4 left unlabeled: below 80% calibrated confidence; "
            "7 without a suggestion left unlabeled") in texts(at).replace("\\", "")
    assert {project.label_history(i)[-1]["source"] for i in sure} == {"suggestion"}
    # the page now holds the unsure ones: shown, never accepted by Enter
    assert key_button(at, "gaccept").disabled and "Suggested: airplane · 70%" in texts(at)

    key_button(at, "gundo").click().run()  # one undo takes the whole page's accept back
    assert project.labels() == {ids[4]: "cat"}
    key_button(at, "gundo").click().run()
    assert project.labels() == {}


def test_an_uncalibrated_or_unsure_suggestion_is_shown_but_not_preselected(project):
    """A round too small to calibrate (nothing fitted) or a confidence under
    the threshold: the suggestion and its words are shown, its class is not
    highlighted, its Accept button is the quiet one; Enter still accepts it
    in the single view (the person sees it beside the one image), and the
    grid's Enter accepts none of them."""
    ids = [it.id for it in project.items()]
    few = {"task": {"accuracy": 0.5, "n_val": 4, "calibration": {"calibrated": False, "n_held_out": 4}}}
    rid = _suggesting_round(project, {ids[0]: ("cat", 0.95), ids[1]: ("dog", 0.9)}, few)
    at = app(project, "views/label.py")
    assert (f"Suggested: **cat** · 95% (round {rid}'s task model) — not calibrated: only 4 of your labels are held "
            "out (it takes 30); not pre-selected") in texts(at)
    assert not any(b.get("primary", False) for b in single_buttons(at).values())
    key_button(at, "accept").click().run()  # Enter
    assert project.labels() == {ids[0]: "cat"}
    at.segmented_control[0].set_value("Grid").run()
    assert key_button(at, "gaccept").disabled and key_button(at, "gaccept").label == "None to accept `Enter`"
    assert ("not calibrated: only 4 of your labels are held out (it takes 30). Enter accepts none of the 1 (its "
            "confidence is not calibrated): use the class keys.") in texts(at)
    assert "Suggested: dog · 90%" in texts(at) and "✓" not in texts(at)
    # calibrated, but below the threshold
    _suggesting_round(project, {ids[1]: ("dog", 0.62)}, CALIBRATED)  # ids[1]: the first unlabeled one
    at = app(project, "views/label.py")
    assert "— calibrated on 42 held-out labels; not pre-selected (below 80% calibrated confidence)" in texts(at)
    assert key_button(at, "class_2").type == "secondary" and key_button(at, "accept").type == "secondary"


def test_a_labeled_batch_prompts_the_next_round_with_the_same_settings(project):
    """The prompt replaces the batch's progress bar once every image of it is
    labeled (its button starts a worker: tests/test_browser_trust.py)."""
    from dataclasses import asdict

    ids = [it.id for it in project.items()]
    rid = project.start_round("typiclust", 5, 4, {"round": asdict(RoundConfig(sampler="auto", budget=5, seed=4,
                                                                                device="cpu", fast=True))})
    project.finish_round(rid, ids, [1.0] * len(ids), [k + 1 if k < 5 else None for k in range(len(ids))], 0, {}, {})
    project.set_labels([(i, "cat") for i in ids[:4]], source="ui")
    at = app(project, "views/label.py")
    assert "4 of 5 labeled in this round's batch" in " ".join(p.proto.text for p in at.get("progress"))
    assert "Train round 2" not in texts(at)
    project.set_label(ids[4], "dog")
    at = app(project, "views/label.py")
    assert ("**Round 1's batch is labeled.** Train round 2 with the same settings? (auto, budget 5, quick models, "
            "device cpu, seed 4)") in texts(at)
    assert key_button(at, "next_round").label == "Train round 2" and not at.get("progress")
    assert _shown_path(at) == project.item(ids[5]).path  # labeling goes on beyond the batch


# -- training -------------------------------------------------------------------------

def test_round_start_is_refused_while_one_trains(project):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vaal_core.store import Project
        with Project.open({str(project.root)!r}).training_lock():
            print("locked", flush=True)
            time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        at = app(project, "views/train.py")
        at.button[[b.label for b in at.button].index("Start round")].click().run()
        assert "training already" in texts(at)
        assert project.rounds() == []
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_round_start_checks_the_budget_first(project):
    at = app(project, "views/train.py")
    assert at.number_input[0].max == 18  # the budget cannot exceed the unlabeled pool
    at.number_input[0].set_value(5)
    at.radio[0].set_value("Quick")
    at.button[[b.label for b in at.button].index("Start round")].click().run()
    assert not at.exception
    assert project.settings()["budget"] == 5 and project.settings()["fast"] is True
    # the round trains in a background process; the page is free meanwhile
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not project.rounds() or project.rounds()[-1]["status"] == "running"
                                           or project.is_training()):
        time.sleep(0.5)
    last = project.rounds()[-1]
    assert last["status"] == "done", last
    assert last["metrics"]["class_counts"] == {"airplane": 0, "cat": 0, "dog": 0}
    at.run()
    # the default, auto, with nothing labeled: typiclust in the patch feature space, both said on the page
    assert "Round 1 (typiclust) finished" in texts(at)
    assert "**auto** used **typiclust** this round. Why: fewer than 2 classes are labeled" in texts(at)
    assert "Feature space: k-means patch features learned from this project's" in texts(at)
    at.switch_page("views/label.py").run()
    assert "rank 1 of 5 in round 1's batch" in texts(at)


def test_train_page_shows_the_task_models_accuracy_and_how_it_was_measured(project):
    how = "accuracy on 4 of your 18 labels, held out of training; the samplers chose most of them"
    ids = [it.id for it in project.items()]
    _suggesting_round(project, {ids[0]: ("cat", 0.9)}, metrics={
        "task": {"arch": "cnn", "accuracy": 0.75, "n_val": 4, "n_train": 14, "how": how, "warm_start": False,
                 "steps": 50, "train_s": 1.5}})
    at = app(project, "views/train.py")
    assert f"Suggestions of round 1 (task model): **75% right on 4 held-out labels** — {how}" in texts(at)
    table = at.dataframe[0].value
    assert list(table["suggestions acc %"]) == [75.0] and list(table["held-out n"]) == [4]
    assert list(table["task model acc %"]) == [75.0] and table["probe acc %"].isna().all()
    # a round without a task model: no estimate line, empty columns
    _suggesting_round(project, {}, sampler="vaal")
    at.run()
    assert "Suggestions of round" not in texts(at)
    assert at.dataframe[0].value["suggestions acc %"].isna().tolist() == [False, True]
    # a round whose suggestions combine the task model with the feature probe: their accuracy, and each alone
    _suggesting_round(project, {ids[1]: ("dog", 0.8)}, metrics={
        "task": {"arch": "cnn", "accuracy": 0.5, "n_val": 4, "n_train": 14, "how": how, "warm_start": True,
                 "steps": 50, "train_s": 1.5},
        "suggest": {"model": "task model + feature probe", "accuracy": 1.0, "n_val": 4, "task_accuracy": 0.5,
                    "probe_accuracy": 0.75, "n_train": 14}})
    at.run()
    assert (f"Suggestions of round 3 (task model + feature probe): **100% right on 4 held-out labels** (the task "
            f"model alone 50%, the linear probe on the feature space alone 75%) — {how}") in texts(at)
    table = at.dataframe[0].value
    assert table["suggestions acc %"].tolist()[2] == 100.0 and table["task model acc %"].tolist()[2] == 50.0
    assert table["probe acc %"].tolist()[2] == 75.0
    from vaal_core.loop.report import history, round_sentence
    from views.common import plain

    sentence = round_sentence(history(project)[2])  # the history's line (markdown-escaped on the page)
    assert ("suggestions (task model + feature probe) right 100% of the time on 4 held-out labels (the task "
            "model alone 50%)") in sentence and plain(sentence) in texts(at)


def _overconfident(n: int, seed: int = 0):
    """Held-out softmax of a classifier twice as sure as it should be, and
    labels drawn from its true probabilities."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), rng.integers(0, 3, n)] += 2.0
    soft = lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)  # noqa: E731
    return soft(2 * z), (soft(z).cumsum(1) > rng.random((n, 1))).argmax(1)


def test_train_page_tells_the_history_in_sentences_and_each_rounds_calibration(project):
    from vaal_core.learn import calibration

    ids = [it.id for it in project.items()]
    project.set_labels([(ids[k], CLASSES[k % 3]) for k in range(12)])
    few = calibration.fit(*_overconfident(4))
    _suggesting_round(project, {ids[20 % len(ids)]: ("cat", 0.9)}, metrics={
        "task": {"accuracy": 0.75, "n_val": 4, "how": "on 4 labels", "calibration": few}})
    many = calibration.fit(*_overconfident(200, seed=1))
    rid = _suggesting_round(project, {ids[-1]: ("dog", 0.6)}, sampler="typiclust", metrics={
        "policy": {"name": "auto", "chose": "typiclust", "why": "typiclust: few labels"},
        "task": {"accuracy": 0.71, "n_val": 200, "how": "on 200 labels", "calibration": many}})
    project.db.execute("UPDATE rounds SET timings = ? WHERE id = ?", (json.dumps({"total_s": 38.2}), rid))
    failed = project.start_round("vaal", 5, 0, {})
    project.fail_round(failed, "the VAE diverged at iteration 40")
    at = app(project, "views/train.py")
    shown = texts(at).replace("\\", "")  # plain() escapes markdown characters; the words are what count
    assert ("- Round 3 · vaal · failed: the VAE diverged at iteration 40\n"
            "- Round 2 · typiclust (chosen by auto) picked 5 images · from 12 labels · suggestions right 71% of "
            "the time on 200 held-out labels, confidence calibrated · 38 s\n"
            "- Round 1 · entropy picked 5 images · from 12 labels · suggestions right 75% of the time on 4 "
            "held-out labels, confidence not calibrated (it takes 30 held-out labels)") in shown
    # the latest calibrated round's reliability figure, with its figures in words
    assert at.selectbox(key="calibration_round").value == 2
    assert len(at.get("plotly_chart")) >= 2  # the reliability figure and the labels per class
    t = many["temperature"]
    assert (f"Round 2: calibrated on 200 held-out labels. Calibration error (the average gap between the "
            f"confidence shown and how often it is right; 0 is perfect): {many['ece_before']:.3f} raw, "
            f"{many['ece_after']:.3f} calibrated") in shown and f"Temperature {t:.2f}: the raw softmax was " \
        "overconfident, so the confidence shown is lowered" in shown and t > 1.5
    assert f"on 200 labels even a perfectly calibrated model would show about {many['ece_noise']:.2f}" in shown
    at.selectbox(key="calibration_round").set_value(1).run()
    assert "Round 1: not calibrated: too few held-out labels (4; it takes 30, about 300 labels in all" in \
        "\n".join(i.value for i in at.info).replace("\\", "")
    # the engineering table sits behind an expander, with the calibration's columns
    assert [e.label for e in at.expander if e.label == "Details for engineers"]
    table = at.dataframe[0].value
    assert list(table["round"]) == [1, 2, 3] and list(table["temperature"])[1] == t
    assert list(table["ECE calibrated"])[1] == many["ece_after"]


def device_box(at: AppTest):
    return next(box for box in at.selectbox if box.label == "Device")


def test_a_device_the_machine_lacks_is_refused_in_page_words_and_not_saved(project):
    from vaal_core.learn import devices

    if devices.probe()["cuda"]:
        pytest.skip("this machine has a CUDA GPU")
    project.save_settings(device="cpu", budget=3)
    at = app(project, "views/train.py")
    assert device_box(at).value == "cpu"
    device_box(at).set_value("cuda")
    at.number_input[0].set_value(4)
    at.button[[b.label for b in at.button].index("Start round")].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["This machine has no CUDA GPU; choose Auto or CPU."]
    assert "--device" not in texts(at)
    assert project.settings()["device"] == "cpu" and project.settings()["budget"] == 3  # nothing saved
    assert project.rounds() == [] and not project.is_training() and worker_state(project) is None
    # a default saved before such choices were refused: the page offers Auto instead
    project.save_settings(device="cuda")
    assert device_box(app(project, "views/train.py")).value == "auto"


@pytest.mark.slow
def test_train_page_names_every_phase_of_a_live_round(project):
    """A real round, paused while its task model trains: the Train page
    draws one bar for each phase the round goes through, in order, named
    (the task model's phase used to show as "starting" at 0%)."""
    ids = [it.id for it in project.items()]
    project.set_labels([(ids[k], CLASSES[k % 3]) for k in range(9)])  # 3 classes: a task model trains
    slept, paused, resume, sent, failed = threading.Event(), threading.Event(), threading.Event(), [], []

    def progress(event):  # called before the round writes the event to the store
        sent.append(event.phase)
        if event.phase is Phase.TASK and event.done and not paused.is_set():
            if not slept.is_set():  # past the store's write throttle: this step gets written
                time.sleep(0.6)
                slept.set()
            else:  # hold the round here, with a training step (and its loss) in the store
                paused.set()
                resume.wait(120)

    def train():
        try:
            run_round(Project.open(project.root), RoundConfig(sampler="vaal", budget=3, fast=True, device="cpu"),
                      progress=progress)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            failed.append(err)

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    try:
        assert paused.wait(180), failed
        at = app(project, "views/train.py")
        bars = [bar.text for bar in at.progress]
        assert [text.split(":")[0] for text in bars] == [
            "Training the task model", "Task model predictions", "Training the VAE and discriminator",
            "Scoring the pool with the VAE", "Selecting the batch"]
        assert bars[0].startswith("Training the task model: step ") and " of " in bars[0]
        assert all(text.endswith(": waiting") for text in bars[1:])
        assert "(vaal, budget 3): training the task model" in texts(at)
        assert "Task loss" in [m.label for m in at.metric]
    finally:
        resume.set()
        worker.join(180)
    assert not failed and project.rounds()[-1]["status"] == "done"
    engine_phases = set(sent)
    assert engine_phases == {Phase.TASK, Phase.PREDICT, Phase.TRAIN, Phase.SCORE, Phase.SELECT}
    assert set(project.rounds()[-1]["settings"]["needs"]) == {"latents", "disc_prob"}
    at.run()
    assert not at.progress and "Round 1 (vaal) finished" in texts(at)


@pytest.mark.slow
def test_the_app_server_never_loads_pytorch(project, home):
    """The Train page describes the device and starts a round without
    importing PyTorch into the server process: a probe process answers."""
    code = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        from vaal_core.services import workspace
        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=120)
        at.query_params["project"] = workspace.remember({str(project.root)!r}).id
        at.run()
        at.switch_page("views/train.py").run()
        at.number_input[0].set_value(2)
        at.button[[b.label for b in at.button].index("Start round")].click().run()
        assert not at.exception, at.exception
        shown = "\\n".join(c.value for c in at.caption)
        print("torch loaded:", "torch" in sys.modules)
        print([line for line in shown.splitlines() if line.startswith("Trains on")][0])
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "VAAL_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert "torch loaded: False" in out.stdout
    assert "Trains on: cpu (" in out.stdout  # described from the probe's answer
    deadline = time.monotonic() + 240  # the round it started trains in its own process
    while time.monotonic() < deadline and (not project.rounds() or project.rounds()[-1]["status"] == "running"):
        time.sleep(0.5)
    assert project.rounds()[-1]["status"] == "done"


@pytest.mark.slow
def test_a_task_model_sampler_with_one_class_labeled_gets_a_typiclust_round(project):
    items = project.items()
    project.set_labels([(items[0].id, "cat"), (items[1].id, "cat")])
    at = app(project, "views/train.py")
    box = at.selectbox[0]
    assert any(o.startswith("entropy: uncertainty") for o in box.options)
    # every description, with what picks until a classifier exists
    assert "- **entropy**: uncertainty" in box.help and "until the labels cover 2 classes, typiclust picks" in box.help
    box.set_value("entropy")
    at.button[[b.label for b in at.button].index("Start round")].click().run()
    assert not at.exception and not at.error
    deadline = time.monotonic() + 240  # the round trains in its own process
    while time.monotonic() < deadline and (not project.rounds() or project.rounds()[-1]["status"] == "running"
                                           or project.is_training()):
        time.sleep(0.5)
    assert project.rounds()[-1]["status"] == "done" and project.rounds()[-1]["sampler"] == "typiclust"
    at.run()
    page = texts(at)
    assert "**entropy** used **typiclust** this round. Why: entropy ranks by a classifier" in page
    assert "2 labels of 1 class" in page


# -- demo ----------------------------------------------------------------------------

@pytest.mark.slow
def test_demo_page_shows_a_finished_run(home):
    from vaal_core.data.digits import write_digits
    from vaal_core.loop.simulate import SimConfig, simulate

    digits = write_digits(home / "data" / "digits")
    out = home / "demo-runs" / "20261123T000000-digits" / "sim.json"
    cfg = SimConfig(samplers=("vaal",), init=20, budget=20, rounds=1, seeds=2, fast=True, device="cpu",
                    subset=150, map=True)
    result = simulate(digits, cfg, out)
    at = app(page="views/demo.py")
    assert "vaal reached" in texts(at) and result["headline"].split(" | ")[0][:40] in texts(at)
    assert [b.label for b in at.get("download_button")] == ["Results (JSON)", "Table (CSV)", "Chart (HTML)"]
    table = at.dataframe[0].value
    assert set(table["sampler"]) == {"random", "vaal"} and set(table["labeled"]) == {20, 40}
    assert len(at.get("plotly_chart")) == 2  # the curves and the picks map
    assert "Picked per class" in texts(at)


@pytest.mark.slow
def test_demo_run_can_be_stopped_and_keeps_what_it_finished(home, tmp_path):
    from vaal_core.services import demo_runs
    from vaal_core.data.digits import write_digits
    from vaal_core.errors import BadImageFolder

    with pytest.raises(BadImageFolder):
        demo_runs.start(tmp_path / "nowhere", ["vaal"], 10, 10, 2, 1)
    digits = write_digits(home / "data" / "digits")
    run = demo_runs.start(digits, ["coreset"], 30, 30, 10, 3, subset=600, fast=True)
    at = app(page="views/demo.py")
    assert any(b.label == "Stop" for b in at.button), texts(at)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (run.result() or {}).get("summary"):
        time.sleep(0.5)  # a round or two finished
    at.button[[b.label for b in at.button].index("Stop")].click().run()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.running():
        time.sleep(0.3)
    assert not run.running()
    at.run()
    assert "stopped before the end" in texts(at)
    assert run.result()["summary"]["random"][0]["labeled"] == 30


def test_demo_page_shows_the_overlap_and_timing_tables(home, project):
    """A finished run's JSON as the simulation writes it (built by its own
    summary functions), read by the page: no simulation needed."""

    from vaal_core.loop.headline import headline
    from vaal_core.loop.report import summarize

    def records(seed: int, select_s: float) -> list[dict]:
        return [{"round": r, "labeled": 20 + 20 * r, "accuracy": 0.3 + 0.1 * r + 0.01 * seed,
                 "train_s": 0.0 if r == 0 else 2.0, "select_s": 0.0 if r == 0 else select_s, "task_s": 1.0,
                 "class_counts": {}, "picked": []} for r in range(3)]

    results = {"random": {"0": records(0, 0.01), "1": records(1, 0.01)},
               "entropy": {"0": records(0, 0.5), "1": records(1, 0.7)}}
    summary = summarize(results)
    result = {"complete": True, "error": None, "config": {"seeds": 2, "samplers": ["random", "entropy"]},
              "results": results, "summary": summary, "headline": headline(summary, results, 80), "latents_file": None,
              "overlap": [{"a": "entropy", "b": "random", "first_batch": 0.15, "all_picks": 0.325, "n_seeds": 2}]}
    out = home / "demo-runs" / "20261124T000000-digits" / "sim.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(result))
    at = app(project, "views/demo.py")
    assert len(at.dataframe) == 3  # results, overlap, timings
    overlap = at.dataframe[1].value
    assert list(overlap["sampler"]) == ["entropy"] and list(overlap["with"]) == ["random"]
    assert list(overlap["round 1 batch %"]) == [15.0] and list(overlap["all picks %"]) == [32.5]
    assert "Share of picks two samplers have in common" in texts(at)
    timings = at.dataframe[2].value.set_index("sampler")
    assert timings.loc["entropy", "selection s / round"] == pytest.approx(0.6)
    assert timings.loc["entropy", "training s / round"] == pytest.approx(2.0)
    # an older result file has no overlap: no table, no error
    del result["overlap"]
    out.write_text(json.dumps(result))
    at.run()
    assert not at.exception and "Share of picks" not in texts(at) and len(at.dataframe) == 2
