"""Ingest under attack: a kill -9 in the middle of an ingest, symbolic links
that lead out of the image folder, files swapped after ingest, an init that
fails half-way. Real CIFAR JPEGs, real `python -m vaal_core` processes,
real signals and links; no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, ROOT, make_subset, run_cli

from vaal_core.data.cache import open_cache
from vaal_core.data.images import load_image, safe_path
from vaal_core.data.ingest import ingest, init_project
from vaal_core.store import DB_NAME, Project

LINUX_PROC = Path("/proc/self/stat").exists()


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (None: no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")  # a zombie has exited, only not yet been reaped


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(entry.name))
    return kids


def _kill_if_ours(pids: list[int]) -> None:
    """Clean up after a failed test: end what our init started, only that."""
    for pid in pids:
        try:
            if b"vaal_core" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _item(project: Project, rel: str):
    return next(it for it in project.items(status=None) if it.path == rel)


# -- 1. kill -9 in the middle of an ingest --------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not LINUX_PROC, reason="watches worker processes through /proc")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if LINUX_PROC else True,
                    reason="one CPU: the ingest decodes in its own process, with no workers")
@pytest.mark.timeout(300)
def test_init_after_kill_minus_9_completes(cifar_root, tmp_path):
    images = tmp_path / "images"
    for split in ("train", "test"):  # 6,000 files: over the 2,000 that start a process pool
        make_subset(cifar_root, images / split, per_class=300, split=split)
    n_files = sum(1 for _ in images.rglob("*.jpg"))
    assert n_files == 6000
    proj = tmp_path / "proj"
    # 64 px: enough decoding per file that the kill lands in the middle.
    first = subprocess.Popen([sys.executable, "-m", "vaal_core", "init", str(proj), "--images", str(images),
                              "--image-size", "64"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not workers and first.poll() is None and time.monotonic() < deadline:
            workers = _children(first.pid)
            time.sleep(0.005)
        assert workers, "the ingest never started its worker processes"
        time.sleep(0.05)  # under way: the workers have taken their first files
        workers = sorted(set(workers) | set(_children(first.pid)))
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL, "the ingest ended before it could be killed"

        # The killed run's workers die with it ...
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers of the killed ingest outlived it"

        # ... so a second init neither waits on them nor loses an image.
        again = subprocess.run([sys.executable, "-m", "vaal_core", "init", str(proj), "--images", str(images),
                                "--image-size", "64"], check=False, cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 0, again.stderr
        with Project.open(proj) as project:
            assert len(project.items()) == n_files
            assert project.skipped_files() == []
            cache = open_cache(project)
            assert cache.shape == (n_files, 64, 64, 3)
            rows = np.asarray(cache[::97]).reshape(-1, 64 * 64 * 3)
            assert (rows.std(axis=1) > 0).all()  # real pixels in every sampled row, no hole left
    finally:
        first.kill()
        first.wait()
        _kill_if_ours(workers)


@pytest.mark.skipif(not LINUX_PROC, reason="names the lock's holders through /proc")
@pytest.mark.timeout(120)
def test_a_lock_kept_by_a_killed_ingests_leftovers_is_named_not_waited_on(small_folder, tmp_path):
    # What an older version's orphaned workers do: the ingest that took the
    # lock is gone, a forked child of it still holds the lock.
    run_cli("init", tmp_path / "proj", "--images", small_folder)
    lock = tmp_path / "proj" / "cache" / "ingest.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fh = open(sys.argv[1], 'a'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(100); os._exit(0)\n"
        "print(child, flush=True); os._exit(0)\n"), str(lock)], stdout=subprocess.PIPE, text=True)
    orphan = int(holder.stdout.readline())
    holder.wait(timeout=30)
    try:
        t0 = time.monotonic()
        busy = run_cli("init", tmp_path / "proj", "--images", small_folder, check=False)
        assert busy.returncode == 2 and time.monotonic() - t0 < 60
        error = busy.stderr.strip()
        assert "\n" not in error and str(orphan) in error and str(holder.pid) in error, error
    finally:
        os.kill(orphan, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "0 new images, 200 already known" in run_cli("init", tmp_path / "proj", "--images",
                                                       small_folder).stdout


# -- 2. symbolic links and swapped files -----------------------------------------

def _jpegs(cifar_root: Path, cls: str, n: int) -> list[Path]:
    return sorted((cifar_root / "test" / cls).iterdir())[:n]


def test_a_link_to_a_file_outside_the_folder_is_skipped(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=3, classes=["cat"])
    outside = _jpegs(cifar_root, "dog", 1)[0]
    os.symlink(outside, images / "cat" / "escape.jpg")
    os.symlink(os.path.relpath(outside, images / "cat"), images / "cat" / "escape_relative.jpg")
    os.symlink(images / "cat" / "escape.jpg", images / "chain.jpg")  # a link to the link
    (images / "raw").mkdir()
    shutil.copy(_jpegs(cifar_root, "ship", 1)[0], images / "raw" / "ship.data")  # not an image name
    os.symlink("../raw/ship.data", images / "cat" / "inside.jpg")  # stays inside: fine

    project, report, _ = init_project(tmp_path / "proj", images)

    copies = [f"cat/{f.name}" for f in (images / "cat").iterdir() if not f.is_symlink()]
    assert sorted(it.path for it in project.items()) == sorted(copies + ["cat/inside.jpg"])
    why = dict(report.skipped)
    assert set(why) == {"cat/escape.jpg", "cat/escape_relative.jpg", "chain.jpg"}
    for reason in why.values():
        assert reason.startswith("symbolic link to a file outside the image folder"), reason
    assert {s["path"]: s["reason"] for s in project.skipped_files()} == why
    # The display refuses them too, whatever the store says.
    assert safe_path(project, "cat/escape.jpg") is None
    assert safe_path(project, "cat/inside.jpg") == images / "cat" / "inside.jpg"
    img, note = load_image(project, _item(project, "cat/inside.jpg"))
    assert note is None and img.size == (32, 32)


def test_a_link_repointed_outside_after_ingest_is_not_served(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=3, classes=["cat"])
    (images / "raw").mkdir()
    shutil.copy(_jpegs(cifar_root, "ship", 1)[0], images / "raw" / "ship.data")
    os.symlink(images / "raw" / "ship.data", images / "cat" / "link.jpg")
    project, _, _ = init_project(tmp_path / "proj", images)
    item = _item(project, "cat/link.jpg")
    _, note = load_image(project, item)
    assert note is None
    cached = np.asarray(open_cache(project)[item.cache_index])

    secret = tmp_path / "secret.jpg"
    shutil.copy(_jpegs(cifar_root, "truck", 1)[0], secret)
    os.unlink(images / "cat" / "link.jpg")
    os.symlink(secret, images / "cat" / "link.jpg")

    assert safe_path(project, "cat/link.jpg") is None
    img, note = load_image(project, item)
    assert note is not None and "cached copy" in note and "outside" in note, note
    assert np.array_equal(np.asarray(img), cached)  # the ingested image, not the secret one
    # The same bytes behind an outside link are still refused: the rule is where the file is.
    shutil.copy(images / "raw" / "ship.data", secret)
    img, note = load_image(project, item)
    assert note is not None and "outside" in note
    # A re-ingest lists it as skipped, and the item as missing (its label is kept).
    report = ingest(project)
    assert dict(report.skipped)["cat/link.jpg"].startswith("symbolic link to a file outside")
    assert report.missing == 1


def test_a_file_replaced_after_ingest_is_not_served_as_the_ingested_one(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=4, classes=["cat", "dog"])
    (images / "raw").mkdir()
    shutil.copy(_jpegs(cifar_root, "ship", 1)[0], images / "raw" / "ship.data")
    os.symlink("../raw/ship.data", images / "cat" / "link.jpg")
    project, _, _ = init_project(tmp_path / "proj", images)
    cache = open_cache(project)
    victim = _item(project, min(it.path for it in project.items() if it.path.startswith("dog/")))
    linked = _item(project, "cat/link.jpg")

    # Another image written over the file (same name, same folder).
    shutil.copy(_jpegs(cifar_root, "truck", 1)[0], images / victim.path)
    img, note = load_image(project, victim)
    assert note is not None and "changed" in note and "cached copy" in note, note
    assert np.array_equal(np.asarray(img), np.asarray(cache[victim.cache_index]))
    # An inside link re-pointed at another inside image: the same.
    os.unlink(images / "cat" / "link.jpg")
    os.symlink(images / victim.path, images / "cat" / "link.jpg")
    img, note = load_image(project, linked)
    assert note is not None and "changed" in note
    assert np.array_equal(np.asarray(img), np.asarray(cache[linked.cache_index]))
    # Put back byte for byte, the original is served again.
    shutil.copy(cifar_root / "train" / victim.path, images / victim.path)
    img, note = load_image(project, victim)
    assert note is None


# -- 3. a failed init leaves nothing half-made --------------------------------------

@pytest.mark.parametrize("classes", ["a/b,c", "cat,..", "ok,bad\tname"])
def test_a_failed_init_leaves_no_project_behind(small_folder, tmp_path, classes):
    proj = tmp_path / "new" / "proj"
    bad = run_cli("init", proj, "--images", small_folder, "--classes", classes, check=False)
    assert bad.returncode == 2 and "class name" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()  # every folder it made is gone
    status = run_cli("status", proj, check=False)
    assert status.returncode == 2 and "no project" in status.stderr
    run_cli("init", proj, "--images", small_folder, "--classes", ",".join(CLASSES))
    assert "items: 200" in run_cli("status", proj).stdout


def test_a_failed_init_removes_only_what_it_made(small_folder, tmp_path):
    # An existing folder with the user's own files: a failed init takes back
    # its own files, and nothing else.
    proj = tmp_path / "mine"
    (proj / "cache").mkdir(parents=True)
    (proj / "notes.txt").write_text("keep me")
    (proj / "cache" / "keep.bin").write_bytes(b"\x00" * 10)
    bad = run_cli("init", proj, "--images", small_folder, "--classes", "x,a/b", check=False)
    assert bad.returncode == 2
    assert sorted(p.relative_to(proj).as_posix() for p in proj.rglob("*")) == \
        ["cache", "cache/keep.bin", "notes.txt"]
    # The same when no image can be read.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not an image")
    bad = run_cli("init", proj, "--images", junk, check=False)
    assert bad.returncode == 2 and "could be read" in bad.stderr
    assert sorted(p.relative_to(proj).as_posix() for p in proj.rglob("*")) == \
        ["cache", "cache/keep.bin", "notes.txt"]
    run_cli("init", proj, "--images", small_folder)
    assert (proj / DB_NAME).is_file() and (proj / "notes.txt").read_text() == "keep me"


def test_init_on_a_project_whose_creation_was_killed_says_so(small_folder, tmp_path):
    # What a kill inside Project.create leaves: project.db with its tables
    # and none of its settings (they are written in one transaction). The
    # store refuses it with one line; init neither hangs nor deletes it.
    proj = tmp_path / "proj"
    proj.mkdir()
    Project(proj, _create=True).close()
    for command in (("init", proj, "--images", small_folder), ("status", proj)):
        out = run_cli(*command, check=False)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert str(proj / DB_NAME) in out.stderr
    assert (proj / DB_NAME).is_file()
