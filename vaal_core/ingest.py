"""Ingest: scan an image folder, decode every image once into a cache, and
record what could not be used and why.

Users point VAAL Studio at folders they did not curate: phone photos with
EXIF rotation, 16-bit TIFFs, PNGs with alpha, truncated downloads, files that
are not images at all, symlink loops, names in a foreign encoding. Every one
of those must end up either as an item or as a skipped file with a reason a
person can act on; none may stop the ingest.

Training reads images thousands of times, so each is decoded, converted to RGB
and resized to S x S exactly once, here, into a raw uint8 file (`cache_path`):
row `cache_index` holds the S*S*3 bytes of one item. Rows are written and
fsynced before the items that point at them are committed, so a crash at any
moment leaves at worst an unreferenced tail, which the next ingest cuts off.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import multiprocessing
import os
import posixpath
import re
import stat
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps

from vaal_core.errors import BadImageFolder, BadInput, VaalError
from vaal_core.project import Project

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold

# Only the decoders for the formats above (JPEG covers MPO): Pillow can also
# open EPS (which runs Ghostscript), PSD, ICO... under any extension, and a
# file named .jpg is no reason to trust it with those.
_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF")
_EXTENSIONS_B = frozenset(e.encode() for e in IMAGE_EXTENSIONS)
_CHUNK = 512  # images per cache write + fsync + one SQLite transaction
_PROGRESS_EVERY = 256
_POOL_MIN_FILES = 2000  # below this, starting worker processes costs more than it saves
# Errors Pillow raises from a damaged file while decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)


class SkipFile(Exception):
    """Why a file is skipped; `str(e)` is the reason shown to the user."""


# -- decoding one image -------------------------------------------------------

def _read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes. O_NONBLOCK so that a FIFO that slipped past the scan
    (or was swapped in since) cannot hang the ingest."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except PermissionError:
        raise SkipFile("cannot read file: permission denied") from None
    except FileNotFoundError:
        raise SkipFile("cannot read file: it no longer exists (deleted during ingest?)") from None
    except OSError as e:
        raise SkipFile(f"cannot read file: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SkipFile("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    except OSError as e:
        raise SkipFile(f"cannot read file: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if not data:
        raise SkipFile("empty file (0 bytes)")
    return data


def _too_large(pixels: str, limit: int) -> SkipFile:
    return SkipFile(f"image too large ({pixels} pixels, over the {limit}-pixel limit): "
                    "possible decompression bomb")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open the header only (no pixels decoded yet) and refuse bombs before
    they are decoded: a tiny PNG can expand to gigabytes."""
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if not all(f in Image.OPEN for f in _FORMATS):
        Image.init()  # Pillow registers WEBP, TIFF, MPO... only on demand
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; that is a
            # bomb all the same.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombWarning:
        # Re-read the header with the warning silenced, only to name the size.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = Image.open(io.BytesIO(data), formats=_FORMATS).size
        raise _too_large(f"{w} x {h}", limit) from None
    except Image.DecompressionBombError as e:  # over twice Pillow's limit: no size given back
        found = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(found.group(1) if found else "over", limit) from None
    except Image.UnidentifiedImageError:
        raise SkipFile("not an image: Pillow cannot identify it") from None
    except _DECODE_ERRORS as e:  # recognised, but the header is cut short or damaged
        raise SkipFile(f"truncated or corrupt image: {e}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise _too_large(f"{w} x {h}", max_pixels)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB. Transparent pixels become white (what a
    viewer shows them as), high bit depths are scaled down rather than
    clipped so that 16-bit scans and float maps stay visible."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img)
        if img.mode.startswith("I;16"):
            gray = (a.astype(np.float32) / 257.0).round()
        else:
            a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = float(a.min()), float(a.max())
            gray = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(gray.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")  # P and L/RGB with a transparent colour go through here
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _decode_bytes(data: bytes, size: int, max_pixels: int) -> tuple[Image.Image, int, int]:
    """(RGB image of size x size, original width, original height), the
    original size as displayed, i.e. after EXIF rotation."""
    img = _open(data, max_pixels)
    width, height = img.size
    try:
        if img.format in ("JPEG", "MPO"):
            # libjpeg can decode at 1/2, 1/4 or 1/8 scale for free; keep at
            # least twice the target so the bicubic resize still has detail.
            img.draft("RGB", (size * 2, size * 2))
        img.load()  # first frame of a GIF/APNG/multi-page TIFF
        before = img.size
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # noqa: BLE001 - a damaged EXIF block is no reason to lose the pixels
            pass
        if img.size != before:  # a quarter turn: report the size as the photo is shown
            width, height = height, width
        img = _to_rgb(img)
    except _DECODE_ERRORS as e:
        raise SkipFile(f"truncated or corrupt image: {e}") from None
    if img.size != (size, size):
        # Centre crop to a square, then resize: no stretching.
        img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
    return img, width, height


def decode_image(path: Path, size: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int, int]:
    """Decode one file as ingest does: -> (uint8 array (size, size, 3) RGB,
    original width, original height after EXIF rotation). Raises SkipFile
    with the reason, whatever went wrong."""
    data = _read_file(path)
    try:
        img, width, height = _decode_bytes(data, size, max_pixels)
    except SkipFile:
        raise
    except Exception as e:  # noqa: BLE001 - callers handle one kind of failure
        raise SkipFile(_unexpected(e)) from e
    return np.array(img, dtype=np.uint8), width, height


class _Loaded(NamedTuple):
    reason: str | None  # None: decoded
    pixels: bytes  # size*size*3 RGB bytes
    width: int
    height: int
    sha1: str
    size_bytes: int


def _load_one(job: tuple[str, int, int]) -> _Loaded:
    """Worker task: read the file once, hash it, decode it. Never raises, so
    one bad file can never abort an ingest or break the worker pool."""
    path, size, max_pixels = job
    try:
        data = _read_file(path)
        img, width, height = _decode_bytes(data, size, max_pixels)
        return _Loaded(None, img.tobytes(), width, height, hashlib.sha1(data).hexdigest(), len(data))
    except SkipFile as e:
        return _Loaded(str(e), b"", 0, 0, "", 0)
    except Exception as e:  # noqa: BLE001 - anything else is still one file's problem
        return _Loaded(_unexpected(e), b"", 0, 0, "", 0)


def _unexpected(e: Exception) -> str:
    return f"cannot decode: {type(e).__name__}: {e}"[:500]


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # what this container may use, not the host's count
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _load_many(paths: Sequence[Path], size: int, max_pixels: int,
               workers: int | None) -> Iterator[_Loaded]:
    """`_load_one` over `paths`, results in order. An explicit `workers`
    is obeyed; by default small folders are decoded in this process."""
    jobs = [(str(p), size, max_pixels) for p in paths]
    n = workers if workers is not None else (_default_workers() if len(jobs) >= _POOL_MIN_FILES else 1)
    if n <= 1 or len(jobs) < 2:
        yield from map(_load_one, jobs)
        return
    # fork where the OS has it: no re-import of __main__ in each worker, so
    # it also works from scripts without a __main__ guard and from notebooks;
    # the workers only run _load_one, which takes none of the parent's locks.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method))
    try:
        yield from pool.map(_load_one, jobs, chunksize=64)
    finally:
        # On an error (or a closed generator) do not wait for the rest.
        pool.shutdown(wait=True, cancel_futures=True)


# -- scanning -----------------------------------------------------------------

def _display(path: bytes) -> str:
    """A printable str for any file name, storable in SQLite (no surrogates)."""
    return os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or special file"


@dataclass
class ScanResult:
    files: list[tuple[str, Path]]  # (relative posix path, absolute path), sorted by relative path
    skipped: list[tuple[str, str]]  # (display path, reason)
    ignored: int  # files with other extensions, left alone: not "skipped"


def scan(image_root: Path) -> ScanResult:
    """List the image files under `image_root`, recursively, without opening
    any. Works on bytes paths so that names that are not valid UTF-8 are seen
    (and reported) instead of crashing the database insert later. Directory
    symlinks are not followed (a link to a parent would loop forever); file
    symlinks are."""
    root = Path(image_root)
    if not root.is_dir():
        raise BadImageFolder(f"image folder {root} does not exist or is not a folder")
    files: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    ignored = 0
    stack = [b""]  # relative bytes paths of folders still to list
    root_b = os.fsencode(root.resolve())
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root_b, rel_dir) if rel_dir else root_b) as it:
                entries = list(it)
        except OSError as e:
            if not rel_dir:
                raise BadImageFolder(f"cannot list image folder {root}: {e.strerror or e}") from None
            reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or str(e))
            skipped.append((_display(rel_dir), f"cannot read folder: {reason}"))
            continue
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            is_link = entry.is_symlink()
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            if os.path.splitext(entry.name)[1].lower() not in _EXTENSIONS_B:
                if entry.is_file():  # follows file symlinks; broken links and folders don't count
                    ignored += 1
                elif is_link and entry.is_dir():
                    skipped.append((_display(rel), "symbolic link to a folder: not followed "
                                                   "(it could loop)"))
                continue
            try:
                rel_str = rel.decode("utf-8")
            except UnicodeDecodeError:
                which = "folder" if _valid_utf8(entry.name) else "file"
                skipped.append((_display(rel), f"{which} name is not valid UTF-8; rename it"))
                continue
            try:
                mode = entry.stat(follow_symlinks=True).st_mode
            except OSError:  # dangling target, or a link loop
                skipped.append((rel_str, "broken symbolic link: its target does not exist"
                                if is_link else "cannot read file information"))
                continue
            if not stat.S_ISREG(mode):
                what = _kind(mode)
                if stat.S_ISDIR(mode):
                    what += " (symbolic link, not followed)" if is_link else " (its images are scanned)"
                skipped.append((rel_str, f"not a regular file: {what}"))
                continue
            files.append((rel_str, Path(os.fsdecode(os.path.join(root_b, rel)))))
    files.sort(key=lambda f: f[0])
    skipped.sort()
    return ScanResult(files, skipped, ignored)


