"""2-D maps of latent vectors: UMAP (umap-learn), with PCA for tiny sets.

UMAP is the slowest thing the UI asks for outside training (seconds to a
minute), so it reports progress (neighbours found, then layout epochs) and
can be cancelled from its progress callback; `maps.cache` computes each map
once and keeps it. umap-learn pulls in numba and compiles on first use, so
it is imported only inside `umap_2d`: importing this module stays cheap for
the CLI and the app.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from vaal_core.errors import BadInput
from vaal_core.progress import Phase, Progress, Steps

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


def umap_2d(latents: np.ndarray, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """(N, D) latents -> (N, 2) float32 UMAP coordinates, the same for the
    same seed (random_state makes umap-learn single-threaded: the price of a
    map that does not move between reloads).

    Fewer than MIN_UMAP_POINTS points get a PCA layout instead, so a new
    project's page still draws something. `progress` receives
    Events: phase NEIGHBORS (rows of the neighbour graph done, of N) then
    LAYOUT (epochs done, of n; it
    starts at 0 while umap-learn builds its graph and spectral start), at
    most 4 a second, always ending with layout done == total. An exception
    raised by `progress` cancels the projection: at once during NEIGHBORS,
    after the layout finishes during LAYOUT (umap-learn cannot be stopped
    mid-layout without leaving tqdm's global lock held)."""
    x = _check_latents(latents)
    report = _Reporter(progress)
    if len(x) < MIN_UMAP_POINTS:
        report(Phase.LAYOUT, 0, 1)
        xy = _pca_2d(x)
        report(Phase.LAYOUT, 1, 1)
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


def _run_umap(x: np.ndarray, seed: int, report: _Reporter) -> np.ndarray:
    n = len(x)
    report(Phase.NEIGHBORS, 0, n)  # before the import: loading numba alone can take seconds
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
        report(Phase.LAYOUT, 0, n_epochs)
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
    report(Phase.LAYOUT, n_epochs, n_epochs)
    xy = np.asarray(xy, dtype=np.float32)
    # umap marks points cut off from the neighbour graph with NaN; put them
    # at the centre of the map rather than hand the plot a NaN.
    lost = ~np.isfinite(xy).all(axis=1)
    if lost.any():
        xy[lost] = xy[~lost].mean(axis=0) if (~lost).any() else 0.0
    return xy


def _exact_knn(x: np.ndarray, k: int, report: _Reporter) -> tuple[np.ndarray, np.ndarray]:
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
        report(Phase.NEIGHBORS, stop, n)
    return indices, dists


class _Reporter:
    """report(phase, done, total): the phases' steps, throttled (the first
    and last event of a phase always go through, others at most every
    0.25 s); a layout that begins first finishes the neighbours phase."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.steps: Steps | None = None
        self.done = 0

    def __call__(self, phase: Phase, done: int, total: int) -> None:
        if self.progress is None:
            return
        current = self.steps
        if current is None or current.phase is not phase or current.total != total:
            if current is not None and current.phase is Phase.NEIGHBORS and self.done < current.total:
                current(current.total)
            self.steps = Steps(self.progress, phase, total, interval_s=CALLBACK_INTERVAL_S)
        self.done = done
        self.steps(done)


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
                self.report(Phase.LAYOUT, min(done, total - 1), total)
            except BaseException as err:  # noqa: BLE001 - see the class docstring
                self.error = err
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
