"""The built-in demo data set: scikit-learn's handwritten digits.

A first-time user (or a stakeholder demo) needs images with known answers
and no download: `sklearn.datasets.load_digits()` ships 1,797 8x8 grey
digits inside the package. They are written as PNG files, so the demo runs
through exactly the same path as a user's folder (scan, decode, ingest,
simulate) instead of a special case. Two folders are written from them:

- `write_digits`: class folders (`3/0042.png`), the Demo page's oracle: a
  simulation reads each image's class from its folder, as it does for a
  user's folder.
- `write_demo_images`: neutral names (`0001.png` ...) in a shuffled order,
  for the demo *project* a person labels. Its answers are kept only in the
  store (`items.gold`, passed to ingest), so no name on screen gives the
  answer away.

Both writers and `create_demo_project` are idempotent and crash-safe,
because the app calls them from a button that may be clicked twice, or
killed half-way: folders and the project are built under a temporary
sibling name and renamed into place only when finished, under a lock.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vaal_core.files import atomic_dir, file_lock
from vaal_core.progress import Phase, Progress, Steps

# Number keys 1-9 pick the classes in listed order (the Label page), so "1".."9"
# come first and key 1 labels a 1; "0" is the tenth class.
DIGIT_CLASSES = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
DIGIT_SIZE = 32  # the project's image size: what the models see (ingest decodes each file to it)
# The files themselves are drawn larger, so the pages show pen strokes rather
# than a 32 px image stretched across the screen.
DRAWN_SIZE = 128
_MARGIN = DRAWN_SIZE // 8  # white paper all round, as MNIST frames its digits
_INK_EDGE = (0.25, 0.75)  # the grey range the contrast curve spreads to ink..paper (see digit_image)
# The demo project. Versions before issue 12 built "digits-demo" from the class
# folders (the class showed in every file name); such a project keeps opening
# as it is, and the neutral one is built beside it under this new name.
DEMO_PROJECT = "handwritten-digits"
OLD_DEMO_PROJECT = "digits-demo"
_SHUFFLE_KEY = "vaal-studio-digits"  # the same names on every machine (see neutral_paths)


def digit_pixels(values: np.ndarray) -> np.ndarray:
    """8x8 load_digits values (0 = paper, 16 = full ink) as uint8 grey with
    dark ink on white paper, which is how a person expects a digit to look."""
    return np.round(255.0 - values * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)


def digit_image(values: np.ndarray):
    """One digit as a DRAWN_SIZE grey PIL image, dark on white. The 8x8
    grid is enlarged smoothly (bicubic: strokes, not blocks); stretched 12
    times, bicubic alone leaves a grey haze around each stroke, so a smooth
    contrast curve (smoothstep over _INK_EDGE) gives the strokes an ink
    edge while keeping their shape and the grey of faint strokes."""
    from PIL import Image

    cell = (DRAWN_SIZE - 2 * _MARGIN) // 8  # px per cell of the 8x8 grid
    # A ring of paper around the grid first, so a stroke that reaches the
    # grid's edge fades out instead of ending in a straight cut.
    side = cell * 10
    ink = Image.fromarray(digit_pixels(np.pad(values, 1))).resize((side, side), Image.Resampling.BICUBIC)
    lo, hi = _INK_EDGE
    t = np.clip((np.asarray(ink, dtype=np.float64) / 255.0 - lo) / (hi - lo), 0.0, 1.0)
    shaped = np.round(255.0 * t * t * (3.0 - 2.0 * t)).astype(np.uint8)
    page = Image.new("L", (DRAWN_SIZE, DRAWN_SIZE), 255)
    page.paste(Image.fromarray(shaped), ((DRAWN_SIZE - side) // 2,) * 2)
    return page


def _class_paths(targets: np.ndarray) -> list[str]:
    """The oracle folder's relative paths, index = position in load_digits."""
    return [f"{int(t)}/{i:04d}.png" for i, t in enumerate(targets)]


def neutral_paths(n: int) -> list[str]:
    """The demo project's relative paths, index = position in load_digits:
    numbered in a shuffled order, so neither the name nor the order of
    names says anything about the class. The order comes from a hash, not
    a random generator whose stream a library update could change: the
    names and their answers stay paired with files written earlier."""
    key = [hashlib.sha1(f"{_SHUFFLE_KEY}:{i}".encode()).digest() for i in range(n)]
    place = [0] * n
    for rank, i in enumerate(sorted(range(n), key=key.__getitem__)):
        place[i] = rank
    return [f"{k + 1:04d}.png" for k in place]