def _valid_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _gold(rel: str) -> str | None:
    """The immediate parent folder's name; None for files at the root."""
    return posixpath.basename(posixpath.dirname(rel)) or None


# -- the cache ----------------------------------------------------------------

def cache_path(project: Project) -> Path:
    return project.cache_dir / f"images_{project.image_size}.u8"


def open_cache(project: Project) -> np.ndarray:
    """The decoded images, row = item.cache_index, as a read-only memmap so
    that training processes share the OS page cache instead of copies."""
    size, rows = project.image_size, project.cache_rows()
    shape = (rows, size, size, 3)
    path = cache_path(project)
    have = path.stat().st_size if path.is_file() else 0
    if have < rows * size * size * 3:
        raise VaalError(
            f"the image cache {path} is missing or incomplete ({have // (size * size * 3)} of "
            f"{rows} images); rebuild it with: "
            f"python -m vaal_core init {project.root} --images {project.image_root}")
    if rows == 0:  # mmap cannot map an empty file
        empty = np.zeros(shape, dtype=np.uint8)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)


# -- ingest -------------------------------------------------------------------

@dataclass
class IngestReport:
    added: int  # new items
    known: int  # files already items (not decoded again)
    skipped: list[tuple[str, str]]  # (path, reason) of every file not usable now
    missing: int  # items whose file is gone (labels kept)
    ignored: int  # files with other extensions
    seconds: float
    images_per_s: float  # files decoded per second

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return d


