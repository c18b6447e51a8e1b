"""Ingest on real data: CIFAR-10 JPEGs plus every kind of bad file a real
folder holds, each made here with Pillow or the OS. No mocks: the point is
that Pillow, the filesystem and SQLite behave as the code expects."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, ROOT, make_subset
from PIL import Image

from vaal_core.data.cache import cache_path, open_cache
from vaal_core.data.decode import DEFAULT_MAX_PIXELS, SkipFile, _load_one, decode_image
from vaal_core.data.images import load_image
from vaal_core.data.ingest import ingest, load_folder
from vaal_core.data.scan import IMAGE_EXTENSIONS, scan
from vaal_core.errors import VaalError
from vaal_core.store import Project

RED, GRAY = (255, 0, 0), (128, 128, 128)


def cifar_files(cifar_root: Path, cls: str, n: int, offset: int = 0) -> list[Path]:
    return sorted((cifar_root / "train" / cls).iterdir())[offset:offset + n]


def cache_row(project: Project, rel: str) -> np.ndarray:
    item = next(it for it in project.items(status=None) if it.path == rel)
    return np.array(open_cache(project)[item.cache_index])


def reasons(project: Project) -> dict[str, str]:
    return {s["path"]: s["reason"] for s in project.skipped_files()}


# -- 1. a clean folder ----------------------------------------------------------

def test_ingest_small_folder(small_folder, tmp_path):
    project = Project.create(tmp_path / "proj", small_folder, 32)
    report = ingest(project, gold_from_folders=True)

    assert (report.added, report.known, report.skipped, report.missing) == (200, 0, [], 0)
    assert project.classes() == sorted(CLASSES)
    items = project.items()
    assert len(items) == 200
    cache = open_cache(project)
    assert cache.shape == (200, 32, 32, 3) and cache.dtype == np.uint8
    assert not cache.flags.writeable
    assert cache_path(project) == project.cache_dir / "images_32.u8"
    for it in items:
        assert it.gold == it.path.split("/")[0]
        assert (it.width, it.height) == (32, 32)
    for it in items[::37]:
        expected, _, _ = decode_image(small_folder / it.path, 32)
        assert np.array_equal(cache[it.cache_index], expected)
    assert sorted(it.cache_index for it in items) == list(range(200))
    event = project.events("ingest")[-1]["payload"]
    assert event["added"] == 200 and event["skipped"] == 0


# -- 2. every bad kind of file, mixed with good ones ------------------------------

def _corrupt_png() -> bytes:
    """A real PNG whose compressed pixel data is overwritten: the header is
    fine, decoding fails."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.find(b"IDAT") + 20
    data[start:start + 200] = bytes(range(200))
    return bytes(data)


