"""The built-in demo data set: scikit-learn's handwritten digits.

A first-time user (or a stakeholder demo) needs images with known answers
and no download: `sklearn.datasets.load_digits()` ships 1,797 8x8 grey
digits inside the package. They are written as PNG files in class folders,
so the demo runs through exactly the same path as a user's folder (scan,
decode, ingest, simulate) instead of a special case.

Both functions are idempotent and crash-safe, because the app calls them
from a button that may be clicked twice, or killed half-way:
the folder and the project are built under a temporary sibling name and
renamed into place only when finished, under a lock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaal_core.files import atomic_dir, file_lock
from vaal_core.progress import Phase, Progress, Steps

# Number keys 1-9 pick the classes in listed order (the Label page), so "1".."9"
# come first and key 1 labels a 1; "0" is the tenth class.
DIGIT_CLASSES = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
DIGIT_SIZE = 32  # 8x8 upscaled 4x: big enough to see, and a model input size
DEMO_PROJECT = "digits-demo"



def digit_pixels(values: np.ndarray) -> np.ndarray:
    """8x8 load_digits values (0 = paper, 16 = full ink) as uint8 grey with
    dark ink on white paper, which is how a person expects a digit to look."""
    return np.round(255.0 - values * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)


def _expected(targets: np.ndarray) -> list[str]:
    """Relative paths of every digit file, index = position in load_digits."""
    return [f"{int(t)}/{i:04d}.png" for i, t in enumerate(targets)]


def _complete(dest: Path, expected: list[str]) -> bool:
    """Every file there and non-empty. Files only ever appear in `dest` by a
    rename of a finished folder, so this only fails on a folder someone
    changed, or one written by an older, non-atomic version."""
    try:
        return dest.is_dir() and all((dest / rel).stat().st_size > 0 for rel in expected)
    except OSError:
        return False


def write_digits(dest: Path, progress: Progress | None = None) -> Path:
    """Write the 1,797 digits as 32x32 grey PNGs into dest/<class>/<index:04d>.png
    and return `dest`. Does nothing when they are all there already; a
    half-written or damaged folder is written again from scratch."""
    from PIL import Image
    from sklearn.datasets import load_digits

    dest = Path(dest)
    digits = load_digits()
    expected = _expected(digits.target)
    # Two app sessions building it take turns instead of interleaving.
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if _complete(dest, expected):
            return dest
        tick = Steps(progress, Phase.WRITE, len(expected))
        with atomic_dir(dest, replace_existing=True) as tmp:  # replaces a damaged folder, if any
            for cls in sorted({str(int(t)) for t in digits.target}):
                (tmp / cls).mkdir(parents=True)
            for i, (values, rel) in enumerate(zip(digits.images, expected), start=1):
                img = Image.fromarray(digit_pixels(values))  # 2-D uint8: mode "L"
                img.resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.NEAREST).save(tmp / rel)
                tick(i)
    return dest


def create_demo_project(home: Path, progress: Progress | None = None) -> Path:
    """The digits demo project at home/projects/digits-demo, built on first
    call (images in home/data/digits, 32 px, classes in DIGIT_CLASSES order,
    each image's folder kept as a hidden gold label for evaluation and
    simulation only; nothing labeled). Later calls return it untouched.

    The project is built in a hidden folder of home/data and renamed into
    place when ingest has finished, so a crash or a failure never leaves a
    half-made project where the app would open it."""
    from vaal_core.data.ingest import ingest
    from vaal_core.errors import BadInput
    from vaal_core.store import DB_NAME, Project

    home = Path(home)
    root = home / "projects" / DEMO_PROJECT
    if (root / DB_NAME).exists():
        return root
    data = home / "data"
    images = write_digits(data / "digits", progress=progress)
    with file_lock(data / f".{DEMO_PROJECT}.lock"):
        if (root / DB_NAME).exists():  # another session finished it while we waited
            return root
        if root.exists() and any(root.iterdir()):
            raise BadInput(f"{root} exists but holds no project ({DB_NAME} is missing); move it away and "
                           "try again")
        # Built in data/ (same file system, git-ignored in a checkout), not
        # in projects/, so a project picker listing that folder never shows
        # (or opens) the unfinished one.
        with atomic_dir(root, staging=data / f".{DEMO_PROJECT}.partial") as tmp:
            project = Project.create(tmp, images, image_size=DIGIT_SIZE, classes=DIGIT_CLASSES)
            try:
                ingest(project, gold_from_folders=True, progress=progress)
            finally:
                project.close()  # also folds the WAL into project.db before the move
    return root
