"""Listing the image files of a folder, without opening any.

Works on bytes paths so that names that are not valid UTF-8 are seen (and
reported) instead of crashing a database insert later; every file that
cannot become an item is listed with the reason.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from vaal_core.errors import BadImageFolder

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_EXTENSIONS_B = frozenset(e.encode() for e in IMAGE_EXTENSIONS)
OUTSIDE = "symbolic link to a file outside the image folder: not followed"


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
    hidden: int = 0  # files and folders whose names start with ".", left out unopened


def scan(image_root: Path) -> ScanResult:
    """List the image files under `image_root`, recursively, without opening
    any. Works on bytes paths so that names that are not valid UTF-8 are seen
    (and reported) instead of crashing the database insert later. Directory
    symlinks are not followed (a link to a parent would loop forever); file
    symlinks are, when their real path is inside the folder: a link out of
    it is skipped, so that nothing outside the folder is ever read. Hidden
    files and folders (names starting with ".") are left out and counted, as
    a shell's * leaves them: a desktop's .Trash, a phone's .thumbnails and
    the ._ copies macOS leaves on shared drives are not the user's images."""
    root = Path(image_root)
    if not root.is_dir():
        raise BadImageFolder(f"image folder {root} does not exist or is not a folder")
    files: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    ignored = hidden = 0
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
            if entry.name.startswith(b"."):
                hidden += 1
                continue
            rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
            is_link = entry.is_symlink()
            if entry.is_dir(follow_symlinks=False):
                stack.append(rel)
            if os.path.splitext(entry.name)[1].lower() not in _EXTENSIONS_B:
                try:
                    if entry.is_file():  # follows file symlinks; broken links and folders don't count
                        ignored += 1
                    elif is_link and entry.is_dir():
                        skipped.append((_display(rel), ("symbolic link to a folder: not followed "
                                                        "(it could loop)")))
                except OSError:  # links that loop (ELOOP): neither a file nor a folder, left alone
                    pass
                continue
            try:
                rel_str = rel.decode("utf-8")
            except UnicodeDecodeError:
                which = "folder" if _valid_utf8(entry.name) else "file"
                skipped.append((_display(rel), f"{which} name is not valid UTF-8; rename it"))
                continue
            try:
                mode = entry.stat(follow_symlinks=True).st_mode
            except OSError as e:  # dangling target, or links that loop
                skipped.append((rel_str, _broken_link(e) if is_link else "cannot read file information"))
                continue
            if not stat.S_ISREG(mode):
                what = _kind(mode)
                if stat.S_ISDIR(mode):
                    what += " (symbolic link, not followed)" if is_link else " (its images are scanned)"
                skipped.append((rel_str, f"not a regular file: {what}"))
                continue
            # Only real folders under the resolved root are entered, so only
            # a file symlink can lead out of it.
            if is_link and not inside(root_b, os.path.join(root_b, rel)):
                skipped.append((rel_str, OUTSIDE))
                continue
            files.append((rel_str, Path(os.fsdecode(os.path.join(root_b, rel)))))
    files.sort(key=lambda f: f[0])
    skipped.sort()
    return ScanResult(files, skipped, ignored, hidden)


def _broken_link(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "broken symbolic link: its links loop back on themselves"
    return "broken symbolic link: its target does not exist"


def hidden_words(hidden: int) -> str:
    """What a scan left out as hidden, in words; empty when nothing."""
    if not hidden:
        return ""
    things = "1 hidden file or folder" if hidden == 1 else f"{hidden:,} hidden files and folders"
    return f"left out {things} (names starting with '.')"


def inside(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path`, every symbolic link resolved, is inside `root` (also resolved)."""
    sep = os.sep.encode()
    real_root = os.path.realpath(os.fsencode(root)).rstrip(sep) + sep
    return os.path.realpath(os.fsencode(path)).startswith(real_root)


def _valid_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def gold_of(rel: str) -> str | None:
    """The immediate parent folder's name; None for files at the root."""
    return posixpath.basename(posixpath.dirname(rel)) or None
