"""The built-in digits demo: the folder written from sklearn's load_digits,
its idempotence and repair, the demo project made from it, and a simulation
on it (the Demo page's path), all on the real data."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from vaal_core.data.digits import DIGIT_CLASSES, create_demo_project, digit_pixels, write_digits
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


def test_images_are_the_digits_upscaled_dark_on_white(folder, digits):
    for i in (0, 7, 1234):
        with Image.open(folder / str(digits.target[i]) / f"{i:04d}.png") as img:
            assert img.size == (32, 32) and img.mode == "L"
            pixels = np.asarray(img)
        expected = np.repeat(np.repeat(digit_pixels(digits.images[i]), 4, axis=0), 4, axis=1)  # NEAREST, 4x
        assert np.array_equal(pixels, expected)
    # digit 0 of load_digits: corner is paper (0 -> white), a stroke pixel is full ink (16 -> black)
    assert digits.images[0][0, 0] == 0 and digits.images[0][0, 3] == 13
    with Image.open(folder / "0" / "0000.png") as img:
        pixels = np.asarray(img)
    assert pixels[0, 0] == 255 and pixels[0, 12] == round(255 - 13 * 255 / 16) == 48


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
        assert img.size == (32, 32)


def test_demo_project(home, digits):
    root = home / "projects" / "digits-demo"
    with Project.open(root) as project:
        status = project.status()
        items = project.items()
        assert status["items"] == len(items) == N_DIGITS and status["skipped"] == 0
        assert status["labeled"] == 0 and project.labels() == {}
        assert project.classes() == DIGIT_CLASSES
        assert project.image_size == 32 and project.image_root == (home / "data" / "digits").resolve()
        # gold = the load_digits target, kept hidden: no item has a user label
        gold = {int(Path(it.path).stem): it.gold for it in items}
        assert gold == {i: str(t) for i, t in enumerate(digits.target)}
        assert all(it.label is None for it in items)
    # nothing half-made or temporary is left where a project picker looks
    assert sorted(p.name for p in (home / "projects").iterdir()) == ["digits-demo"]
    assert sorted(p.name for p in home.iterdir()) == ["data", "projects"]  # a checkout's git-ignored folders
    assert not (home / "data" / ".digits-demo.partial").exists()


def test_create_demo_project_again_leaves_it_untouched(home):
    root = home / "projects" / "digits-demo"
    before = {f: (root / f).stat().st_mtime_ns for f in _files(root)}
    assert create_demo_project(home) == root
    assert {f: (root / f).stat().st_mtime_ns for f in _files(root)} == before


def test_a_failed_creation_leaves_no_project(tmp_path):
    """Stopping during ingest (here: the progress callback raising, as an
    interrupted app would) leaves no project, so the next call starts clean."""
    def stop(event):
        if event.phase == "decode":  # the ingest
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_demo_project(tmp_path, progress=stop)
    assert not (tmp_path / "projects" / "digits-demo").exists()
    assert not (tmp_path / "data" / ".digits-demo.partial").exists()
    assert len(_files(tmp_path / "data" / "digits")) == N_DIGITS  # the images are kept for the retry
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
