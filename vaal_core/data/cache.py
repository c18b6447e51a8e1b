"""The decoded image cache: every item's pixels, decoded, converted to RGB
and resized to S x S exactly once, in a raw uint8 file of the project
(`cache/images_<S>.u8`), row `item.cache_index` = S*S*3 bytes.

Training reads images thousands of times, so it reads them from here, as a
read-only memory map shared through the OS page cache, never from the
original files.

Writers take `ingest_lock`: one ingest (or creation) of a project at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vaal_core.errors import VaalError, WorkerBusy
from vaal_core.files import file_lock
from vaal_core.store import Project

LEFTOVER_GRACE_S = 5.0  # how long a lock may outlive the ingest that took it before we say so


def cache_path(project: Project) -> Path:
    return project.cache_dir / f"images_{project.image_size}.u8"


def ingest_lock_path(project: Project | Path) -> Path:
    """Held while an ingest writes the cache: one ingest of a project at a
    time. A project or its folder (a project being created has no handle yet)."""
    root = project.root if isinstance(project, Project) else Path(project)
    return root / "cache" / "ingest.lock"


@contextmanager
def ingest_lock(root: Path) -> Iterator[None]:
    """Hold the ingest lock of the project in `root`, its holder's pid
    written in it. A running holder is waited for (a second ingest then
    finds the files known); a lock kept after its ingest died, by processes
    that ingest left behind, is refused with a one-line error naming them
    (WorkerBusy), never waited on for ever."""
    path = ingest_lock_path(root)
    with file_lock(path, while_waiting=_LeftoverCheck(path, Path(root))):
        path.write_text(f"{os.getpid()}\n")
        yield


class _LeftoverCheck:
    """Called between tries for a busy ingest lock: raises once the lock has
    been held for LEFTOVER_GRACE_S by someone other than the running ingest
    named in it (a killed ingest's workers die with it within a second)."""

    def __init__(self, path: Path, root: Path):
        self.path, self.root, self.since = path, root, None

    def __call__(self) -> None:
        try:
            holder: int | None = int(self.path.read_text().strip())
        except (OSError, ValueError):
            holder = None  # not written yet, or by a version that did not write it
        if holder is not None and process_running(holder):
            self.since = None
            return
        self.since = self.since or time.monotonic()
        if time.monotonic() - self.since < LEFTOVER_GRACE_S:
            return
        pids = _lock_holders(self.path)
        who = (f"process{'es' if len(pids) > 1 else ''} {', '.join(map(str, pids))}" if pids
               else "another process")
        after = f", left over from ingest process {holder} (no longer running)" if holder else ""
        end = f"end {'them' if len(pids) > 1 else 'it'} (kill {' '.join(map(str, pids))})" if pids else \
            f"end the processes that have {self.path} open (fuser {self.path})"
        raise WorkerBusy(f"the image cache of {self.root} is locked by {who}{after}; {end} "
                         f"and run init again")


def process_running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass  # no /proc: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holders(path: Path) -> list[int]:
    """Other processes holding the flock on `path`, found through /proc
    (Linux; [] elsewhere): those with the file open whose fdinfo shows the
    lock, or, on kernels that do not show it, every one with it open."""
    target, mine = os.path.realpath(path), os.getpid()
    holding, having = set(), set()
    try:
        procs = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != mine]
    except OSError:
        return []
    for pid in procs:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                    continue
                having.add(int(pid))
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    if "lock:" in fh.read():
                        holding.add(int(pid))
            except OSError:
                continue
    return sorted(holding or having)


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
