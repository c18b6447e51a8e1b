"""The simulation's data: the class of each image from its folder, and the
split of the folder into a pool and a test set (an optional stratified
subset first), both seeded with 0 so every seed and sampler of a
simulation sees the same ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaal_core.errors import BadImageFolder, BadInput, BudgetTooLarge

if TYPE_CHECKING:
    from vaal_core.loop.simulate import SimConfig


def class_names(golds: list[str | None], image_root: Path) -> tuple[list[str], int]:
    """Sorted class names among the files in class folders, and the number of
    images at the root (no class folder: ignored)."""
    at_root = sum(g is None for g in golds)
    classes = sorted({g for g in golds if g is not None})
    if not golds:
        raise BadImageFolder(f"no image files (jpg, jpeg, png, bmp, gif, webp, tif, tiff) in {image_root}")
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise BadImageFolder(f"{image_root} has {found}; simulation needs at least 2 class subfolders "
                             f"(one per class, images inside)")
    return classes, at_root


def stratified(rows: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` of `rows`, each class in proportion to its count (largest
    remainder), random within a class. Sorted."""
    classes, counts = np.unique(y, return_counts=True)
    exact = k * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[:k - quota.sum()]] += 1
    picks = [rng.permutation(rows[y == c])[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def split_rows(y: np.ndarray, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, test rows) of the rows with a class (y >= 0): an optional
    stratified subset, then a stratified test split, both seeded with 0 so
    they are the same for every seed and sampler. Checks the sizes."""
    rows = np.flatnonzero(y >= 0)
    if cfg.subset is not None:
        if cfg.subset > len(rows):
            raise BadInput(f"--subset {cfg.subset} is larger than the {len(rows):,} usable images in class "
                           f"folders; use --subset {len(rows)} or less")
        rows = stratified(rows, y[rows], cfg.subset, np.random.default_rng(0))
    n_test = int(round(cfg.test_fraction * len(rows)))
    if n_test < 1:
        raise BadInput(f"a test fraction of {cfg.test_fraction} of {len(rows)} images leaves no test images; "
                       "use more images or a larger --test-fraction")
    test = stratified(rows, y[rows], n_test, np.random.default_rng(0))
    pool = np.setdiff1d(rows, test)
    need = cfg.init + cfg.budget * cfg.rounds
    if need > len(pool):
        raise BudgetTooLarge(f"--init {cfg.init} + --budget {cfg.budget} x --rounds {cfg.rounds} = {need:,} labels "
                             f"is more than the pool of {len(pool):,} images ({len(test):,} held out for test); "
                             f"lower --init, --budget or --rounds")
    return pool, test


def class_targets(golds: list[str | None], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, -1) if g is not None else -1 for g in golds], dtype=np.int64)
