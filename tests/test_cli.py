"""The command-line contract (README: "The engine from the command line"), through the real entry point, on
real CIFAR-10 JPEGs, with `--fast` rounds end to end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES, ROOT, run_cli

import vaal_core as vc
from vaal_core.errors import RoundCancelled, TrainingDiverged
from vaal_core.loop.round import RoundConfig, run_round
from vaal_core.store import Project


def _json(*args: str) -> dict:
    return json.loads(run_cli(*args, "--json").stdout)


def _fails(*args: str, match: str) -> str:
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert match in err, err
    return err


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture
def project(small_folder, tmp_path) -> Path:
    proj = tmp_path / "proj"
    out = _json("init", proj, "--images", small_folder, "--gold-from-folders")
    assert out["added"] == 200 and out["created"]
    return proj


def test_samplers_lists_the_registry():
    names = [s["name"] for s in _json("samplers")["samplers"]]
    assert {"random", "vaal", "coreset"} <= set(names)
    assert "vaal" in run_cli("samplers").stdout


def test_init_status_and_gold_stays_hidden(project, small_folder):
    st = _json("status", project)
    assert (st["items"], st["labeled"], st["unlabeled"], st["skipped"]) == (200, 0, 200, 0)
    assert st["classes"] == sorted(CLASSES)  # from the folder names, sorted
    assert "items: 200" in run_cli("status", project).stdout
    # re-running init on the same folder adds nothing and keeps everything
    again = _json("init", project, "--images", small_folder)
    assert (again["added"], again["known"], again["created"]) == (0, 200, False)


@pytest.mark.slow
def test_rounds_end_to_end(project, tmp_path):
    # 1. cold start: no labels yet, so VAAL's discriminator has nothing to tell apart and typiclust
    #    picks the first batch in the feature space, saying so
    r1 = _json("round", project, "--sampler", "vaal", "--budget", "20", "--fast", "--device", "cpu")
    policy = r1["metrics"]["policy"]
    assert r1["queue_length"] == 20 and (policy["name"], policy["chose"]) == ("vaal", "typiclust")
    assert "nothing is labeled yet" in policy["why"]
    assert "features" in r1["metrics"] and "train_s" not in r1["timings"]  # no VAE trained for it
    q = _json("queue", project)["items"]
    assert [it["rank"] for it in q] == list(range(1, 21))
    assert all(not Path(it["path"]).is_absolute() and it["path"].endswith(".jpg") for it in q)
    assert sum(it["audit"] for it in q) == 1  # 5% of 20: one random audit pick, not typiclust's
    assert all("typical" in it["means"] for it in q if not it["audit"])
    assert "scores of round 1's typiclust (higher: label sooner)" in run_cli("queue", project).stdout

    # 2. label the queue with the oracle's answers (the folder names)
    rows = [(it["path"], it["path"].split("/")[0]) for it in q]
    out = _json("label", project, "--csv", _write_csv(tmp_path / "l.csv", rows))
    assert out["changed"] == 20
    assert _json("status", project)["labeled"] == 20
    assert _json("queue", project)["items"] == []  # labeled items leave the queue

    # 3. a real VAAL round: its first VAE, discriminator scores, 20 new unlabeled picks
    r2 = _json("round", project, "--sampler", "vaal", "--budget", "20", "--fast", "--device", "cpu")
    assert r2["metrics"]["warm_start"] is False and "cold_start" not in r2["metrics"]
    assert "policy" not in r2["metrics"]  # vaal itself ranked
    q2 = _json("queue", project, "--limit", "50")["items"]
    labeled = {p for p, _ in rows}
    assert len(q2) == 20 and not labeled & {it["path"] for it in q2}
    scores = [it["score"] for it in q2 if not it["audit"]]  # the random audit pick is not in score order
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert sum(it["audit"] for it in q2) == 1  # 5% of 20
    assert all(f"chance this looks labeled: {1 - it['score']:.2f}" in it["means"] for it in q2)  # the score, worded
    assert len(_json("queue", project, "--limit", "5")["items"]) == 5

    # 4. the other samplers, and the round history
    for sampler in ("random", "coreset"):
        r = _json("round", project, "--sampler", sampler, "--budget", "15", "--fast", "--device", "cpu")
        assert r["queue_length"] == 15
    assert r["metrics"]["warm_start"] is True  # coreset's VAE warm from round 2's
    p = Project.open(project)
    rounds = p.rounds()
    assert [r["status"] for r in rounds] == ["done"] * 4
    assert rounds[1]["settings"]["round"]["sampler"] == "vaal" and rounds[1]["timings"]["train_s"] > 0
    latents = np.load(p.round_dir(rounds[1]["id"]) / "latents.npy")
    assert latents.shape == (200, 32) and np.isfinite(latents).all()


@pytest.mark.slow
def test_failed_and_cancelled_rounds_keep_the_queue(project):
    p = Project.open(project)
    run_round(p, RoundConfig(sampler="coreset", budget=10, fast=True, device="cpu"))
    before = p.queue()
    # No labels here: the rounds that train the VAE are coreset's (vaal would hand them to typiclust).
    with pytest.raises(RoundCancelled):
        run_round(p, RoundConfig(sampler="coreset", budget=10, fast=True, device="cpu"), should_stop=lambda: True)
    assert p.rounds()[-1]["status"] == "cancelled" and p.queue() == before

    # A checkpoint whose weights went non-finite: the warm-started round must
    # notice the NaN loss, fail cleanly and keep the old queue.
    ckpt = p.checkpoint_dir / "vaal.pt"
    state = torch.load(ckpt, weights_only=True)
    state["vae"]["fc_mu.weight"].fill_(float("nan"))
    torch.save(state, ckpt)
    with pytest.raises(TrainingDiverged, match="previous queue is kept"):
        run_round(p, RoundConfig(sampler="coreset", budget=10, fast=True, device="cpu"))
    last = p.rounds()[-1]
    assert last["status"] == "failed" and "NaN" in last["error"].replace("nan", "NaN")
    assert p.queue() == before
    # --fresh recovers
    run_round(p, RoundConfig(sampler="coreset", budget=10, fast=True, device="cpu", fresh=True))
    assert len(p.queue()) == 10 and p.rounds()[-1]["status"] == "done"
    after = p.queue()

    # The image cache cut short (a disk error, a stray edit): the round fails with a reason that says
    # how to rebuild it, and the queue stays.
    cache = p.cache_dir / "images_32.u8"
    cache.write_bytes(cache.read_bytes()[:1000])
    out = run_cli("round", project, "--sampler", "coreset", "--budget", "10", "--fast", check=False)
    assert out.returncode == 2 and out.stderr.startswith("error: the image cache") and "init" in out.stderr
    last = p.rounds()[-1]
    assert last["status"] == "failed" and "image cache" in last["error"] and p.queue() == after


def test_user_errors_are_one_line(project, small_folder, tmp_path):
    _fails("init", tmp_path / "p2", "--images", tmp_path / "no-such-folder", match="does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    _fails("init", tmp_path / "p3", "--images", empty, match="no image files")
    assert not (tmp_path / "p3").exists()  # nothing half-made is left behind
    # Images only in a hidden folder: the refusal says they were left out, and why.
    (empty / ".cache").mkdir()
    shutil.copy(next(small_folder.rglob("*.jpg")), empty / ".cache" / "a.jpg")
    _fails("init", tmp_path / "p3", "--images", empty,
           match="; left out 1 hidden file or folder (names starting with '.')")
    assert not (tmp_path / "p3").exists()
    _fails("init", tmp_path / "p4", "--images", small_folder, "--image-size", "48", match="48")
    _fails("status", tmp_path / "nope", match="no project")
    _fails("round", project, "--sampler", "bogus", match="random")
    _fails("round", project, "--budget", "201", "--fast", match="larger than the unlabeled pool")
    if not torch.cuda.is_available():  # true on CPU-only CI machines
        _fails("round", project, "--device", "cuda", "--fast", match="CUDA")
    _fails("export", project, "--format", "xml", "--out", tmp_path / "x", match="invalid choice")
    bare = run_cli(check=False)  # no command at all: the list of commands, each with what it does
    assert bare.returncode == 2 and "  init " in bare.stderr and "  export " in bare.stderr and not bare.stdout
    assert run_cli("--version").stdout.strip() == f"VAAL Studio {vc.__version__}"
    _fails("round", project, "--budget", "ten", match="invalid int")


def test_csv_errors_leave_the_project_unchanged(project, tmp_path):
    good = sorted(Path(p).relative_to(Project.open(project).image_root).as_posix()
                  for p in Project.open(project).image_root.rglob("*.jpg"))[:3]
    bad_class = _write_csv(tmp_path / "a.csv", [(good[0], "airplane"), (good[1], "zebra")])
    err = _fails("label", project, "--csv", bad_class, match="zebra")
    assert "line 3" in err
    bad_path = _write_csv(tmp_path / "b.csv", [(good[0], "airplane"), ("nowhere/x.jpg", "cat")])
    _fails("label", project, "--csv", bad_path, match="nowhere/x.jpg")
    no_header = tmp_path / "c.csv"
    no_header.write_text(f"{good[0]},airplane\n")
    _fails("label", project, "--csv", no_header, match="path,label")
    _fails("label", project, "--csv", tmp_path / "missing.csv", match="does not exist")
    assert _json("status", project)["labeled"] == 0


def test_a_label_file_with_new_classes_is_refused_or_adds_them_with_its_labels(project, tmp_path):
    store = Project.open(project)
    before = store.classes()
    paths = sorted(Path(p).relative_to(store.image_root).as_posix() for p in store.image_root.rglob("*.jpg"))[:4]
    rows = [(paths[0], "airplane"), (paths[1], "zebra"), (paths[2], "giraffe"), (paths[3], "zebra")]
    err = _fails("label", project, "--csv", _write_csv(tmp_path / "new.csv", rows),
                 match="line 3: unknown class 'zebra'")
    assert "(the file names 2 classes the project lacks: zebra, giraffe)" in err
    assert err.endswith("; fix the file, or add the classes with its labels (--add-classes)")
    assert Project.open(project).classes() == before and _json("status", project)["labeled"] == 0

    bad_name = _write_csv(tmp_path / "bad.csv", [(paths[0], "airplane"), (paths[1], "a/b")])
    _fails("label", project, "--csv", bad_name, "--add-classes", match="line 3: class name 'a/b' is not usable")
    assert Project.open(project).classes() == before  # nothing added for a file that was refused

    out = _json("label", project, "--csv", tmp_path / "new.csv", "--add-classes")
    assert out["classes_added"] == ["zebra", "giraffe"] and out["changed"] == 4
    store = Project.open(project)
    assert store.classes() == before + ["zebra", "giraffe"]  # after the project's own, in the file's order
    assert {store.item(i).path: lab for i, lab in store.labels().items()} == dict(rows)
    store.undo()  # the import is one action: its labels go back, the classes stay (unused ones can be removed)
    assert Project.open(project).labels() == {} and Project.open(project).classes() == before + ["zebra", "giraffe"]
    text = run_cli("label", project, "--csv", tmp_path / "new.csv", "--add-classes").stdout
    assert "4 labels set from" in text and "classes added" not in text  # they are there now


def test_classes_are_listed_added_renamed_reordered_and_removed(project, tmp_path):
    store = Project.open(project)
    first = store.classes()
    paths = sorted(Path(p).relative_to(store.image_root).as_posix() for p in store.image_root.rglob("*.jpg"))[:3]
    run_cli("label", project, "--csv", _write_csv(tmp_path / "l.csv", [(paths[0], "cat"), (paths[1], "cat"),
                                                                         (paths[2], "dog")]))
    listed = _json("classes", project)
    assert [c["name"] for c in listed["classes"]] == first and listed["added"] == []
    by_name = {c["name"]: c for c in listed["classes"]}
    assert (by_name["cat"]["labels"], by_name["dog"]["labels"], by_name["airplane"]["labels"]) == (2, 1, 0)
    assert [c["key"] for c in listed["classes"]] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"][:len(first)]

    out = _json("classes", project, "--add", "zebra, giraffe", "--rename", "cat=kitten", "--remove", "giraffe")
    names = first[:first.index("cat")] + ["kitten"] + first[first.index("cat") + 1:] + ["zebra"]
    assert [c["name"] for c in out["classes"]] == names and out["added"] == ["zebra"]
    store = Project.open(project)
    assert {store.item(i).path: lab for i, lab in store.labels().items()} == {
        paths[0]: "kitten", paths[1]: "kitten", paths[2]: "dog"}  # the labels follow the rename
    text = run_cli("classes", project, "--order", ",".join(reversed(names))).stdout
    assert text.splitlines()[1].split() == ["1", "zebra", "(0", "labels)"]
    assert "kitten  (2 labels)" in text and "dog  (1 label)" in text

    # One transaction: a refused change leaves the classes as they were, the ones added before it too
    before = Project.open(project).classes()
    _fails("classes", project, "--add", "lion", "--remove", "kitten", match="class 'kitten' has labels in its history")
    _fails("classes", project, "--add", "lion", "--order", "zebra,kitten", match="a new order must list exactly the classes, each once: missing ")
    _fails("classes", project, "--rename", "kitten", match="--rename takes OLD=NEW, got 'kitten'")
    _fails("classes", project, "--rename", "puma=lion", match="unknown class 'puma'")
    _fails("classes", project, "--add", "lion,lion", match="--add lists lion more than once")
    _fails("classes", project, "--add", "a/b", match="class name 'a/b' is not usable")
    assert Project.open(project).classes() == before


def test_round_refused_while_another_process_trains(project):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vaal_core.store import Project
        with Project.open({str(project)!r}).training_lock():
            print("locked", flush=True)
            time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        _fails("round", project, "--fast", "--budget", "5", match="already being trained")
        assert _json("status", project)["training"] is True
    finally:
        holder.kill()
        holder.wait()


def test_export_to_standard_output_a_pipe_or_a_folder(project, tmp_path):
    p = Project.open(project)
    items = p.items()[:6]
    run_cli("label", project, "--csv", _write_csv(tmp_path / "in.csv", [(it.path, it.gold) for it in items]))
    run_cli("export", project, "--format", "csv", "--out", tmp_path / "out.csv")
    want = (tmp_path / "out.csv").read_text()

    # "-" is standard output: the labels alone there, what is said on stderr.
    out = run_cli("export", project, "--format", "csv", "--out", "-")
    assert out.stdout == want and out.stderr.strip() == "exported 6 labels as csv to standard output"
    out = run_cli("export", project, "--format", "json", "--out", "-", "--json")
    assert [r["path"] for r in json.loads(out.stdout)["labels"]] == sorted(it.path for it in items)
    assert json.loads(out.stderr)["labels"] == 6
    # A device or a pipe is written through, never replaced by a file (/dev/fd/1: this run's stdout pipe).
    out = run_cli("export", project, "--format", "csv", "--out", "/dev/fd/1")
    assert out.stdout == want + "exported 6 labels as csv to /dev/fd/1\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    run_cli("export", project, "--format", "csv", "--out", fifo)
    assert reader.communicate(timeout=60)[0] == want and stat.S_ISFIFO(os.stat(fifo).st_mode)

    _fails("export", project, "--format", "csv", "--out", tmp_path, match=f"{tmp_path} is a folder; give a file")
    _fails("export", project, "--format", "imagefolder", "--out", "-", match="give a folder to write it in, not -")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["fifo", "images", "in.csv", "out.csv", "proj"]  # nothing new


def test_export_import_round_trip(project, small_folder, tmp_path):
    p = Project.open(project)
    items = p.items()[:25]
    rows = [(it.path, it.gold) for it in items]
    run_cli("label", project, "--csv", _write_csv(tmp_path / "in.csv", rows))
    p.set_label(items[0].id, "truck")  # a relabel: the export holds the latest
    run_cli("export", project, "--format", "csv", "--out", tmp_path / "out.csv")
    run_cli("export", project, "--format", "json", "--out", tmp_path / "out.json")
    out = _json("export", project, "--format", "imagefolder", "--out", tmp_path / "folder")
    assert out["labels"] == 25 and out["not_copied"] == []

    exported = list(csv.DictReader((tmp_path / "out.csv").read_text().splitlines()))
    expected = sorted([{"path": it.path, "label": "truck" if i == 0 else it.gold} for i, it in enumerate(items)],
                      key=lambda r: r["path"])
    assert exported == expected
    js = json.loads((tmp_path / "out.json").read_text())
    assert js["labels"] == expected and js["classes"] == sorted(CLASSES)
    copied = sorted(f.relative_to(tmp_path / "folder").parts[0] for f in (tmp_path / "folder").rglob("*.jpg"))
    assert copied == sorted(r["label"] for r in expected)
    assert {d.name for d in (tmp_path / "folder").iterdir()} == set(CLASSES)
    _fails("export", project, "--format", "imagefolder", "--out", tmp_path / "folder", match="not empty")

    # into a fresh project from the same images: identical labels come back out
    other = tmp_path / "other"
    run_cli("init", other, "--images", small_folder, "--classes", ",".join(sorted(CLASSES)))
    run_cli("label", other, "--csv", tmp_path / "out.csv")
    run_cli("export", other, "--format", "csv", "--out", tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "out.csv").read_bytes()

    # a JSON export reads back too; --keep leaves a label given since as it is
    third = tmp_path / "third"
    run_cli("init", third, "--images", small_folder, "--classes", ",".join(sorted(CLASSES)))
    t = Project.open(third)
    t.set_label(t.item_id(items[1].path), "truck")  # given by hand before the import
    out = _json("label", third, "--json-file", tmp_path / "out.json", "--keep")
    assert (out["changed"], out["unchanged"], out["kept"]) == (24, 0, 1)
    assert Project.open(third).labels()[t.item_id(items[1].path)] == "truck"
    assert "0 labels set from" in run_cli("label", third, "--json-file", tmp_path / "out.json", "--keep").stdout
    out = _json("label", third, "--json-file", tmp_path / "out.json")  # the file wins by default
    assert (out["changed"], out["unchanged"], out["kept"]) == (1, 24, 0)
    _fails("label", third, "--csv", tmp_path / "out.csv", "--json-file", tmp_path / "out.json", match="not allowed")
