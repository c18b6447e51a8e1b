"""The Python API (`import vaal_core as vc`) on real data: scikit-learn's
handwritten digits written as PNG files in class folders. Each call is
checked against what the store holds (a fresh `Project.open`) and against
what the CLI says for the same project: one store, one set of rules."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import vaal_core as vc
from vaal_core.services import workspace
from vaal_core.store import Project

from conftest import ROOT, run_cli

CLASSES = {"one": 1, "two": 2, "three": 3}


@pytest.fixture(autouse=True)
def home(workspace_home) -> Path:
    return workspace_home


@pytest.fixture
def project(digits_folder):
    p = vc.create_project("digits", images=digits_folder, classes=list(CLASSES), progress=False)
    yield p
    p.close()


def test_import_loads_neither_torch_nor_pandas():
    code = ("import sys, vaal_core as vc; print('torch' in sys.modules, 'pandas' in sys.modules); "
            "vc.open_project; print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False", "False", "False"]  # not even once the API is loaded
    assert issubclass(vc.UnknownClass, vc.BadInput) and issubclass(vc.BadInput, vc.VaalError)


def test_create_by_name_in_the_workspace_then_open_by_name_and_path(digits_folder, home, capsys):
    p = vc.create_project("digits", images=digits_folder, classes=["one", "two", "three"])
    assert p.root == (home / "projects" / "digits").resolve()
    assert p.ingest_report["added"] == 90 and p.ingest_report["skipped"] == []
    assert "reading the images" in capsys.readouterr().err  # the progress bar (progress=False silences it)
    # The app lists it: the recent list and the projects/ folder.
    assert [k.path for k in workspace.known_projects()] == [p.root]

    again = vc.open_project("digits")
    assert again.root == p.root and again.classes() == ["one", "two", "three"]
    assert vc.open_project(p.root).root == p.root
    assert vc.open_project(str(p.root)).status() == p.status()
    assert "90 images, 0 labeled" in repr(again)

    with pytest.raises(vc.ProjectExists, match="exist_ok=True"):
        vc.create_project("digits", images=digits_folder)
    assert vc.create_project("digits", images=digits_folder, exist_ok=True,
                             progress=False).ingest_report["known"] == 90
    with pytest.raises(vc.ProjectNotFound, match="no project named 'cats'"):
        vc.open_project("cats")
    with pytest.raises(vc.ProjectNotFound, match="no project at"):
        vc.open_project(home)  # a path, and not a project
    with pytest.raises(vc.BadInput, match="not usable"):
        vc.open_project("")
    capsys.readouterr()


def test_create_by_path_with_gold_from_folders_and_status_as_the_cli(digits_folder, tmp_path):
    where = tmp_path / "elsewhere" / "proj"
    p = vc.create_project(where, images=digits_folder, gold_from_folders=True, progress=False)
    assert p.root == where.resolve()
    assert sorted(p.classes()) == sorted(CLASSES)  # from the folders; the answers stay hidden
    assert p.status()["labeled"] == 0
    stored = Project.open(where)
    assert {it.path.split("/")[0] == it.gold for it in stored.items()} == {True}

    cli = json.loads(run_cli("status", p.root, "--json").stdout)
    assert cli == p.status()

    p.label("two/000.png", "two")
    assert json.loads(run_cli("status", p.root, "--json").stdout) == p.status()
    assert p.status()["per_class"]["two"] == 1


def test_refuses_bad_input_before_writing(digits_folder, tmp_path):
    with pytest.raises(vc.BadInput, match="more than once"):
        vc.create_project(tmp_path / "p", images=digits_folder, classes=["a", "a"], progress=False)
    with pytest.raises(vc.BadInput, match="not usable"):
        vc.create_project(tmp_path / "p", images=digits_folder, classes=["a/b"], progress=False)
    with pytest.raises(vc.BadImageFolder):
        vc.create_project(tmp_path / "p", images=tmp_path / "nothing-here", progress=False)
    with pytest.raises(vc.BadInput, match="not usable"):
        vc.create_project(" ", images=digits_folder, progress=False)  # a name that cannot be a folder
    assert not (tmp_path / "p").exists()


def test_label_by_path_and_by_id_is_stored(project):
    assert project.label("one/003.png", "one") == {"item_id": project.project.item_id("one/003.png"),
                                                   "path": "one/003.png", "label": "one"}
    two = Project.open(project.root).item_id("two/007.png")
    assert project.label(two, "two")["path"] == "two/007.png"
    assert project.label(np.int64(two), "three")["label"] == "three"  # an id from a DataFrame works too

    fresh = Project.open(project.root)
    labels = {fresh.item(i).path: name for i, name in fresh.labels().items()}
    assert labels == {"one/003.png": "one", "two/007.png": "three"}
    history = fresh.label_history(two)
    assert [(h["label"], h["source"]) for h in history] == [("two", "api"), ("three", "api")]

    project.label("two/007.png", None)  # clears it
    assert set(Project.open(project.root).labels().values()) == {"one"}


def test_bad_class_or_image_raises_bad_input_and_writes_nothing(project):
    before = Project.open(project.root).label_version()
    with pytest.raises(vc.UnknownClass, match="'four'") as err:
        project.label("one/000.png", "four")
    assert isinstance(err.value, vc.BadInput) and "one, two, three" in str(err.value)
    with pytest.raises(vc.UnknownItem, match="'one/999.png'") as err:
        project.label("one/999.png", "one")
    assert isinstance(err.value, vc.BadInput)
    with pytest.raises(vc.UnknownItem, match="12345"):
        project.label(12345, "one")
    with pytest.raises(vc.BadInput, match="path .* or its item id"):
        project.label(1.5, "one")
    fresh = Project.open(project.root)
    assert fresh.labels() == {} and fresh.label_version() == before  # no label, no action row


def test_import_labels_from_a_frame_a_dict_or_a_file_is_one_checked_action(project, tmp_path):
    project.label("one/000.png", "two")  # given before, by hand
    frame = pd.DataFrame({"path": ["one/000.png", "one/001.png", "two/000.png"], "label": ["one", "one", "two"]})
    assert project.import_labels(frame, replace=False) == {"rows": 3, "new": 2, "changed": 1, "unchanged": 0,
                                                           "written": 2, "classes_added": []}
    fresh = Project.open(project.root)
    assert {fresh.item(i).path: lab for i, lab in fresh.labels().items()} == {
        "one/000.png": "two", "one/001.png": "one", "two/000.png": "two"}  # the hand-given label kept
    assert fresh.undo()["items"][0]["path"] == "one/001.png"  # one action: both imported labels go back at once
    assert len(Project.open(project.root).labels()) == 1

    assert project.import_labels({"one/000.png": "one"}, annotator="ana")["written"] == 1  # replace: the default
    assert project.labels().set_index("path").loc["one/000.png", ["label", "author", "source"]].tolist() == \
        ["one", "ana", "csv"]

    project.export(tmp_path / "out.json")  # the JSON export reads back: nothing to do
    assert project.import_labels(tmp_path / "out.json") == {"rows": 1, "new": 0, "changed": 0, "unchanged": 1,
                                                            "written": 0, "classes_added": []}
    before = Project.open(project.root).label_version()
    with pytest.raises(vc.BadInput, match="the DataFrame's row 2: unknown class 'four'"):
        project.import_labels(pd.DataFrame({"path": ["one/002.png", "one/003.png"], "label": ["one", "four"]}))
    with pytest.raises(vc.BadInput, match="row 2: 'one/002.png' is labeled 'one' in an earlier row and 'two'"):
        project.import_labels(pd.DataFrame({"path": ["one/002.png", " one/002.png"], "label": ["one", "two"]}))
    with pytest.raises(vc.BadInput, match="columns path and label"):
        project.import_labels(pd.DataFrame({"file": ["one/002.png"], "class": ["one"]}))
    with pytest.raises(vc.BadInput, match="not list"):
        project.import_labels([("one/002.png", "one")])
    assert Project.open(project.root).label_version() == before  # nothing written by any of them

    with pytest.raises(vc.BadInput, match=r"the DataFrame's row 1: unknown class 'five' \(the file names 2 classes "
                                          r"the project lacks: five, six\).*\(add_classes=True\)"):
        project.import_labels(pd.DataFrame({"path": ["one/002.png", "one/003.png"], "label": ["five", "six"]}))
    out = project.import_labels(pd.DataFrame({"path": ["one/002.png", "one/003.png"], "label": ["five", "six"]}),
                                add_classes=True)
    assert out["classes_added"] == ["five", "six"] and out["written"] == 2
    assert project.classes() == ["one", "two", "three", "five", "six"]
    assert project.labels().set_index("path").loc[["one/002.png", "one/003.png"], "label"].tolist() == ["five", "six"]


def test_a_label_file_from_another_tool_names_its_images_as_that_tool_does(project, digits_folder, tmp_path):
    root = Path(digits_folder)
    files = {  # a spreadsheet's semicolons and Windows paths; a script's absolute paths, ./ and the folder's name
        "semicolon.csv": "path;label\r\none\\000.png;one\r\n./one/001.png;one\r\n",
        "absolute.csv": f"path,label\n{root / 'one' / '002.png'},one\n{root.name}/one/003.png,one\n",
        "tab.csv": "path\tlabel\none//004.png\tone\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        project.import_labels(tmp_path / name)
    assert sorted(project.labels()["path"]) == [f"one/00{k}.png" for k in range(5)]
    # One image by the Path a glob gives: the same item as its relative path.
    assert project.label(root / "two" / "000.png", "two")["path"] == "two/000.png"
    with pytest.raises(vc.UnknownItem, match="'/nowhere/two/000.png' is not an item of this project"):
        project.label("/nowhere/two/000.png", "two")

    (tmp_path / "far.csv").write_text(f"path,label\n{root.parent / 'elsewhere' / 'one' / '005.png'},one\n")
    with pytest.raises(vc.BadInput, match="far.csv line 2: '.*/elsewhere/one/005.png' is not an image of this project"):
        project.import_labels(tmp_path / "far.csv")  # outside the image folder: still refused
    (tmp_path / "split.csv").write_text("path;label\none/005.png;one;extra\n")
    with pytest.raises(vc.BadInput, match='3 values where the header has 2 columns \\(path;label\\); put a path or '
                                          'label that holds a semicolon in double quotes \\("a;b.jpg"\\)'):
        project.import_labels(tmp_path / "split.csv")


def test_classes_are_added_renamed_reordered_and_removed(project):
    project.label("one/000.png", "one")
    assert project.add_classes("four, five") == ["four", "five"]
    assert project.add_classes(["five", "six"]) == ["six"]  # a class there already is left as it is
    project.rename_class("one", "uno")
    project.reorder_classes(["six", "five", "four", "three", "two", "uno"])
    project.remove_class("four")
    fresh = vc.open_project(project.root)
    assert fresh.classes() == ["six", "five", "three", "two", "uno"]
    assert fresh.labels()[["path", "label"]].values.tolist() == [["one/000.png", "uno"]]  # the label followed
    with pytest.raises(vc.BadInput, match="class 'uno' has labels in its history; rename it"):
        project.remove_class("uno")
    with pytest.raises(vc.BadInput, match="add_classes lists seven more than once"):
        project.add_classes(["seven", "seven"])
    with pytest.raises(vc.BadInput, match="class name '' is not usable"):
        project.add_classes(["eight", " "])
    with pytest.raises(vc.BadInput, match="each once: missing five, three, two, uno; not a class: seven \\(the classes: "):
        project.reorder_classes(["six", "seven"])
    with pytest.raises(vc.BadInput, match="each once: a class given twice"):
        project.reorder_classes(["six", "five", "three", "two", "uno", "uno"])
    with pytest.raises(vc.UnknownClass, match="unknown class 'nine'"):
        project.rename_class("nine", "ten")
    with pytest.raises(vc.BadInput, match="class 'Six' differs from the class 'six' only in letter case; use 'six'"):
        project.add_classes(["Six"])
    with pytest.raises(vc.BadInput, match="class 'FIVE' differs from the class 'five' only in letter case"):
        project.rename_class("six", "FIVE")
    project.rename_class("six", "Six")  # its own case may change
    project.rename_class("Six", "six")
    assert vc.open_project(project.root).classes() == ["six", "five", "three", "two", "uno"]  # none of those wrote


def test_labels_frame_and_exports_match_the_store(project, tmp_path):
    empty = project.labels()
    assert list(empty.columns) == ["path", "label", "author", "source", "time", "item_id"] and empty.empty

    project.label("two/001.png", "two")
    project.label("one/002.png", "one", author="ana")
    frame = project.labels()
    assert list(frame.columns) == ["path", "label", "author", "source", "time", "item_id"]
    assert frame[["path", "label", "author", "source"]].values.tolist() == [
        ["one/002.png", "one", "ana", "api"], ["two/001.png", "two", "user", "api"]]  # by path
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    assert (pd.Timestamp.now(tz="UTC") - frame["time"]).max() < pd.Timedelta(minutes=5)
    stored = Project.open(project.root).labels()
    assert dict(zip(frame["item_id"], frame["label"])) == stored

    out = project.export(tmp_path / "labels.csv")
    assert out == {"format": "csv", "out": str(tmp_path / "labels.csv"), "labels": 2}
    with open(tmp_path / "labels.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"path": "one/002.png", "label": "one"},
                                            {"path": "two/001.png", "label": "two"}]
    project.export(tmp_path / "labels.txt", format="json")
    data = json.loads((tmp_path / "labels.txt").read_text())
    assert data["labels"] == [{"path": p, "label": lab} for p, lab in zip(frame["path"], frame["label"])]
    assert data["classes"] == ["one", "two", "three"]

    folder = project.export(tmp_path / "tree", format="imagefolder")
    assert folder["labels"] == 2 and (tmp_path / "tree" / "one" / "one__002.png").is_file()
    with pytest.raises(vc.BadInput, match="format="):
        project.export(tmp_path / "labels")
    with pytest.raises(vc.BadInput, match="unknown export format 'xml'"):
        project.export(tmp_path / "labels.xml", format="xml")


@pytest.mark.slow
def test_round_then_queue_in_rank_order(project, capsys):
    assert list(project.queue().columns) == ["path", "score", "rank", "suggestion", "confidence", "calibrated",
                                             "item_id", "audit"]
    assert project.queue().empty  # no round yet

    with pytest.raises(vc.UnknownSampler):
        project.round(sampler="nope", fast=True, progress=False)
    with pytest.raises(vc.BudgetTooLarge):
        project.round(sampler="random", budget=10_000, fast=True, progress=False)
    with pytest.raises(vc.BadInput, match="budget must be a whole number of images, got '10'"):
        project.round(sampler="random", budget="10", fast=True, progress=False)
    capsys.readouterr()
    with pytest.raises(vc.BadInput, match="budget must be at least 1"):
        project.round(sampler="random", budget=0)  # full size on a CPU: refused before the note
    assert "train slowly" not in capsys.readouterr().err
    assert Project.open(project.root).rounds() == []  # refused before any round row

    summary = project.round(sampler="coreset", budget=12, fast=True)  # vaal, with no labels, hands it to typiclust
    err = capsys.readouterr().err
    assert "training the VAE and discriminator" in err and "vae " in err  # a bar per phase, with the losses
    assert summary["round_id"] == 1 and summary["sampler"] == "coreset" and summary["budget"] == 12
    assert summary["queue_length"] == 12 and "queue" not in summary  # the batch
    assert summary["metrics"]["iterations"] > 0 and "task" not in summary["metrics"]  # no labels: no task model
    stored = Project.open(project.root)
    assert stored.round(1)["status"] == "done"

    queue = project.queue(limit=10)
    assert list(queue.columns) == ["path", "score", "rank", "suggestion", "confidence", "calibrated", "item_id",
                                   "audit"]
    assert queue["rank"].tolist() == list(range(1, 11))
    assert queue["path"].tolist() == [q["path"] for q in stored.queue(10)]
    assert queue[~queue["audit"]]["score"].is_monotonic_decreasing  # the sampler's picks, best first
    assert queue["suggestion"].isna().all() and queue["confidence"].isna().all()  # no task model this round
    assert queue.attrs["round"] == 1 and queue.attrs["task"] is None and queue.attrs["calibration"] is None
    assert queue["calibrated"].isna().all()  # no confidence: nothing to call calibrated or not
    with pytest.raises(vc.BadInput, match="limit"):
        project.queue(limit=-1)

    # Label the top of the queue (by its paths), then a second round trains a task model: suggestions.
    for path in queue["path"][:6]:
        project.label(path, path.split("/")[0])
    project.label("one/020.png", "one")
    project.label("two/020.png", "two")
    assert project.queue(limit=3)["path"].tolist() == [q["path"] for q in stored.queue(3)]
    assert not set(project.queue()["path"]) & set(project.labels()["path"])  # labeled ones leave the queue

    second = project.round(sampler="entropy", budget=5, fast=True, progress=False)
    assert second["round_id"] == 2 and second["metrics"]["task"]["n_train"] > 0
    queue = project.queue(limit=5)
    assert queue["rank"].tolist() == [1, 2, 3, 4, 5]
    assert queue["suggestion"].isin(["one", "two", "three"]).all()
    assert queue["confidence"].between(0, 1).all()
    cli = json.loads(run_cli("suggest", project.root, "--limit", "5", "--json").stdout)
    assert [(r["path"], r["suggestion"]) for r in cli["items"]] == list(zip(queue["path"], queue["suggestion"]))
    # A handful of labels holds none out: every confidence says it is a raw one, in the frame and in words.
    assert (queue["calibrated"] == False).all()  # noqa: E712 - the column holds booleans, not truthiness
    assert queue.attrs["calibration"] == cli["calibration"]
    assert queue.attrs["calibration"]["words"].startswith("not calibrated: ")

    # A round while another process trains the project is refused, as for the CLI and the app.
    with Project.open(project.root).training_lock():
        with pytest.raises(vc.WorkerBusy, match="already being trained"):
            project.round(sampler="random", budget=5, fast=True, progress=False)
    assert len(Project.open(project.root).rounds()) == 2


@pytest.mark.slow
def test_simulate_on_digits(digits_folder, tmp_path, capsys):
    with pytest.raises(vc.UnknownSampler):
        vc.simulate(digits_folder, ["nope"], init=10, budget=10, rounds=2, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()

    sim = vc.simulate(digits_folder, ["random", "entropy"], init=10, budget=10, rounds=2, seeds=1, fast=True,
                      out=tmp_path / "sim")
    assert "simulating" in capsys.readouterr().err
    assert sim.out == tmp_path / "sim" / "simulation.json" and sim.out.with_suffix(".html").is_file()
    assert json.loads(sim.out.read_text())["summary"] == sim.raw["summary"]

    summary = sim.summary
    assert list(summary.columns) == ["sampler", "round", "labeled", "mean", "std", "min", "max", "n_seeds"]
    assert len(summary) == 6  # 2 samplers x rounds 0, 1, 2
    assert sorted(map(tuple, summary[["sampler", "round"]].values.tolist())) == [
        ("entropy", 0), ("entropy", 1), ("entropy", 2), ("random", 0), ("random", 1), ("random", 2)]
    assert summary.groupby("sampler")["labeled"].apply(list).to_dict() == {"entropy": [10, 20, 30],
                                                                           "random": [10, 20, 30]}
    assert summary["mean"].between(0, 1).all() and (summary["n_seeds"] == 1).all()

    import plotly.graph_objects as go

    assert isinstance(sim.figure, go.Figure)
    named = {t.name for t in sim.figure.data if t.name}
    assert named == {"random", "entropy"}
    line = next(t for t in sim.figure.data if t.name == "entropy")
    assert list(line.x) == [10, 20, 30]
    assert sim.headline == sim.raw["headline"] and sim.headline
    assert "simulation" in repr(sim)

    quiet = vc.simulate(digits_folder, "random", init=10, budget=10, rounds=1, fast=True, progress=False)
    assert capsys.readouterr().err == ""
    assert quiet.out.parent.name.startswith("vaal-simulation-") and set(quiet.summary["sampler"]) == {"random"}
    shutil.rmtree(quiet.out.parent)
