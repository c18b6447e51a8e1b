"""Decoding one image file, as every part of VAAL Studio sees it: read once,
identified by content hash, refused with a reason a person can act on when
it is not a usable image, converted to RGB and cut to an S x S square.

Users point VAAL Studio at folders they did not curate: phone photos with
EXIF rotation, 16-bit TIFFs, PNGs with alpha, truncated downloads, files that
are not images at all, decompression bombs. Every one of those must end up
either decoded or with a reason; none may stop the caller.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import multiprocessing
import os
import re
import signal
import stat
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold

# Only the decoders for the formats scan.IMAGE_EXTENSIONS names (JPEG covers
# MPO): Pillow can also open EPS (which runs Ghostscript), PSD, ICO... under
# any extension, and a file named .jpg is no reason to trust it with those.
_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "WEBP", "TIFF")
_POOL_MIN_FILES = 2000  # below this, starting worker processes costs more than it saves
# Errors Pillow raises from a damaged file while decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)


class SkipFile(Exception):
    """Why a file is skipped; `str(e)` is the reason shown to the user."""


# -- decoding one image -------------------------------------------------------

def read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes, or SkipFile with the reason. O_NONBLOCK so that a
    FIFO that slipped past the scan (or was swapped in since) cannot hang
    the ingest."""
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


def _open_header(data: bytes, max_pixels: int) -> Image.Image:
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


def to_rgb(img: Image.Image) -> Image.Image:
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
    img = _open_header(data, max_pixels)
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
        except Exception:  # noqa: BLE001, S110 - a damaged EXIF block is no reason to lose the pixels
            pass
        if img.size != before:  # a quarter turn: report the size as the photo is shown
            width, height = height, width
        img = to_rgb(img)
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
    data = read_file(path)
    try:
        img, width, height = _decode_bytes(data, size, max_pixels)
    except SkipFile:
        raise
    except Exception as e:
        raise SkipFile(_unexpected(e)) from e
    return np.array(img, dtype=np.uint8), width, height


class Loaded(NamedTuple):
    reason: str | None  # None: decoded
    pixels: bytes  # size*size*3 RGB bytes
    width: int
    height: int
    sha1: str
    size_bytes: int


def _load_one(job: tuple[str, int, int]) -> Loaded:
    """Worker task: read the file once, hash it, decode it. Never raises, so
    one bad file can never abort an ingest or break the worker pool."""
    path, size, max_pixels = job
    try:
        data = read_file(path)
        img, width, height = _decode_bytes(data, size, max_pixels)
        return Loaded(None, img.tobytes(), width, height, hashlib.sha1(data).hexdigest(), len(data))
    except SkipFile as e:
        return Loaded(str(e), b"", 0, 0, "", 0)
    except Exception as e:  # noqa: BLE001 - anything else is still one file's problem
        return Loaded(_unexpected(e), b"", 0, 0, "", 0)


def _unexpected(e: Exception) -> str:
    return f"cannot decode: {type(e).__name__}: {e}"[:500]


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # what this container may use, not the host's count
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _start_worker(parent: int) -> None:
    """In each pool worker, before any file: die with the parent. A worker
    that outlives a killed ingest blocks forever on its result pipe, and
    keeps the ingest lock and the cache file it inherited (fork), so the
    next init would wait on it for ever."""
    if sys.platform.startswith("linux"):
        # The kernel kills us the moment the parent dies (strictly: the thread
        # that started us, which is the one iterating load_many until the
        # pool is shut down).
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before we could ask
        os._exit(1)
    # Everywhere (prctl or not): a thread that notices the parent is gone.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.25)
    os._exit(1)


def load_many(paths: Sequence[Path], size: int, max_pixels: int,
               workers: int | None) -> Iterator[Loaded]:
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
    # The workers die with this process (a kill -9 included): see _start_worker.
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method),
                               initializer=_start_worker, initargs=(os.getpid(),))
    try:
        yield from pool.map(_load_one, jobs, chunksize=64)
    finally:
        # On an error (or a closed generator) do not wait for the rest.
        pool.shutdown(wait=True, cancel_futures=True)