def _keep(rel: str, got: "_Loaded", seen: dict[str, str], skipped: list[tuple[str, str]]) -> bool:
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


def ingest(project: Project, gold_from_folders: bool = False,
           progress: Callable[[int, int], None] | None = None,
           workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> IngestReport:
    """Scan project.image_root, decode new files into the cache, insert items,
    record skipped files. Safe to re-run at any time: known files are not
    decoded again, labels are untouched, and a cache a crash left too long
    (or too short) is repaired."""
    t0 = time.perf_counter()
    size = project.image_size
    row_bytes = size * size * 3
    found = scan(project.image_root)  # first: a bad folder changes nothing
    skipped = list(found.skipped)

    path = cache_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not "a+b": Linux ignores pwrite's offset on a file opened for append.
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as fh:
        # One ingest of a project at a time (two would write the same rows);
        # a second one waits, then finds the files known. Read the store
        # only once the lock is held.
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
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
        done = 0

        def tick(force: bool = False) -> None:
            if progress and (force or done % _PROGRESS_EVERY == 0):
                progress(done, total)

        # 1. Cache rows lost (file deleted or cut short): decode those items again.
        if repair:
            with closing(_load_many([project.image_root / it.path for it in repair],
                                    size, max_pixels, workers)) as results:
                for it, got in zip(repair, results):
                    os.pwrite(fh.fileno(), got.pixels or bytes(row_bytes), it.cache_index * row_bytes)
                    done += 1
                    tick()
            os.fsync(fh.fileno())

        # 2. New files, in path order, so the first of identical files is kept.
        seen = dict(known_sha1)
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
        with closing(_load_many([p for _, p in new], size, max_pixels, workers)) as results:
            for (rel, _), got in zip(new, results):
                done += 1
                if _keep(rel, got, seen, skipped):
                    pixels.append(got.pixels)
                    rows.append({"path": rel, "size_bytes": got.size_bytes, "sha1": got.sha1,
                                 "width": got.width, "height": got.height, "cache_index": next_row,
                                 "gold": _gold(rel) if gold_from_folders else None})
                    next_row += 1
                    if len(rows) >= _CHUNK:
                        commit()
                tick()
        if rows:
            commit()
        tick(force=True)

    # 3. Bookkeeping: classes from folders, missing files, the skipped list.
    if gold_from_folders and not project.classes():
        for name in sorted({it.gold for it in project.items(status=None) if it.gold}):
            try:
                project.add_classes([name])
            except BadInput:
                pass  # a folder name unusable as a class (e.g. with a tab) stays a gold label only
    missing = project.set_missing({rel for rel, _ in found.files})
    skipped.sort()
    project.set_skipped(skipped)
    seconds = time.perf_counter() - t0
    report = IngestReport(added=next_row - n_rows, known=len(found.files) - len(new), skipped=skipped,
                          missing=missing, ignored=found.ignored, seconds=round(seconds, 3),
                          images_per_s=round(total / seconds, 1) if seconds > 0 else 0.0)
    project.log_event("ingest", {**{k: v for k, v in report.to_dict().items() if k != "skipped"},
                                 "skipped": len(skipped)})
    return report


def load_folder(image_root: Path, size: int, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None,
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
    with closing(_load_many([p for _, p in found.files], size, DEFAULT_MAX_PIXELS, workers)) as results:
        for done, ((rel, _), got) in enumerate(zip(found.files, results), start=1):
            if _keep(rel, got, seen, skipped):
                images[len(paths)] = np.frombuffer(got.pixels, dtype=np.uint8).reshape(size, size, 3)
                paths.append(rel)
            if progress and (done % _PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
    if progress and total == 0:
        progress(0, 0)
    skipped.sort()
    return images[:len(paths)], paths, [_gold(p) for p in paths], skipped


# -- creating a project -------------------------------------------------------

def parse_classes(text: str | None, what: str = "the class list") -> list[str]:
    """Comma-separated class names in key order; a name given twice is an
    error (the second one would silently vanish)."""
    if not text:
        return []
    names = [c.strip() for c in str(text).split(",") if c.strip()]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise BadInput(f"{what} lists {', '.join(dupes)} more than once")
    return names


def init_project(root: Path, images: Path, classes: Sequence[str] = (), image_size: int | None = None,
                 gold_from_folders: bool = False, progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[Project, IngestReport, bool]:
    """Create a project from an image folder, or add a grown folder's new
    images to an existing one (labels kept). Returns (project, report,
    created). Checks the folder before writing anything, and removes a
    project it created if no image could be read or the ingest failed."""
    import shutil

    from vaal_core.config import IMAGE_SIZES
    from vaal_core.project import DB_NAME

    root, images = Path(root), Path(images).expanduser()
    if not images.is_dir():
        raise BadImageFolder(f"image folder {images} does not exist or is not a folder")
    if image_size is not None and image_size not in IMAGE_SIZES:
        raise BadInput(f"image size {image_size} is not supported; use one of {IMAGE_SIZES}")
    created = not (root / DB_NAME).exists()
    if created:
        if not scan(images).files:
            raise BadImageFolder(f"no image files (jpg, jpeg, png, bmp, gif, webp, tif, tiff) in {images}")
        project = Project.create(root, images, image_size or 32, classes)
    else:
        project = Project.open(root)
        if project.image_root != images.resolve():
            raise BadInput(f"project {root} reads images from {project.image_root}, not {images.resolve()}; "
                           "give the same folder or create a new project")
        if image_size is not None and image_size != project.image_size:
            raise BadInput(f"project {root} uses image size {project.image_size}; create a new project "
                           f"for size {image_size}")
        project.add_classes(classes)
    try:
        report = ingest(project, gold_from_folders=gold_from_folders, progress=progress)
    except BaseException:
        if created and not project.items(status=None):
            project.close()
            shutil.rmtree(root, ignore_errors=True)  # leave nothing half-made behind
        raise
    if created and not project.items(status=None):
        first = report.skipped[0] if report.skipped else ("?", "?")
        project.close()
        shutil.rmtree(root, ignore_errors=True)
        raise BadImageFolder(f"none of the image files in {images} could be read "
                             f"({len(report.skipped)} skipped; first: {first[0]}: {first[1]})")
    return project, report, created
