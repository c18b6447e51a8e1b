"""Files that other processes read while this one writes them, and locks
between processes.

The app polls files a worker rewrites (simulation results, map progress,
worker descriptions) and a crash can stop any write half-way, so nothing is
written in place: `atomic_write` writes a hidden temporary sibling and
renames it over the target, which readers see whole or not at all.
`atomic_dir` does the same for a folder built file by file.

`file_lock` is an OS lock (flock) on a small file: the kernel drops it when
its holder dies, so a crashed worker never leaves a project locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np


def _temporary(path: Path) -> Path:
    # pid and thread in the name: two writers of the same file never share
    # a temporary, and the last rename wins whole.
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of `path` for writing; when the block ends
    it replaces `path` in one rename. On an error the temporary is removed
    and `path` is left as it was. `durable` fsyncs before the rename (for
    files that must survive a power cut, not just a crash)."""
    path = Path(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    if _special(path):
        # A device or a pipe (/dev/stdout, a shell's >(gzip > x.gz)) is written
        # through: renaming a file over it would replace the device itself.
        # Appended to: /dev/stdout redirected to a file is that file, which
        # "w" would cut back to nothing under what was printed before.
        with open(path, mode.replace("w", "a"), **text) as fh:
            yield fh
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, **text) as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _special(path: Path) -> bool:
    """Whether `path` names a device or a pipe: under /dev or /proc as
    given (/dev/stdout leads to a plain file when output is redirected, and
    must not be replaced), or there and neither a file nor a folder."""
    if os.path.normpath(os.path.abspath(path)).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    with atomic_write(path, "w" if isinstance(data, str) else "wb") as fh:
        fh.write(data)


def write_json_atomic(path: str | os.PathLike, payload: Any, indent: int | None = None) -> None:
    write_atomic(path, json.dumps(payload, indent=indent, default=str))


def save_array_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save through a file handle (a path would get '.npy' appended to the
    temporary name)."""
    with atomic_write(path) as fh:
        np.save(fh, array)


def save_arrays_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def read_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, unreadable or
    not an object (a poller treats all of those as 'nothing yet')."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def atomic_dir(path: str | os.PathLike, staging: str | os.PathLike | None = None,
               replace_existing: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name (`staging`, default a hidden
    sibling) and rename it to `path` when the block ends, so a folder at
    `path` is always complete. An error removes the partial folder. `path`
    may exist only as an empty folder, unless `replace_existing` (a damaged
    earlier copy, removed just before the rename)."""
    path = Path(path)
    tmp = Path(staging) if staging is not None else path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed run left
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if replace_existing:
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.rmdir()  # an empty folder only: OSError otherwise, and tmp is removed below
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LockBusy(Exception):
    """Another process holds the lock (raised by file_lock(wait=False))."""


@contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True, while_waiting: Callable[[], None] | None = None,
              poll_s: float = 0.25, required: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created if missing) for the block;
    yields whether it is held.

    wait=False raises LockBusy at once when another process has it. With
    `while_waiting` the wait polls, calling it between tries (a waiter can
    show the holder's progress). With required=False a lock file that
    cannot be created (a read-only folder) yields False instead of raising."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")
    except OSError:
        if required:
            raise
        yield False
        return
    with fh:
        if not wait or while_waiting is not None:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise LockBusy(str(path)) from None
                    while_waiting()
                    time.sleep(poll_s)
        else:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_locked(path: str | os.PathLike) -> bool:
    """Whether another process holds a lock on `path` right now (a crashed
    holder's lock is gone with it, so this never reports a stale lock)."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with file_lock(path, wait=False):
            return False
    except LockBusy:
        return True
    except OSError:
        return False
