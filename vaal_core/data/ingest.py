"""Ingest: scan an image folder, decode every new image once into the
project's cache, and record what could not be used and why.

Safe to re-run at any time: known files are not decoded again, labels are
untouched. Rows are written and fsynced before the items that point at them
are committed, so a crash at any moment leaves at worst an unreferenced
tail of the cache, which the next ingest cuts off.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaal_core.config import IMAGE_SIZES
from vaal_core.data import relocate
from vaal_core.data.cache import cache_path, ingest_lock
from vaal_core.data.decode import DEFAULT_MAX_PIXELS, Loaded, load_many
from vaal_core.data.scan import gold_of, hidden_words, inside, scan
from vaal_core.errors import BadImageFolder, BadInput
from vaal_core.progress import Phase, Progress, Steps
from vaal_core.store import Project, is_project
from vaal_core.store.classes import check_class_name

_CHUNK = 512  # images per cache write + fsync + one SQLite transaction


@dataclass
class IngestReport:
    added: int  # new items
    known: int  # files already items (not decoded again)
    skipped: list[tuple[str, str]]  # (path, reason) of every file not usable now
    missing: int  # items whose file is gone (labels kept)
    ignored: int  # files with other extensions
    seconds: float
    images_per_s: float  # files decoded per second
    moved: dict[str, Any] | None = None  # the folder moved before this scan (relocate.Moved)
    hidden: int = 0  # files and folders left out for names starting with "." (scan.hidden_words)
    renamed: int = 0  # items whose file was found under a new name (labels kept)

    def notes(self) -> list[str]:
        """What the counts leave unsaid, in words: images found under new
        names, hidden files left out (the CLI and the Project page say both)."""
        said = []
        if self.renamed:
            one = self.renamed == 1
            said.append(("1 image was found under a new name" if one else
                         f"{self.renamed:,} images were found under new names")
                        + f" (moved or renamed in the folder) and {'keeps its label' if one else 'keep their labels'}")
        if self.hidden:
            said.append(hidden_words(self.hidden))
        return said

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return d


def _keep(rel: str, got: Loaded, seen: dict[str, str], skipped: list[tuple[str, str]]) -> bool:
    """Whether a decoded file becomes an item; records why not in `skipped`.
    `seen` maps sha1 -> first path with those bytes (files come in path
    order, so the first of identical files is the one kept)."""
    if got.reason is not None:
        skipped.append((rel, got.reason))
        return False
    if got.sha1 in seen:
        skipped.append((rel, f"duplicate of {seen[got.sha1]}"))
        return False
    seen[got.sha1] = rel
    return True


def _gold_rule(gold_from_folders: bool, gold: Mapping[str, str] | None):
    """relative path -> the hidden gold label of a new item, or None.
    Either the parent folder's name (a folder per class), or a mapping
    (files named neutrally, the answers known elsewhere: the digits demo)."""
    if gold_from_folders and gold is not None:
        raise BadInput("give gold labels from the folders or as a mapping, not both")
    if gold is not None:
        return lambda rel: gold.get(rel)
    return gold_of if gold_from_folders else (lambda rel: None)


def ingest(project: Project, gold_from_folders: bool = False, progress: Progress | None = None,
           workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
           gold: Mapping[str, str] | None = None) -> IngestReport:
    """Scan project.image_root, decode new files into the cache, insert items,
    record skipped files. Safe to re-run at any time: known files are not
    decoded again, labels are untouched, and a cache a crash left too long
    (or too short) is repaired.

    Hidden gold labels (evaluation only) come from each file's parent
    folder (`gold_from_folders`) or from `gold`, {relative path: label}
    (a file it does not name has none). Either way, a project with no
    classes yet gets one per gold label."""
    gold_for = _gold_rule(gold_from_folders, gold)
    t0 = time.perf_counter()
    size = project.image_size
    row_bytes = size * size * 3
    found = scan(project.image_root)  # first: a bad folder changes nothing
    skipped = list(found.skipped)

    path = cache_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One ingest of a project at a time (two would write the same rows); a
    # second one waits, then finds the files known. Read the store only once
    # the lock is held. Not "a+b": Linux ignores pwrite's offset on a file
    # opened for append.
    with ingest_lock(project.root), \
            os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as fh:
        known_paths, known_sha1 = project.known_files()
        new = [(rel, p) for rel, p in found.files if rel not in known_paths]
        n_rows = project.cache_rows()
        # Rows past the last item are a crash's partial tail: cut them off so
        # new rows start where the store says.
        intact = min(os.fstat(fh.fileno()).st_size // row_bytes, n_rows)
        fh.truncate(n_rows * row_bytes)
        fh.seek(n_rows * row_bytes)
        repair = [it for it in project.items(status=None) if it.cache_index >= intact]
        total = len(repair) + len(new)
        tick = Steps(progress, Phase.DECODE, total)
        tick(0)

        # 1. Cache rows lost (file deleted or cut short): decode those items
        # again, from files still inside the folder (a row left out stays zeros).
        readable = [it for it in repair if inside(project.image_root, project.image_root / it.path)]
        done = len(repair) - len(readable)
        if repair:
            with closing(load_many([project.image_root / it.path for it in readable],
                                    size, max_pixels, workers)) as results:
                for it, got in zip(readable, results):
                    os.pwrite(fh.fileno(), got.pixels or bytes(row_bytes), it.cache_index * row_bytes)
                    done += 1
                    tick(done)
            os.fsync(fh.fileno())

        # 2. New files, in path order, so the first of identical files is kept.
        # An item's bytes under a new name while its own path is gone is the
        # same image moved or renamed (sorted into class folders, say): the
        # item follows it, keeping its label, rather than going missing while
        # the file is skipped as its duplicate.
        seen = dict(known_sha1)
        present = {rel for rel, _ in found.files}
        renamed: dict[str, str] = {}  # old path -> new path
        rows: list[dict] = []
        pixels: list[bytes] = []

        def commit() -> None:
            # Bytes on disk first, then the items that point at them.
            fh.write(b"".join(pixels))
            fh.flush()
            os.fsync(fh.fileno())
            project.add_items(rows)
            rows.clear()
            pixels.clear()

        next_row = n_rows
        with closing(load_many([p for _, p in new], size, max_pixels, workers)) as results:
            for (rel, _), got in zip(new, results):
                done += 1
                old = known_sha1.get(got.sha1) if got.reason is None else None
                if old is not None and old not in present and old not in renamed:
                    renamed[old] = seen[got.sha1] = rel
                elif _keep(rel, got, seen, skipped):
                    pixels.append(got.pixels)
                    rows.append({"path": rel, "size_bytes": got.size_bytes, "sha1": got.sha1,
                                 "width": got.width, "height": got.height, "cache_index": next_row,
                                 "gold": gold_for(rel)})
                    next_row += 1
                    if len(rows) >= _CHUNK:
                        commit()
                tick(done)
        if rows:
            commit()
        project.rename_items(renamed)

    # 3. Bookkeeping: classes from the gold labels, missing files, the skipped list.
    if (gold_from_folders or gold) and not project.classes():
        for name in sorted({it.gold for it in project.items(status=None) if it.gold}):
            try:
                project.add_classes([name])
            except BadInput:
                pass  # a name unusable as a class (e.g. with a tab) stays a gold label only
    missing = project.set_missing({rel for rel, _ in found.files})
    skipped.sort()
    project.set_skipped_files(skipped)
    seconds = time.perf_counter() - t0
    report = IngestReport(added=next_row - n_rows, known=len(found.files) - len(new), skipped=skipped,
                          missing=missing, ignored=found.ignored, hidden=found.hidden, renamed=len(renamed),
                          seconds=round(seconds, 3),
                          images_per_s=round(total / seconds, 1) if seconds > 0 else 0.0)
    project.log_event("ingest", {**{k: v for k, v in report.to_dict().items() if k != "skipped"},
                                 "skipped": len(skipped)})
    return report


def load_folder(image_root: Path, size: int, workers: int | None = None, progress: Progress | None = None,
                ) -> tuple[np.ndarray, list[str], list[str | None], list[tuple[str, str]]]:
    """In-memory decode of a whole folder with no project (for simulation):
    (images (N, S, S, 3) uint8, relative paths, gold labels = parent folder
    name or None at the root, skipped (path, reason)). Same rules as ingest,
    duplicates included, so a simulation sees what a project would."""
    found = scan(Path(image_root))
    skipped = list(found.skipped)
    total = len(found.files)
    images = np.empty((total, size, size, 3), dtype=np.uint8)
    paths: list[str] = []
    seen: dict[str, str] = {}
    tick = Steps(progress, Phase.DECODE, total)
    tick(0)
    with closing(load_many([p for _, p in found.files], size, DEFAULT_MAX_PIXELS, workers)) as results:
        for done, ((rel, _), got) in enumerate(zip(found.files, results), start=1):
            if _keep(rel, got, seen, skipped):
                images[len(paths)] = np.frombuffer(got.pixels, dtype=np.uint8).reshape(size, size, 3)
                paths.append(rel)
            tick(done)
    skipped.sort()
    return images[:len(paths)], paths, [gold_of(p) for p in paths], skipped


# -- creating a project -------------------------------------------------------

def parse_classes(text: str | Sequence[str] | None, what: str = "the class list") -> list[str]:
    """Class names in key order, comma-separated or (from Python) a list; a
    name given twice is an error (the second one would silently vanish)."""
    if not text:
        return []
    if isinstance(text, str):
        names = [c.strip() for c in text.split(",") if c.strip()]
    else:  # a list keeps a blank name, so that check_class_name refuses it instead of dropping it
        names = [str(c).strip() for c in text]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise BadInput(f"{what} lists {', '.join(dupes)} more than once")
    return names


def init_project(root: Path, images: Path, classes: Sequence[str] = (), image_size: int | None = None,
                 gold_from_folders: bool = False, progress: Progress | None = None,
                 gold: Mapping[str, str] | None = None, database: str | None = None,
                 moved: bool = False) -> tuple[Project, IngestReport, bool]:
    """Create a project from an image folder, or add a grown folder's new
    images to an existing one (labels kept). Returns (project, report,
    created). Checks the folder and the class names before writing
    anything. A creation that fails (no image could be read, an error, an
    interruption before any image was added) takes back what it made, and
    only that: a folder or file that was there before stays. Hidden gold
    labels as in `ingest`. `moved`: the existing project's images are now
    in `images` (relocate.move checks that they are, then the project reads
    them from there; `report.moved` says what it found)."""
    root, images = Path(root), Path(images).expanduser()
    if not images.is_dir():
        raise BadImageFolder(f"image folder {images} does not exist or is not a folder")
    if moved and not is_project(root):
        raise BadInput(f"no project at {root}: saying the images moved is for an existing project; "
                       "leave it out to create one")
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise BadInput(f"image size {image_size} is not supported; use one of {IMAGE_SIZES}")
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root} is a file, not a folder; give a folder for the project")
    for name in classes:
        check_class_name(name)
    _gold_rule(gold_from_folders, gold)  # refused before anything is written
    made = _Made(root)
    project, created, move = None, False, None
    try:
        # Under the ingest lock: two inits of one new project never both create it.
        with ingest_lock(root):
            created = not is_project(root)
            if created:
                found = scan(images)
                if not found.files:
                    left_out = f"; {hidden_words(found.hidden)}" if found.hidden else ""
                    raise BadImageFolder(f"no image files (jpg, jpeg, png, bmp, gif, webp, tif, tiff) "
                                         f"in {images}{left_out}")
                project = Project.create(root, images, image_size or 32, classes, database=database)
            else:
                project, move = _open_for(root, images, image_size, classes, moved)
        report = ingest(project, gold_from_folders=gold_from_folders, progress=progress, gold=gold)
        if move is not None:
            report.moved = move.to_dict()
        if created and not project.items(status=None):
            first = report.skipped[0] if report.skipped else ("?", "?")
            raise BadImageFolder(f"none of the image files in {images} could be read "
                                 f"({len(report.skipped)} skipped; first: {first[0]}: {first[1]})")
    except BaseException:
        if created and (project is None or not project.items(status=None)):
            if project is not None:
                if project.backend != "sqlite":
                    project.db.drop()  # the schema it made on the server, too
                project.close()
            made.undo()  # leave nothing half-made behind
        raise
    return project, report, created


def _open_for(root: Path, images: Path, image_size: int | None, classes: Sequence[str],
              moved: bool) -> tuple[Project, relocate.Moved | None]:
    """The existing project at `root`, checked against what init was given,
    reading its images from `images` if they `moved` there."""
    project = Project.open(root)
    if image_size is not None and image_size != project.image_size:
        raise BadInput(f"project {root} uses image size {project.image_size}; create a new project "
                       f"for size {image_size}")
    move = None
    if project.image_root != images.resolve():
        if not moved:
            raise BadInput(f"project {root} reads images from {project.image_root}, not {images.resolve()}; "
                           "give the same folder, or if its images moved there, say so (init --moved; in Python, "
                           "move_images): labels and rounds are kept")
        move = relocate.move(project, images)
    project.add_classes(classes)
    return project, move


class _Made:
    """What is at `root` before init writes anything, so that a failed
    creation removes exactly what it made: the folders it created, or the
    entries it added to a folder that was there (and to its cache/)."""

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        missing = [p for p in (self.root, *self.root.parents) if not p.exists()]
        self.top = missing[-1] if missing else None  # the highest folder init will create
        self.before = {folder: _names(self.root / folder) for folder in ("", "cache")}

    def undo(self) -> None:
        if self.top is not None:
            shutil.rmtree(self.top, ignore_errors=True)
            return
        for folder, before in self.before.items():
            if folder and before is None:
                continue  # made by this init: removed whole with root's new entries
            for name in sorted((_names(self.root / folder) or set()) - (before or set())):
                path = self.root / folder / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _names(folder: Path) -> set[str] | None:
    try:
        return set(os.listdir(folder))
    except OSError:
        return None