def _complete(dest: Path, expected: list[str]) -> bool:
    """Every file there and non-empty. Files only ever appear in `dest` by a
    rename of a finished folder, so this only fails on a folder someone
    changed, or one written by an older, non-atomic version."""
    try:
        return dest.is_dir() and all((dest / rel).stat().st_size > 0 for rel in expected)
    except OSError:
        return False


def _write(dest: Path, rels: list[str], images: np.ndarray, progress: Progress | None) -> Path:
    """Write images[i] as dest/rels[i], all or nothing (see the module's
    note). A complete folder is left as it is: a folder written by an
    older version (blocky NEAREST digits) keeps its bytes, so a project
    ingested from it still finds its files unchanged."""
    with file_lock(dest.parent / f".{dest.name}.lock"):  # two sessions take turns instead of interleaving
        if _complete(dest, rels):
            return dest
        tick = Steps(progress, Phase.WRITE, len(rels))
        with atomic_dir(dest, replace_existing=True) as tmp:  # replaces a damaged folder, if any
            for folder in sorted({str(Path(rel).parent) for rel in rels} - {"."}):
                (tmp / folder).mkdir(parents=True)
            for i, (values, rel) in enumerate(zip(images, rels), start=1):
                digit_image(values).save(tmp / rel)
                tick(i)
    return dest


def write_digits(dest: Path, progress: Progress | None = None) -> Path:
    """The oracle folder: the 1,797 digits as grey PNGs (`digit_image`) in
    dest/<class>/<index:04d>.png; returns `dest`. Does nothing when they
    are all there already; a half-written or damaged folder is written
    again from scratch."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _write(Path(dest), _class_paths(digits.target), digits.images, progress)


def write_demo_images(dest: Path, progress: Progress | None = None) -> tuple[Path, dict[str, str]]:
    """The demo project's images: the same 1,797 digits as dest/NNNN.png
    (`neutral_paths`), and their answers by relative path, for the store
    alone. Idempotent and repaired like `write_digits`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rels = neutral_paths(len(digits.target))
    _write(Path(dest), rels, digits.images, progress)
    return Path(dest), {rel: str(int(t)) for rel, t in zip(rels, digits.target)}


def create_demo_project(home: Path, progress: Progress | None = None) -> Path:
    """The digits demo project at home/projects/DEMO_PROJECT, built on first
    call (images in home/data/DEMO_PROJECT with neutral names, the models
    at 32 px, classes in DIGIT_CLASSES order, each image's class kept as a hidden
    gold label for evaluation only; nothing labeled). Later calls return
    it untouched. An older demo (OLD_DEMO_PROJECT) is left alone.

    The project is built in a hidden folder of home/data and renamed into
    place when ingest has finished, so a crash or a failure never leaves a
    half-made project where the app would open it."""
    from vaal_core.data.ingest import ingest
    from vaal_core.errors import BadInput
    from vaal_core.store import DB_NAME, Project, is_project

    home = Path(home)
    root = home / "projects" / DEMO_PROJECT
    if is_project(root):
        return root
    data = home / "data"
    images, gold = write_demo_images(data / DEMO_PROJECT, progress=progress)
    with file_lock(data / f".{DEMO_PROJECT}-project.lock"):
        if is_project(root):  # another session finished it while we waited
            return root
        if root.exists() and any(root.iterdir()):
            raise BadInput(f"{root} exists but holds no project ({DB_NAME} is missing); move it away and "
                           "try again")
        # Built in data/ (same file system, git-ignored in a checkout), not
        # in projects/, so a project picker listing that folder never shows
        # (or opens) the unfinished one.
        with atomic_dir(root, staging=data / f".{DEMO_PROJECT}-project.partial") as tmp:
            project = Project.create(tmp, images, image_size=DIGIT_SIZE, classes=DIGIT_CLASSES)
            try:
                ingest(project, gold=gold, progress=progress)
            finally:
                project.close()  # also folds the WAL into project.db before the move
    return root
