"""The built-in digits demo: the folders written from sklearn's load_digits
(class folders for the Demo page's oracle; neutral names for the project a
person labels), their idempotence and repair, the demo project made from
them (its answers only in the store), an older demo project left as it
was, and a simulation on it (the Demo page's path), all on the real data."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from vaal_core.data.digits import (
    DEMO_PROJECT,
    DIGIT_CLASSES,
    DRAWN_SIZE,
    OLD_DEMO_PROJECT,
    create_demo_project,
    digit_image,
    digit_pixels,
    neutral_paths,
    write_demo_images,
    write_digits,
)
from vaal_core.data.images import load_image, shown_path
from vaal_core.data.ingest import ingest, init_project
from vaal_core.errors import BadInput
from vaal_core.services import workspace
from vaal_core.store import DB_NAME, Project
from vaal_core.loop.simulate import SimConfig, simulate

N_DIGITS = 1797


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("demo") / "digits")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    events = []
    create_demo_project(home, progress=lambda e: events.append((e.phase, e.done, e.total)))
    assert {stage for stage, _, _ in events} == {"write", "decode"}  # the PNG files, then the ingest
    assert ("write", N_DIGITS, N_DIGITS) in events and ("decode", N_DIGITS, N_DIGITS) in events
    return home


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_folder_holds_every_digit_in_its_class_folder(folder, digits):
    files = _files(folder)
    assert len(files) == N_DIGITS
    assert sorted(p.name for p in folder.iterdir()) == [str(d) for d in range(10)]
    counts = Counter(f.split("/")[0] for f in files)
    assert counts == {str(d): int(n) for d, n in enumerate(np.bincount(digits.target))}
    for i in (0, 1, 500, N_DIGITS - 1):  # named by load_digits index, filed under its target
        assert f"{digits.target[i]}/{i:04d}.png" in files


def test_images_are_the_digits_drawn_smoothly_dark_on_white(folder, digits):
    for i in (0, 7, 1234):
        with Image.open(folder / str(digits.target[i]) / f"{i:04d}.png") as img:
            assert img.size == (DRAWN_SIZE, DRAWN_SIZE) == (128, 128) and img.mode == "L"
            pixels = np.asarray(img).astype(int)
        assert np.array_equal(pixels, np.asarray(digit_image(digits.images[i])))
        # white paper all round; inside, the 8x8 grid drawn 12 px a cell
        assert (pixels[:4] == 255).all() and (pixels[-4:] == 255).all()
        assert (pixels[:, :4] == 255).all() and (pixels[:, -4:] == 255).all()
        ink = pixels[16:112, 16:112].astype(np.uint8)
        back = np.asarray(Image.fromarray(ink).resize((8, 8), Image.Resampling.BOX)).astype(float)
        assert np.corrcoef(back.ravel(), digit_pixels(digits.images[i]).ravel())[0, 1] > 0.95  # the same digit
        # smooth strokes, not blocks: no jump between neighbouring pixels near NEAREST's 255 at a
        # block's edge, and many grey levels (the 8x8 values have 17); ink and paper both reached
        assert np.abs(np.diff(pixels, axis=0)).max() < 128 and np.abs(np.diff(pixels, axis=1)).max() < 128
        assert len(np.unique(pixels)) > 100 and pixels.min() == 0 and pixels.max() == 255
    # digit 0 of load_digits: corner is paper (0 -> white), a stroke pixel is full ink (16 -> black)
    assert digits.images[0][0, 0] == 0 and digits.images[0][0, 3] == 13
    assert digit_pixels(digits.images[0])[0, 3] == round(255 - 13 * 255 / 16) == 48


def test_write_digits_is_idempotent(folder):
    before = {f: (folder / f).stat().st_mtime_ns for f in _files(folder)}
    assert write_digits(folder) == folder
    assert {f: (folder / f).stat().st_mtime_ns for f in _files(folder)} == before  # nothing rewritten


def test_a_half_written_folder_is_redone(tmp_path, digits):
    dest = write_digits(tmp_path / "digits")
    # damage it as a crash or a user might: a class gone, a file gone, one cut to nothing, a stray
    for f in (dest / "3").iterdir():
        f.unlink()
    (dest / "3").rmdir()
    (dest / "5" / os.listdir(dest / "5")[0]).unlink()
    (dest / "7" / sorted(os.listdir(dest / "7"))[0]).write_bytes(b"")
    (dest / "stray.txt").write_text("x")
    partial = tmp_path / ".digits.partial"  # what a killed write leaves beside it
    (partial / "1").mkdir(parents=True)
    (partial / "1" / "0001.png").write_bytes(b"half")
    write_digits(dest)
    files = _files(dest)
    assert len(files) == N_DIGITS and "stray.txt" not in files
    assert all((dest / f).stat().st_size > 0 for f in files)
    assert not partial.exists()
    i = int(np.flatnonzero(digits.target == 7)[0])
    with Image.open(dest / "7" / f"{i:04d}.png") as img:
        assert img.size == (DRAWN_SIZE, DRAWN_SIZE)


def test_demo_project(home, digits):
    root = home / "projects" / DEMO_PROJECT
    with Project.open(root) as project:
        status = project.status()
        items = project.items()
        assert status["items"] == len(items) == N_DIGITS and status["skipped"] == 0
        assert status["labeled"] == 0 and project.labels() == {}
        assert project.classes() == DIGIT_CLASSES
        assert project.image_size == 32 and project.image_root == (home / "data" / DEMO_PROJECT).resolve()
        assert {(it.width, it.height) for it in items} == {(DRAWN_SIZE, DRAWN_SIZE)}  # models see 32 px
        # gold = the load_digits target, kept hidden in the store: no item has a user label
        gold = {it.path: it.gold for it in items}
        assert gold == {rel: str(t) for rel, t in zip(neutral_paths(N_DIGITS), digits.target)}
        assert all(it.label is None for it in items)
    # nothing half-made or temporary is left where a project picker looks
    assert sorted(p.name for p in (home / "projects").iterdir()) == [DEMO_PROJECT]
    assert sorted(p.name for p in home.iterdir()) == ["data", "projects"]  # a checkout's git-ignored folders
    assert not [p.name for p in (home / "data").iterdir() if p.name.endswith(".partial")]


def test_no_name_in_the_demo_project_gives_its_answer_away(home, digits):
    """Every path is a bare number: no class folder, no class in the name,
    and the numbering (the order files are listed and ingested in) is
    shuffled, so neither a name nor its place says which digit it is."""
    with Project.open(home / "projects" / DEMO_PROJECT) as project:
        items = sorted(project.items(), key=lambda it: it.path)
    paths = [it.path for it in items]
    assert paths == [f"{k:04d}.png" for k in range(1, N_DIGITS + 1)]
    for it in items:
        assert it.gold not in it.path.split("/")[:-1] and shown_path(it.path, it.gold) == it.path
    golds = np.array([int(it.gold) for it in items])
    # load_digits lists the digits nearly in cycles of 0-9; here any 50 files in a row hold most classes
    assert min(len(set(golds[k:k + 50])) for k in range(0, N_DIGITS - 50, 50)) >= 8
    assert abs(np.corrcoef(golds, np.arange(N_DIGITS))[0, 1]) < 0.1
    assert abs(np.corrcoef(golds[1:], golds[:-1])[0, 1]) < 0.1  # neighbours are unrelated
    # the same names on every machine and version: a folder written earlier keeps its answers
    assert neutral_paths(N_DIGITS)[:3] == ["0967.png", "1187.png", "1137.png"]
    assert dict(zip(neutral_paths(N_DIGITS), digits.target.astype(str))) == {it.path: it.gold for it in items}


def test_the_pages_draw_a_demo_digit_smoothly_at_the_size_asked(home):
    """views.common.picture, which the Label and Explore pages draw: a
    digit's file enlarged or shrunk to the size asked for, smoothly, never
    as blocks of pixels."""
    from views.common import picture

    with Project.open(home / "projects" / DEMO_PROJECT) as project:
        item = project.items()[0]
        for side in (448, 160):
            img, note = picture(project, item.id, side)
            assert note is None and img.size == (side, side)
            grey = np.asarray(img.convert("L")).astype(int)
            assert len(np.unique(grey)) > 100  # NEAREST from 32 px would keep the file's grey levels
            assert np.abs(np.diff(grey, axis=1)).max() < 128  # no hard block edges


def test_create_demo_project_again_leaves_it_untouched(home):
    root = home / "projects" / DEMO_PROJECT
    before = {f: (root / f).stat().st_mtime_ns for f in _files(root)}
    assert create_demo_project(home) == root
    assert {f: (root / f).stat().st_mtime_ns for f in _files(root)} == before


def test_demo_images_are_idempotent_and_match_the_oracle(home, folder, digits):
    images, gold = write_demo_images(home / "data" / DEMO_PROJECT)
    assert len(gold) == N_DIGITS and set(gold.values()) == set(DIGIT_CLASSES)
    for i in (0, 900):  # the same picture under both names
        rel = neutral_paths(N_DIGITS)[i]
        assert (images / rel).read_bytes() == (folder / str(digits.target[i]) / f"{i:04d}.png").read_bytes()
        assert gold[rel] == str(digits.target[i])


def test_an_older_demo_project_keeps_opening(tmp_path, digits, monkeypatch):
    """A home from before neutral names: projects/digits-demo read from the
    class folders of data/digits (blocky NEAREST images). The new demo is
    built beside it; the old one, its files and its labels stay as they
    were (the Demo page's writer leaves a complete folder alone), and its
    paths are shown with the class folder masked."""
    home = tmp_path / "home"
    monkeypatch.setenv("VAAL_HOME", str(home))
    old_images = home / "data" / "digits"
    for i, t in enumerate(digits.target):  # what the old writer left
        (old_images / str(t)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit_pixels(digits.images[i])).resize((32, 32), Image.Resampling.NEAREST) \
            .save(old_images / str(t) / f"{i:04d}.png")
    old, _, _ = init_project(home / "projects" / OLD_DEMO_PROJECT, old_images, DIGIT_CLASSES, 32,
                             gold_from_folders=True)
    first = old.items()[0]
    old.set_label(first.id, first.gold)
    old.close()
    old_bytes = {f: (old_images / f).read_bytes() for f in _files(old_images)}

    assert create_demo_project(home) == home / "projects" / DEMO_PROJECT
    assert write_digits(old_images) == old_images  # the Demo page's oracle folder
    assert {f: (old_images / f).read_bytes() for f in _files(old_images)} == old_bytes
    with Project.open(home / "projects" / OLD_DEMO_PROJECT) as project:
        assert len(project.items()) == N_DIGITS and project.labels() == {first.id: first.gold}
        item = project.item(first.id)
        img, note = load_image(project, item)
        assert note is None and img.size == (32, 32)  # its own file, unchanged: no "changed since" note
        assert item.path == f"{item.gold}/0000.png"
        assert shown_path(item.path, item.gold) == "\u2022\u2022\u2022/0000.png"
    assert {k.name for k in workspace.known_projects()} == {DEMO_PROJECT, OLD_DEMO_PROJECT}


def test_gold_labels_by_path_for_neutral_names(tmp_path, folder, digits):
    """ingest(gold={path: label}): the answers of neutrally named files go
    to the store only, classes are made from them, and a file the mapping
    does not name has none. Folders and a mapping at once are refused."""
    images = tmp_path / "flat"
    images.mkdir()
    for i in range(12):
        (images / f"{i:02d}.png").write_bytes((folder / str(digits.target[i]) / f"{i:04d}.png").read_bytes())
    gold = {f"{i:02d}.png": str(digits.target[i]) for i in range(11)}  # 11.png: no answer known
    with pytest.raises(BadInput, match="not both"):
        init_project(tmp_path / "both", images, gold_from_folders=True, gold=gold)
    assert not (tmp_path / "both").exists()
    project, report, _ = init_project(tmp_path / "proj", images, gold=gold)
    with project:
        assert report.added == 12
        assert {it.path: it.gold for it in project.items()} == {**gold, "11.png": None}
        assert project.classes() == sorted(set(gold.values()))
        assert project.labels() == {}
        assert ingest(project, gold=gold).added == 0  # re-run: nothing new, gold untouched


def test_a_failed_creation_leaves_no_project(tmp_path):
    """Stopping during ingest (here: the progress callback raising, as an
    interrupted app would) leaves no project, so the next call starts clean."""
    def stop(event):
        if event.phase == "decode":  # the ingest
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_demo_project(tmp_path, progress=stop)
    assert not (tmp_path / "projects" / DEMO_PROJECT).exists()
    assert not [p.name for p in (tmp_path / "data").iterdir() if p.name.endswith(".partial")]
    assert len(_files(tmp_path / "data" / DEMO_PROJECT)) == N_DIGITS  # the images are kept for the retry
    root = create_demo_project(tmp_path)
    assert (root / DB_NAME).is_file()
    with Project.open(root) as project:
        assert project.status()["items"] == N_DIGITS


@pytest.mark.slow
def test_simulate_on_the_digits(folder, tmp_path):
    """The Demo page's path: a small stratified subset of the digits through
    simulate, with the map's latents and every file named."""
    cfg = SimConfig(samplers=("coreset",), init=10, budget=10, rounds=1, seeds=1, fast=True, device="cpu",
                    subset=150)
    out = tmp_path / "run" / "sim.json"
    result = simulate(folder, cfg, out)
    assert result["classes"] == [str(d) for d in range(10)]  # the oracle's folder names, sorted
    assert result["n_images"] == len(result["paths"]) == N_DIGITS
    assert result["n_pool"] + result["n_test"] == 150
    assert [r["labeled"] for r in result["summary"]["coreset"]] == [10, 20]
    saved = np.load(out.parent / result["latents_file"])
    assert saved["latents"].shape[0] == len(saved["rows"]) == result["n_pool"]
    assert json.loads(out.read_text())["complete"] is True
