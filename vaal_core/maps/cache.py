"""Maps computed once and kept: per round in `rounds/<id>/umap.npy` (+
`umap_ids.npy`), and for any latents file (a Demo run's) in
`<stem>.umap.npy`.

An OS file lock makes a second process (a second browser tab, the CLI) wait
for the first one's result instead of computing it again, and the
computing process writes its progress to `umap.progress.json` so the others
can show it meanwhile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from vaal_core.errors import BadInput, VaalError
from vaal_core.files import file_lock, is_locked, read_json, save_array_atomic, write_json_atomic
from vaal_core.maps.projection import umap_2d
from vaal_core.progress import Event, Progress, Throttle

if TYPE_CHECKING:
    from vaal_core.store import Project

FILE_INTERVAL_S = 0.5       # at most 2 progress-file writes a second
WAIT_POLL_S = 0.25          # how often a waiting process re-reads the progress file


class NoLatents(VaalError):
    """The round trained no VAE (e.g. the `random` sampler), so there is
    nothing to project."""


@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays has no single truth value
class Projection:
    item_ids: np.ndarray  # (N,) int64, the store's item ids, row-aligned with xy
    xy: np.ndarray        # (N, 2) float32
    round_id: int
    seconds: float        # wall time of this call (small when cached)
    cached: bool          # True when read from the cache rather than computed


def round_projection(project: "Project", round_id: int, progress: Progress | None = None) -> Projection:
    """The round's latents in 2-D, computed once and cached in its folder.

    A process that finds another one computing the same projection waits for
    it (forwarding that process's progress to `progress`) and reads its
    result. Raises NoLatents when the round kept no latents."""
    t0 = time.perf_counter()
    folder = project.round_dir(round_id)
    _require_latents(folder, round_id)
    found = _read_round_cache(folder)
    if found is None:
        with file_lock(folder / "umap.lock", while_waiting=_progress_forwarder(folder, progress),
                       poll_s=WAIT_POLL_S):
            found = _read_round_cache(folder)  # the process we waited for may have made it
            if found is None:
                try:
                    ids = np.load(folder / "item_ids.npy").astype(np.int64)
                    latents = np.load(folder / "latents.npy")
                except (OSError, ValueError) as err:
                    raise BadInput(f"cannot read the latents of round {round_id} in {folder}: {err}; "
                                   f"run a new 'vaal' or 'coreset' round") from None
                if len(ids) != len(latents):
                    raise BadInput(f"{folder}: item_ids.npy has {len(ids)} rows but latents.npy "
                                   f"{len(latents)}; run a new round")
                writer = _ProgressFile(folder / "umap.progress.json", progress)
                try:
                    xy = umap_2d(latents, seed=_round_seed(project, round_id), progress=writer)
                finally:
                    writer.remove()
                save_array_atomic(folder / "umap_ids.npy", ids)
                save_array_atomic(folder / "umap.npy", xy)  # written last: its presence means complete
                return Projection(ids, xy, round_id, time.perf_counter() - t0, cached=False)
    ids, xy = found
    return Projection(ids, xy, round_id, time.perf_counter() - t0, cached=True)


def has_projection(project: "Project", round_id: int) -> bool:
    """Whether round_projection would answer from the cache at once."""
    return _read_round_cache(project.round_dir(round_id)) is not None


def projection_progress(project: "Project", round_id: int) -> Event | None:
    """The latest progress event of the process computing this round's
    projection, or None when none is computing (a file left by a crashed
    process is ignored: nobody holds the lock)."""
    folder = project.round_dir(round_id)
    if not is_locked(folder / "umap.lock"):
        return None
    return _read_event(folder / "umap.progress.json")


def _read_event(path: Path) -> Event | None:
    info = read_json(path)
    try:
        return None if info is None else Event.from_dict(info)
    except (KeyError, TypeError, ValueError):  # a file from another version: no progress to show
        return None


def latest_latent_round(project: "Project") -> int | None:
    """The newest finished round with latents to project (samplers such as
    `random` train no VAE and keep none), or None."""
    for r in reversed(project.rounds()):
        if r["status"] == "done" and (project.round_dir(r["id"]) / "latents.npy").is_file():
            return int(r["id"])
    return None


def _require_latents(folder: Path, round_id: int) -> None:
    if not (folder / "latents.npy").is_file() or not (folder / "item_ids.npy").is_file():
        raise NoLatents(f"round {round_id} has no latents to map (its sampler trains no VAE); "
                        f"run a round with the 'vaal' or 'coreset' sampler first")


def _round_seed(project: "Project", round_id: int) -> int:
    try:
        return int(project.round(round_id)["seed"])
    except (VaalError, KeyError, TypeError, ValueError):
        return 0


def _read_round_cache(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        xy = np.load(folder / "umap.npy")
        ids = np.load(folder / "umap_ids.npy")
        current = np.load(folder / "item_ids.npy")
    except (OSError, ValueError):
        return None
    # A cache from other latents (a re-run round folder) does not count.
    if xy.shape != (len(ids), 2) or not np.array_equal(ids, current):
        return None
    return ids.astype(np.int64), xy.astype(np.float32)


class _ProgressFile:
    """Forwards events to the caller and, at most twice a second (and at
    every phase's start and end), to a JSON file other processes poll. A
    failed write only loses that update."""

    def __init__(self, path: Path, progress: Progress | None):
        self.path, self.progress = path, progress
        self.throttle, self.phase = Throttle(FILE_INTERVAL_S), None

    def __call__(self, event: Event) -> None:
        if self.progress is not None:
            self.progress(event)
        if self.throttle.ready(force=event.finished or event.phase != self.phase):
            self.phase = event.phase
            try:
                write_json_atomic(self.path, {**event.to_dict(), "pid": os.getpid()})
            except OSError:
                pass

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def _progress_forwarder(folder: Path, progress: Progress | None) -> Callable[[], None]:
    """For a process waiting on the lock: pass the computing process's
    progress on to our caller, each new event once."""
    last: list[Event] = []

    def forward() -> None:
        event = _read_event(folder / "umap.progress.json")
        if progress is None or event is None:
            return
        if not last or event != last[0]:
            last[:] = [event]
            progress(event)

    return forward


# -- a latents file of the Demo page -------------------------------------------

def cached_projection_of(latents_path: Path, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """UMAP of a latents .npy/.npz file, cached beside it as `<stem>.umap.npy`
    with `<stem>.umap.json` recording the source's mtime and size (and the
    seed): a changed source is projected again. In a read-only folder the
    projection is computed and returned uncached."""
    src = Path(latents_path)
    try:
        st = src.stat()
    except OSError as err:
        raise BadInput(f"cannot read latents file {src}: {err.strerror}") from None
    key = {"mtime_ns": st.st_mtime_ns, "size": st.st_size, "seed": int(seed)}
    out, meta = src.with_name(src.stem + ".umap.npy"), src.with_name(src.stem + ".umap.json")
    if (xy := _read_file_cache(out, meta, key)) is not None:
        return xy
    with file_lock(src.with_name(src.stem + ".umap.lock"), required=False) as locked:
        if locked and (xy := _read_file_cache(out, meta, key)) is not None:
            return xy  # the process we waited for made it
        xy = umap_2d(_load_latents(src), seed, progress)
        if locked:
            try:
                save_array_atomic(out, xy)
                write_json_atomic(meta, {**key, "n": len(xy)})  # last: marks it complete
            except OSError:
                pass
        return xy


def _load_latents(src: Path) -> np.ndarray:
    try:
        data = np.load(src, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BadInput(f"{src} is not a readable .npy/.npz latents file: {err}") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        names = list(data.keys())
        if len(names) == 1 or "latents" in names:
            return data["latents" if "latents" in names else names[0]]
    raise BadInput(f"{src} holds arrays {names}; name the latents array 'latents'")


def _read_file_cache(out: Path, meta: Path, key: dict[str, int]) -> np.ndarray | None:
    saved = read_json(meta)
    if saved is None or any(saved.get(k) != v for k, v in key.items()):
        return None
    try:
        xy = np.load(out)
    except (OSError, ValueError):
        return None
    return xy.astype(np.float32) if xy.shape == (saved.get("n"), 2) else None
