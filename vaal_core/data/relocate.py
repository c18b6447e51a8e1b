"""A project's image folder moved (another disk, a renamed folder, a copy):
the check that a new place holds the project's images before the project
reads them from there.

The store keeps every image's path relative to the folder, its size and the
SHA-1 of its bytes (ingest.py), so the new place is checked by what it holds,
not by its name: an image counts as there when a file at its path has its
size, and a seeded sample of those files must have its bytes to the last one
(a folder of other images under the same names, e.g. `0001.png`, fails
there). Images not found stay in the project as missing, their labels kept,
exactly as when files leave a folder that did not move: the rescan after the
move marks them, and brings any back that turn up later.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaal_core.data.scan import inside
from vaal_core.errors import BadImageFolder
from vaal_core.store import Project

HASHED = 256  # files read whole and compared by SHA-1: enough to catch other images under the same names


@dataclass(frozen=True)
class Moved:
    """What the check found at the new place."""

    old: str  # where the project read its images from
    new: str
    images: int  # the project's images (missing ones included)
    found: int  # of them at the new place, same path and size
    hashed: int  # of those, compared byte for byte (all equal, or the check refused)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, capital: bool = False) -> str:
        left = self.images - self.found
        return (f"{'I' if capital else 'i'}mages now read from {self.new} (was {self.old}): "
                f"{self.found:,} of {self.images:,} found there, {self.hashed:,} checked byte for byte"
                + (f"; the other {left:,} are missing (their labels kept; they come back if their files do)"
                   if left else ""))


def _sha1(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


def check(project: Project, new_root: Path, hashed: int = HASHED) -> Moved:
    """Whether `new_root` holds the project's images; raises BadImageFolder,
    naming a file, when it holds none of them or other images under their
    names. Reads the folder, writes nothing."""
    new_root = Path(new_root).expanduser().resolve()
    if not new_root.is_dir():
        raise BadImageFolder(f"image folder {new_root} does not exist or is not a folder")
    prints = project.fingerprints()
    found = []
    for path, size, sha1 in prints:
        file = new_root / path
        try:
            ok = file.is_file() and file.stat().st_size == size and inside(new_root, file)
        except OSError:
            ok = False
        if ok:
            found.append((file, sha1))
    if not found:
        first = prints[0][0] if prints else "?"
        raise BadImageFolder(f"{new_root} holds none of the project's {len(prints):,} images (none at its path "
                             f"with its size; {first}, for one); give the folder that holds them")
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(found), min(hashed, len(found)), replace=False))
    for i in sample:
        file, sha1 = found[i]
        if _sha1(file) != sha1:
            raise BadImageFolder(f"{file} is not the image the project has under that name (its bytes differ): "
                                 f"{new_root} holds other images; give the folder this project's images moved to")
    return Moved(str(project.image_root), str(new_root), len(prints), len(found), len(sample))


def move(project: Project, new_root: Path) -> Moved:
    """Check `new_root` and, if it holds the project's images, read them from
    there from now on (one transaction, recorded as a `moved` event).
    Labels, rounds, the queue and the decoded cache are untouched: the
    images are the same. The caller rescans (ingest) under its lock."""
    found = check(project, new_root)
    project.move_image_root(Path(found.new), {"images": found.images, "found": found.found, "hashed": found.hashed})
    return found
