"""2-D UMAP projections of VAE latents, for the Explore and Demo pages.

UMAP is the slowest thing the UI asks for outside training (seconds to a
minute), so each projection is computed once and cached beside its source:
per round in `rounds/<id>/umap.npy` (+ `umap_ids.npy`), and for an arbitrary
latents file in `<stem>.umap.npy`. An OS file lock makes a second process (a
second browser tab, the CLI) wait for the first one's result instead of
computing it again, and the computing process writes its progress to
`umap.progress.json` so the others can show it meanwhile.

umap-learn pulls in numba and compiles on first use, so it is imported only
inside `umap_2d`: importing this module stays cheap for the CLI and the app.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from vaal_core.errors import BadInput, VaalError
from vaal_core.project import is_locked

if TYPE_CHECKING:
    from vaal_core.project import Project

Progress = Callable[[dict[str, Any]], None]

N_NEIGHBORS = 15
MIN_DIST = 0.1
# Below this many points UMAP's spectral initialisation fails (it needs more
# points than eigenvectors) and a "map" says nothing anyway: use PCA.
MIN_UMAP_POINTS = 5
CALLBACK_INTERVAL_S = 0.25  # at most 4 progress callbacks a second
# Up to here the neighbour graph is computed exactly with numpy (about 6 s
# at 20k points on 2 cores): umap-learn's own small-data path calls a Python
# callable per pair (seconds at 2k points) and pynndescent spends ~25 s
# compiling in every new process. Above it, pynndescent's compile pays off.
EXACT_KNN_MAX = 20_000
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


# -- the projection itself --------------------------------------------------

def umap_2d(latents: np.ndarray, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """(N, D) latents -> (N, 2) float32 UMAP coordinates, the same for the
    same seed (random_state makes umap-learn single-threaded: the price of a
    map that does not move between reloads).

    Fewer than MIN_UMAP_POINTS points get a PCA layout instead, so a new
    project's page still draws something. `progress` receives
    {"phase", "done", "total", "elapsed_s"} dicts: phase "neighbors" (rows
    of the neighbour graph done, of N) then "layout" (epochs done, of n; it
    starts at 0 while umap-learn builds its graph and spectral start), at
    most 4 a second, always ending with layout done == total. An exception
    raised by `progress` cancels the projection: at once during "neighbors",
    after the layout finishes during "layout" (umap-learn cannot be stopped
    mid-layout without leaving tqdm's global lock held)."""
    x = _check_latents(latents)
    report = _Reporter(progress)
    if len(x) < MIN_UMAP_POINTS:
        report("layout", 0, 1)
        xy = _pca_2d(x)
        report("layout", 1, 1)
        return xy
    return _run_umap(x, seed, report)


def _check_latents(latents: np.ndarray) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # overflow becomes inf, reported below
            x = np.asarray(latents, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise BadInput(f"latents must be numbers, got {np.asarray(latents).dtype}: {err}") from None
    if x.ndim != 2 or (len(x) and x.shape[1] == 0):
        raise BadInput(f"latents must be a 2-D array (items, features), got shape {x.shape}")
    bad = ~np.isfinite(x).all(axis=1)  # checked after the cast: float64 overflowing float32 is bad too
    if bad.any():
        raise BadInput(f"{int(bad.sum())} of {len(x)} latent vectors hold NaN or infinite values "
                       f"(first at row {int(np.argmax(bad))}); the VAE probably diverged: "
                       f"run the round again with --fresh")
    return x


def _pca_2d(x: np.ndarray) -> np.ndarray:
    """Top two principal components by numpy SVD; zeros where there is no
    spread. Signs are fixed so LAPACK's arbitrary choice cannot flip the map."""
    out = np.zeros((len(x), 2), dtype=np.float32)
    if len(x) < 2:
        return out
    centred = x.astype(np.float64) - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    k = min(2, len(s))
    pcs = u[:, :k] * s[:k]
    signs = np.sign(pcs[np.abs(pcs).argmax(axis=0), np.arange(k)])
    out[:, :k] = pcs * np.where(signs == 0, 1.0, signs)
    return out


def _run_umap(x: np.ndarray, seed: int, report: "_Reporter") -> np.ndarray:
    n = len(x)
    report("neighbors", 0, n)  # before the import: loading numba alone can take seconds
    import numba
    import umap

    # umap-learn's own default, made explicit so the last progress event
    # can say done == total without trusting the bar's final write.
    n_epochs = 500 if n <= 10_000 else 200
    # verbose=False keeps umap and pynndescent from printing; the epoch bar
    # is switched on by hand ("disable" in tqdm_kwds wins over verbose) and
    # pointed at a sink that turns its "k/n" into progress events.
    # miniters=1: tqdm checks the clock every epoch, so its monitor thread
    # never has to refresh the bar (and call our callback) from elsewhere.
    sink = _TqdmSink(report)
    tqdm_kwds = {"disable": False, "file": sink, "bar_format": "{n}/{total}", "miniters": 1,
                 "mininterval": CALLBACK_INTERVAL_S, "ascii": True, "leave": True}
    k = min(N_NEIGHBORS, n - 1)  # umap-learn counts each point as its own first neighbour
    knn = _exact_knn(x, k, report) if n <= EXACT_KNN_MAX else (None, None, None)
    # The fuzzy graph and spectral start (and numba compiling them, ~10 s in
    # a fresh process) come before the first epoch: show the layout as begun.
    if knn[0] is not None:
        report("layout", 0, n_epochs)
    reducer = umap.UMAP(n_neighbors=k, min_dist=MIN_DIST, metric="euclidean", n_components=2,
                        n_epochs=n_epochs, random_state=seed, n_jobs=1, verbose=False,
                        tqdm_kwds=tqdm_kwds, precomputed_knn=knn)
    threads = numba.get_num_threads()  # umap restores this itself, but not if progress raises
    try:
        # Not thread-safe (it swaps the global filters) but only ever hides
        # umap's advisory warnings, e.g. about spectral initialisation.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xy = reducer.fit_transform(x)
    finally:
        numba.set_num_threads(threads)
    if sink.error is not None:
        raise sink.error
    report("layout", n_epochs, n_epochs)
    xy = np.asarray(xy, dtype=np.float32)
    # umap marks points cut off from the neighbour graph with NaN; put them
    # at the centre of the map rather than hand the plot a NaN.
    lost = ~np.isfinite(xy).all(axis=1)
    if lost.any():
        xy[lost] = xy[~lost].mean(axis=0) if (~lost).any() else 0.0
    return xy


def _exact_knn(x: np.ndarray, k: int, report: "_Reporter") -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (self first, as umap-learn expects) by
    blocks of squared distances |a|^2 + |b|^2 - 2ab, ~64 MB at a time."""
    n = len(x)
    x = x - x.mean(axis=0)  # centred: less float32 cancellation in the expansion below
    sq = np.einsum("ij,ij->i", x, x)
    indices, dists = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    step = max(1, (1 << 24) // n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        d = x[start:stop] @ x.T                       # (B, N)
        d *= -2.0
        d += sq[start:stop, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)                     # rounding can dip below 0
        d[np.arange(stop - start), np.arange(start, stop)] = -1.0  # self first, even among duplicates
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        part_d = np.take_along_axis(d, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        dists[start:stop] = np.sqrt(np.maximum(np.take_along_axis(part_d, order, axis=1), 0.0))
        report("neighbors", stop, n)
    return indices, dists


class _Reporter:
    """Adds elapsed time and throttles: the first event of a phase and a
    finished phase always go through, others at most every 0.25 s."""

    def __init__(self, progress: Progress | None):
        self.progress, self.t0 = progress, time.perf_counter()
        self.phase: str | None = None
        self.last = float("-inf")
        self.done = self.total = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        now = time.perf_counter()
        if phase == self.phase and done < total and now - self.last < CALLBACK_INTERVAL_S:
            return
        if phase == "layout" and self.phase == "neighbors" and self.done < self.total:
            self._send("neighbors", self.total, self.total, now)  # the layout starting means the graph is done
        self._send(phase, done, total, now)

    def _send(self, phase: str, done: int, total: int, now: float) -> None:
        self.phase, self.last, self.done, self.total = phase, now, done, total
        self.progress({"phase": phase, "done": int(done), "total": int(total),
                       "elapsed_s": round(now - self.t0, 3)})


class _TqdmSink:
    """A file for tqdm to write the epoch bar to ("\\r12/500").

    Nothing may escape `write`: tqdm calls it holding its process-wide lock
    and does not release the lock on an exception, so every later progress
    bar in any thread would hang. Text it cannot parse is dropped; an error
    from the caller's callback is kept and re-raised once umap returns."""

    _count = re.compile(r"(\d+)/(\d+)")

    def __init__(self, report: _Reporter):
        self.report = report
        self.error: BaseException | None = None

    def write(self, text: str) -> int:
        try:
            found = self._count.findall(text)
            done, total = (int(v) for v in found[-1]) if found else (0, 0)
        except Exception:  # noqa: BLE001 - whatever tqdm writes, never fail here
            done = total = 0
        if self.error is None and 0 <= done <= total and total > 0:
            try:
                # Finished is reported once, by _run_umap, after umap returns.
                self.report("layout", min(done, total - 1), total)
            except BaseException as err:  # noqa: BLE001 - see the class docstring
                self.error = err
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


# -- per-round cache ----------------------------------------------------------

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
        with _exclusive(folder / "umap.lock", _progress_forwarder(folder, progress)):
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
                _save_atomic(folder / "umap_ids.npy", ids)
                _save_atomic(folder / "umap.npy", xy)  # written last: its presence means complete
                return Projection(ids, xy, round_id, time.perf_counter() - t0, cached=False)
    ids, xy = found
    return Projection(ids, xy, round_id, time.perf_counter() - t0, cached=True)


def has_projection(project: "Project", round_id: int) -> bool:
    """Whether round_projection would answer from the cache at once."""
    return _read_round_cache(project.round_dir(round_id)) is not None


def projection_progress(project: "Project", round_id: int) -> dict[str, Any] | None:
    """The latest progress event of the process computing this round's
    projection, or None when none is computing (a file left by a crashed
    process is ignored: nobody holds the lock)."""
    folder = project.round_dir(round_id)
    if not is_locked(folder / "umap.lock"):
        return None
    return _read_json(folder / "umap.progress.json")


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
    """Forwards events to the caller and, at most twice a second, to a JSON
    file other processes poll. A failed write only loses that update."""

    def __init__(self, path: Path, progress: Progress | None):
        self.path, self.progress = path, progress
        self.last, self.phase = float("-inf"), None

    def __call__(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(info)
        now = time.monotonic()
        if now - self.last >= FILE_INTERVAL_S or info["done"] >= info["total"] or info["phase"] != self.phase:
            self.last, self.phase = now, info["phase"]
            try:
                _write_atomic(self.path, json.dumps({**info, "pid": os.getpid()}).encode())
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
    last: list[dict[str, Any]] = []

    def forward() -> None:
        info = _read_json(folder / "umap.progress.json")
        if progress is None or info is None:
            return
        event = {k: info[k] for k in ("phase", "done", "total", "elapsed_s") if k in info}
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
    with _exclusive(src.with_name(src.stem + ".umap.lock"), required=False) as locked:
        if locked and (xy := _read_file_cache(out, meta, key)) is not None:
            return xy  # the process we waited for made it
        xy = umap_2d(_load_latents(src), seed, progress)
        if locked:
            try:
                _save_atomic(out, xy)
                _write_atomic(meta, json.dumps({**key, "n": len(xy)}).encode())  # last: marks it complete
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
    saved = _read_json(meta)
    if saved is None or any(saved.get(k) != v for k, v in key.items()):
        return None
    try:
        xy = np.load(out)
    except (OSError, ValueError):
        return None
    return xy.astype(np.float32) if xy.shape == (saved.get("n"), 2) else None


# -- files and locks ----------------------------------------------------------

def _save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary name, then rename: readers see the old file or
    the whole new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def _exclusive(path: Path, while_waiting: Callable[[], None] | None = None,
               required: bool = True) -> Iterator[bool]:
    """An OS file lock (released by the kernel if the holder dies); yields
    whether it is held. Polls rather than blocks so a waiter can show the
    holder's progress. With required=False a lock file that cannot be
    created (read-only folder) yields False instead of raising."""
    try:
        fh = open(path, "a")
    except OSError:
        if required:
            raise
        yield False
        return
    with fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if while_waiting is not None:
                    while_waiting()
                time.sleep(WAIT_POLL_S)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- what the browser draws ---------------------------------------------------

def draw_subset(n: int, keep: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of the points to send to the browser, at most
    `max_points` of `n`: a plot of 100k markers makes the page unusable.

    Everything when n <= max_points. Otherwise every `keep` point (a bool
    mask of length n or an index array: the caller decides which points
    matter, e.g. labeled, queued, selected) plus a seeded uniform sample of
    the rest; if `keep` alone is too many, a seeded sample of it. The page
    says on screen that it draws a sample."""
    if n < 0 or max_points < 0:
        raise BadInput(f"draw_subset needs n >= 0 and max_points >= 0, got n={n}, max_points={max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    keep = np.asarray(keep)
    if keep.dtype == bool:
        if keep.shape != (n,):
            raise BadInput(f"keep mask has shape {keep.shape}, expected ({n},)")
        kept = np.flatnonzero(keep)
    else:
        kept = np.unique(keep.astype(np.int64).ravel())
        if len(kept) and (kept[0] < 0 or kept[-1] >= n):
            raise BadInput(f"keep indices must lie in [0, {n}), got {kept[0]}..{kept[-1]}")
    rng = np.random.default_rng(seed)
    if len(kept) >= max_points:
        return np.sort(rng.choice(kept, size=max_points, replace=False))
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), kept, assume_unique=True)
    extra = rng.choice(rest, size=max_points - len(kept), replace=False)
    return np.sort(np.concatenate([kept, extra]))