def make_mixed_folder(cifar_root: Path, root: Path) -> tuple[list[str], dict[str, str]]:
    """-> (relative paths that must become items, {path: expected reason start})."""
    root.mkdir(parents=True)
    good = cifar_files(cifar_root, "airplane", 20)
    for i, src in enumerate(good):
        shutil.copy(src, root / f"good_{i:02d}.jpg")
    extra = cifar_files(cifar_root, "ship", 4)
    real = extra[0].read_bytes()
    (root / "trunc.jpg").write_bytes(real[:len(real) // 2])
    (root / "corrupt.png").write_bytes(_corrupt_png())
    noise = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)
    (root / "noise.jpg").write_bytes(noise.tobytes())
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture\n")
    Image.new("1", (10000, 10000)).save(root / "bomb.png")  # ~12 kB on disk, 100M pixels
    os.symlink(root / "nowhere.jpg", root / "broken.jpg")
    shutil.copy(good[3], root / "zz_copy.jpg")
    shutil.copy(good[5], root / "a_first_copy.jpg")  # sorts first: the original is the duplicate
    with open(os.path.join(os.fsencode(root), b"bad\xff.jpg"), "wb") as fh:
        fh.write(extra[1].read_bytes())
    (root / "dir.jpg").mkdir()
    shutil.copy(extra[2], root / "dir.jpg" / "inside.jpg")
    os.mkfifo(root / "pipe.jpg")
    (root / "raw").mkdir()
    shutil.copy(extra[3], root / "raw" / "photo.data")  # another extension: ignored itself
    os.symlink("raw/photo.data", root / "linked.jpg")  # a file symlink inside the folder is followed
    os.symlink(extra[0], root / "linked_out.jpg")  # one that leads out of it is not
    os.symlink(root, root / "loop")  # a folder symlink is not (it would loop)
    os.symlink("tangle.jpg", root / "tangle.jpg")  # a link to itself: ELOOP, said as such
    os.symlink("knot", root / "knot")  # the same with no image extension: left alone
    # Hidden files and folders are left out unopened, as a shell's * leaves them.
    (root / ".Trash-1000").mkdir()
    shutil.copy(extra[1], root / ".Trash-1000" / "deleted.jpg")
    (root / "._good_00.jpg").write_bytes(b"\x00\x05\x16\x07 macOS metadata, not a picture")
    (root / "raw" / ".thumbnails").mkdir()
    shutil.copy(extra[2], root / "raw" / ".thumbnails" / "t.jpg")
    (root / "notes.txt").write_text("ignored, not skipped")
    (root / "README").write_text("no extension: ignored too")

    items = [f"good_{i:02d}.jpg" for i in range(20) if i != 5]
    items += ["a_first_copy.jpg", "dir.jpg/inside.jpg", "linked.jpg"]
    expected = {
        "trunc.jpg": "truncated or corrupt image: ",
        "corrupt.png": "truncated or corrupt image: ",
        "noise.jpg": "not an image: Pillow cannot identify it",
        "empty.jpg": "empty file (0 bytes)",
        "text.png": "not an image: Pillow cannot identify it",
        "bomb.png": "image too large (10000 x 10000 pixels, over the 89478485-pixel limit): "
                    "possible decompression bomb",
        "broken.jpg": "broken symbolic link",
        "zz_copy.jpg": "duplicate of good_03.jpg",
        "good_05.jpg": "duplicate of a_first_copy.jpg",
        "bad\\xff.jpg": "file name is not valid UTF-8; rename it",
        "dir.jpg": "not a regular file",
        "pipe.jpg": "not a regular file",
        "loop": "symbolic link to a folder",
        "tangle.jpg": "broken symbolic link: its links loop back on themselves",
        "linked_out.jpg": "symbolic link to a file outside the image folder",
    }
    return items, expected


@pytest.mark.timeout(120)  # a FIFO opened by mistake would block forever
def test_every_bad_file_is_skipped_with_its_reason(cifar_root, tmp_path):
    images = tmp_path / "mixed"
    good, expected = make_mixed_folder(cifar_root, images)
    project = Project.create(tmp_path / "proj", images, 32)

    report = ingest(project)

    assert sorted(it.path for it in project.items()) == sorted(good)
    assert report.added == len(good)
    got = reasons(project)
    assert set(got) == set(expected), got
    for path, reason in expected.items():
        assert got[path].startswith(reason), (path, got[path])
    assert len(got["trunc.jpg"]) > len("truncated or corrupt image: ")  # Pillow's message follows
    assert report.ignored == 3 and "notes.txt" not in got
    assert report.hidden == 3 and not any("/." in p or p.startswith(".") for p in got)
    assert dict(report.skipped) == got
    assert project.status()["skipped"] == len(expected)
    # The symlinked file and the image inside the folder named dir.jpg are real items.
    assert np.array_equal(cache_row(project, "linked.jpg"), decode_image(images / "linked.jpg", 32)[0])
    # Nothing changed: a second run finds the same, adds nothing, keeps the list.
    again = ingest(project)
    assert (again.added, again.known) == (0, len(good)) and reasons(project) == got


NOBODY_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from vaal_core.data.ingest import ingest
from vaal_core.store import Project
project = Project.create(sys.argv[2], sys.argv[3], 32)
report = ingest(project)
print(json.dumps({"added": report.added, "skipped": project.skipped_files()}))
"""


def _can_run_as_nobody() -> bool:
    if shutil.which("setpriv") is None:
        return False
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            sys.executable, "-c", "import PIL, numpy"], check=False, capture_output=True,
                           timeout=60)
    return probe.returncode == 0


def _load_as_uid(path: Path, uid: int) -> str | None:
    """Run the worker function in a forked child with root's rights dropped."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            reason = _load_one((str(path), 32, DEFAULT_MAX_PIXELS)).reason
            os.write(write_end, json.dumps(reason).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return json.loads(out)


def test_unreadable_file_is_skipped(cifar_root, tmp_path):
    # World-readable folders outside pytest's private tmp dir, so that an
    # unprivileged user can reach everything but the one locked file.
    base = Path(tempfile.mkdtemp(prefix="vaal-unreadable-"))
    try:
        os.chmod(base, 0o755)
        images = base / "images"
        images.mkdir()
        os.chmod(images, 0o755)
        for src in cifar_files(cifar_root, "frog", 3):
            shutil.copy(src, images / src.name)
            os.chmod(images / src.name, 0o644)
        locked = images / "locked.jpg"
        shutil.copy(cifar_files(cifar_root, "frog", 1, offset=10)[0], locked)
        os.chmod(locked, 0o000)
        projects = base / "projects"
        projects.mkdir()
        os.chmod(projects, 0o777)
        want = "cannot read file: permission denied"

        if os.geteuid() != 0:  # permissions apply: the real ingest, in this process
            project = Project.create(projects / "p", images, 32)
            report = ingest(project)
            assert report.added == 3 and reasons(project) == {"locked.jpg": want}
        elif _can_run_as_nobody():  # root reads anything: run the ingest as nobody
            proc = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                 NOBODY_SCRIPT, str(ROOT), str(projects / "p"), str(images)],
                check=False, capture_output=True, text=True, timeout=120,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            assert proc.returncode == 0, proc.stderr
            out = json.loads(proc.stdout)
            assert out["added"] == 3
            assert out["skipped"] == [{"path": "locked.jpg", "reason": want}]
        else:  # root without setpriv: drop rights in a forked child
            assert _load_as_uid(locked, 65534) == want
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- 3. colour modes, formats, orientation, sizes ----------------------------------

def _save_modes(folder: Path) -> dict[str, tuple[int, int, int]]:
    """One file per Pillow mode -> the RGB colour its centre must decode to."""
    folder.mkdir()
    size = (40, 30)
    Image.new("L", size, 100).save(folder / "l.png")
    Image.new("LA", size, (50, 0)).save(folder / "la.png")  # fully transparent: white
    pal = Image.new("P", size, 1)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(folder / "p_opaque.png")
    pal.save(folder / "p_transparent.png", transparency=1)  # index 1 transparent: white
    Image.new("RGBA", size, (0, 255, 0, 255)).save(folder / "rgba_opaque.png")
    Image.new("RGBA", size, (0, 0, 0, 0)).save(folder / "rgba_clear.png")
    Image.new("CMYK", size, (0, 255, 255, 0)).save(folder / "cmyk.tiff")
    Image.new("CMYK", size, (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)
    Image.new("1", size, 1).save(folder / "one.bmp")
    Image.fromarray(np.full((30, 40), 257 * 200, np.uint16)).save(folder / "i16.png")
    ramp = np.tile(np.arange(40), (30, 1))
    Image.fromarray((ramp * 1000 - 7).astype(np.int32)).save(folder / "i32.tiff")
    Image.fromarray((ramp / 39.0 * 5 - 2).astype(np.float32)).save(folder / "f32.tiff")
    rgb = Image.new("RGB", size, (10, 20, 200))
    rgb.save(folder / "rgb.webp", lossless=True)
    rgb.save(folder / "rgb.bmp")
    rgb.save(folder / "rgb.TIF")  # upper-case extension counts too
    Image.new("RGB", size, RED).save(folder / "anim.gif", save_all=True,
                                     append_images=[Image.new("RGB", size, (0, 0, 255))])
    return {"l.png": (100,) * 3, "la.png": (255,) * 3, "p_opaque.png": (0, 0, 255),
            "p_transparent.png": (255,) * 3, "rgba_opaque.png": (0, 255, 0),
            "rgba_clear.png": (255,) * 3, "cmyk.tiff": RED, "cmyk.jpg": RED, "one.bmp": (255,) * 3,
            "i16.png": (200,) * 3, "rgb.webp": (10, 20, 200), "rgb.bmp": (10, 20, 200),
            "rgb.TIF": (10, 20, 200), "anim.gif": RED}


def test_every_mode_decodes_to_rgb(tmp_path):
    colours = _save_modes(tmp_path / "modes")
    assert Image.open(tmp_path / "modes" / "anim.gif").n_frames == 2
    for name, colour in colours.items():
        arr, width, height = decode_image(tmp_path / "modes" / name, 32)
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8, name
        assert (width, height) == (40, 30), name
        assert np.abs(arr[16, 16].astype(int) - colour).max() <= 3, (name, arr[16, 16], colour)
    # 32-bit integer and float maps are stretched over their own range: a
    # left-to-right ramp from black to white (the centre crop drops 5 columns a side).
    for name in ("i32.tiff", "f32.tiff"):
        arr, _, _ = decode_image(tmp_path / "modes" / name, 32)
        row = arr[16, :, 0].astype(int)
        assert np.all(np.diff(row) >= 0) and row[0] < 50 and row[-1] > 200, (name, row)
        assert np.array_equal(arr[..., 0], arr[..., 2])
    # The same files through a project: all ingested, none skipped.
    project = Project.create(tmp_path / "proj", tmp_path / "modes", 32)
    report = ingest(project)
    assert report.skipped == [] and report.added == len(colours) + 2
    # The Label page shows each file as the model sees it: a 16-bit scan not
    # clipped to white, a clear pixel white rather than black.
    for item in project.items():
        shown, note = load_image(project, item)
        assert note is None and shown.mode == "RGB" and shown.size == (40, 30), item.path
        centre = np.asarray(shown)[15, 20].astype(int)
        if item.path in colours:
            assert np.abs(centre - colours[item.path]).max() <= 3, (item.path, centre)
        else:  # the ramps: black to white, left to right
            row = np.asarray(shown)[15, :, 0].astype(int)
            assert np.all(np.diff(row) >= 0) and row[0] < 10 and row[-1] > 245, (item.path, row)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    # 80 x 40, red top-left quadrant. Orientation 6 means "turn 90 degrees
    # clockwise to display": 40 x 80 with red top-right; centre crop to a
    # square keeps rows 20..59, so red ends in the top-right quadrant.
    img = Image.new("RGB", (80, 40), GRAY)
    img.paste(RED, (0, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / ("rotated.jpg" if fmt == "JPEG" else "rotated.png")
    img.save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    arr, width, height = decode_image(path, 32)
    assert (width, height) == (40, 80)  # as displayed
    assert np.abs(arr[4, 28].astype(int) - RED).max() < 40, arr[4, 28]
    assert np.abs(arr[4, 4].astype(int) - GRAY).max() < 40, arr[4, 4]
    assert np.abs(arr[28, 28].astype(int) - GRAY).max() < 40, arr[28, 28]
    # Without the tag, the red quadrant would be top-left instead.
    plain = tmp_path / ("plain." + path.suffix[1:])
    img.save(plain, fmt)
    arr, width, height = decode_image(plain, 32)
    assert (width, height) == (80, 40)
    assert np.abs(arr[4, 4].astype(int) - RED).max() < 40


@pytest.mark.parametrize("size", [32, 64, 128])
def test_sizes(cifar_root, tmp_path, size):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 600), (30, 160, 90)).save(big, quality=95)  # exercises JPEG draft mode
    arr, width, height = decode_image(big, size)
    assert arr.shape == (size, size, 3) and (width, height) == (1000, 600)
    assert np.abs(arr[size // 2, size // 2].astype(int) - (30, 160, 90)).max() <= 3
    folder = make_subset(cifar_root, tmp_path / "imgs", per_class=1, classes=CLASSES[:3])
    shutil.copy(big, folder / "big.jpg")
    project = Project.create(tmp_path / "proj", folder, size)
    ingest(project)
    cache = open_cache(project)
    assert cache.shape == (4, size, size, 3)
    assert cache_path(project).stat().st_size == 4 * size * size * 3
    assert np.array_equal(cache_row(project, "big.jpg"), arr)


def test_max_pixels_and_extensions(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(path)
    with pytest.raises(SkipFile, match=r"image too large \(32 x 32 pixels, over the 1000-pixel limit\)"):
        decode_image(path, 32, max_pixels=1000)
    assert decode_image(path, 32, max_pixels=1024)[0].shape == (32, 32, 3)
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# -- 4. re-ingest: labels kept, only new files decoded, cache repaired ---------------

def test_reingest_keeps_labels_and_repairs_the_cache(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=10)
    project = Project.create(tmp_path / "proj", images, 32)
    assert ingest(project, gold_from_folders=True).added == 100
    items = project.items()
    labeled = {it.id: it.gold for it in items[:12]}
    for item_id, cls in labeled.items():
        project.set_label(item_id, cls)
    old_rows = np.array(open_cache(project))

    # A crash after writing rows but before their items: junk past the end.
    with open(cache_path(project), "ab") as fh:
        fh.write(b"\x07" * 200_000)  # more than the 50 rows added next
    make_subset(cifar_root, images, per_class=5, offset=10)  # 50 new files
    gone = items[0]
    (images / gone.path).unlink()
    shutil.copy(images / items[1].path, images / "cat" / "zz_same_bytes.jpg")

    report = ingest(project, gold_from_folders=True)
    assert (report.added, report.known, report.missing) == (50, 99, 1)
    assert dict(report.skipped) == {"cat/zz_same_bytes.jpg": f"duplicate of {items[1].path}"}
    assert cache_path(project).stat().st_size == 150 * 32 * 32 * 3
    cache = open_cache(project)
    assert np.array_equal(cache[:100], old_rows)
    for it in project.items()[100::10]:
        assert it.cache_index >= 100
        assert np.array_equal(cache[it.cache_index], decode_image(images / it.path, 32)[0])
    # Labels all kept, the missing item's too (it is only hidden).
    everything = {it.id: it for it in project.items(status=None)}
    assert {i: everything[i].label for i in labeled} == labeled
    assert gone.id not in {it.id for it in project.items()}
    assert project.labels() == {i: c for i, c in labeled.items() if i != gone.id}
    assert project.classes() == sorted(CLASSES)

    # A cache cut short (or deleted) is refused with what to do, then rebuilt.
    full = np.array(cache)
    del cache  # a memmap must not outlive the bytes under it
    with open(cache_path(project), "r+b") as fh:
        fh.truncate(120 * 32 * 32 * 3 + 17)
    with pytest.raises(VaalError, match="python -m vaal_core init"):
        open_cache(project)
    (images / gone.path).write_bytes((cifar_root / "train" / gone.path).read_bytes())  # it comes back
    report = ingest(project)
    assert (report.added, report.missing) == (0, 0)
    assert np.array_equal(np.array(open_cache(project)), full)
    cache_path(project).unlink()
    ingest(project)
    assert np.array_equal(np.array(open_cache(project)), full)


def test_an_image_moved_or_renamed_in_the_folder_keeps_its_item_and_label(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=3)
    project = Project.create(tmp_path / "proj", images, 32)
    ingest(project, gold_from_folders=True)
    items = project.items()
    for it in items[:4]:
        project.set_label(it.id, it.gold)
    rows = np.array(open_cache(project))
    a, b, c, d = items[:4]

    (images / "sorted").mkdir()
    os.rename(images / a.path, images / "sorted" / "a.jpg")  # sorted into a new folder
    os.rename(images / b.path, images / b.path.replace(".jpg", "_renamed.jpg"))  # renamed in place
    shutil.copy(images / c.path, images / "sorted" / "c_copy.jpg")  # copied: its original is still there
    os.rename(images / d.path, images / "sorted" / "d1.jpg")  # moved, and a copy beside it
    shutil.copy(images / "sorted" / "d1.jpg", images / "sorted" / "d2.jpg")
    report = ingest(project, gold_from_folders=True)

    assert (report.added, report.renamed, report.missing) == (0, 3, 0)
    assert dict(report.skipped) == {"sorted/c_copy.jpg": f"duplicate of {c.path}",
                                    "sorted/d2.jpg": "duplicate of sorted/d1.jpg"}
    assert report.notes()[0] == "3 images were found under new names (moved or renamed in the folder) " \
                                "and keep their labels"
    now = {it.id: it for it in project.items()}
    assert len(now) == len(items)  # no item added, none gone
    assert [now[it.id].path for it in (a, b, c, d)] == [
        "sorted/a.jpg", b.path.replace(".jpg", "_renamed.jpg"), c.path, "sorted/d1.jpg"]
    assert {it.id: now[it.id].label for it in (a, b, c, d)} == {it.id: it.gold for it in (a, b, c, d)}
    assert np.array_equal(np.array(open_cache(project)), rows)  # same rows: nothing decoded into the cache
    assert load_image(project, now[a.id])[1] is None  # the file at its new path, not the cached copy

    # An item missing since an earlier scan comes back under a new name too.
    os.rename(images / "sorted" / "a.jpg", tmp_path / "away.jpg")
    assert ingest(project).missing == 1
    os.rename(tmp_path / "away.jpg", images / "back.jpg")
    report = ingest(project)
    assert (report.renamed, report.missing, report.added) == (1, 0, 0)
    assert project.item(a.id).path == "back.jpg" and project.item(a.id).label == a.gold


# -- 5. load_folder -------------------------------------------------------------------

def test_load_folder(cifar_root, tmp_path):
    folder = make_subset(cifar_root, tmp_path / "imgs", per_class=3, classes=CLASSES[:4])
    shutil.copy(cifar_files(cifar_root, "ship", 1)[0], folder / "at_root.jpg")
    shutil.copy(folder / "bird" / min(os.listdir(folder / "bird")), folder / "bird" / "zz_dup.jpg")
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    calls = []
    images, paths, gold, skipped = load_folder(folder, 32, workers=2,
                                               progress=lambda e: calls.append((e.done, e.total)))

    assert images.shape == (13, 32, 32, 3) and images.dtype == np.uint8
    assert paths == sorted(paths) and len(paths) == 13 and "at_root.jpg" in paths
    assert gold == [None if "/" not in p else p.split("/")[0] for p in paths]
    assert gold.count("bird") == 3
    assert [p for p, _ in skipped] == ["bird/zz_dup.jpg", "cat/broken.png"]
    assert skipped[0][1].startswith("duplicate of bird/")
    for i in (0, 6, 12):
        assert np.array_equal(images[i], decode_image(folder / paths[i], 32)[0])
    assert calls[-1] == (15, 15)


# -- 6. progress ------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_progress_reaches_total(small_folder, tmp_path, workers):
    project = Project.create(tmp_path / "proj", small_folder, 32)
    calls: list[tuple[int, int]] = []
    report = ingest(project, progress=lambda e: calls.append((e.done, e.total)), workers=workers)
    assert report.added == 200
    assert calls and calls[-1] == (200, 200)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert {t for _, t in calls} == {200}
    # Nothing new: still told that all (none) is done.
    calls.clear()
    ingest(project, progress=lambda e: calls.append((e.done, e.total)))
    assert calls[-1] == (0, 0)


def test_scan_and_empty_project(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a" / "b" / "deep.JPEG")
    Image.new("RGB", (8, 8)).save(folder / "top.png")
    (folder / "x.csv").write_text("1,2")
    found = scan(folder)
    assert [rel for rel, _ in found.files] == ["a/b/deep.JPEG", "top.png"]
    assert all(p.is_absolute() and p.is_file() for _, p in found.files)
    assert (found.skipped, found.ignored) == ([], 1)
    project = Project.create(tmp_path / "proj", tmp_path / "imgs", 32)
    assert open_cache(project).shape == (0, 32, 32, 3)
    project_gold = ingest(project, gold_from_folders=True)
    assert project_gold.added == 2
    assert {it.path: it.gold for it in project.items()} == {"a/b/deep.JPEG": "b", "top.png": None}
    assert project.classes() == ["b"]


def test_two_ingests_at_once_write_each_row_once(small_folder, tmp_path):
    # Two processes ingesting one project (say the CLI twice) take turns: the
    # second finds every file known instead of writing over the same rows.
    Project.create(tmp_path / "proj", small_folder, 32).close()
    # Each process waits until both are ready, so that the two really overlap.
    script = ("import sys, time, pathlib; sys.path.insert(0, sys.argv[1]);"
              "from vaal_core.data.ingest import ingest; from vaal_core.store import Project;"
              "pathlib.Path(sys.argv[3] + sys.argv[4]).touch();"
              "[time.sleep(0.005) for _ in range(4000) if len(list(pathlib.Path(sys.argv[3]).parent"
              ".glob('ready*'))) < 2];"
              "print(ingest(Project.open(sys.argv[2]), workers=1).added)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(tmp_path / "proj"),
                               str(tmp_path / "ready"), str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    added = sorted(int(p.communicate(timeout=120)[0]) for p in procs)
    assert added == [0, 200]
    project = Project.open(tmp_path / "proj")
    cache = open_cache(project)
    assert cache.shape[0] == 200 and cache_path(project).stat().st_size == 200 * 32 * 32 * 3
    for it in project.items()[::23]:
        assert np.array_equal(cache[it.cache_index], decode_image(small_folder / it.path, 32)[0])
