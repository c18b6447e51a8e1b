"""Why an image is in the queue: what its round's saved arrays say about it.

A round keeps the space it mapped (`loop/round_files.py` `save_space`):
`rounds/<id>/item_ids.npy`, `latents.npy` (rows aligned with the ids: the
VAE's latent means, or the feature space its sampler picked in, as the
round's metrics["map_space"] says) and, when a VAAL discriminator ranked
the pool, `disc_prob.npy` (its P(labeled) per item). The Label page's
"Why this image?" reads one image's row of them: the discriminator's
P(labeled), and the labeled images nearest to it in that space (the labels
as they are now: an image labeled since the round counts, one added since
has no row).

For VAAL's rounds, `recon.npy` and `recon_ids.npy` hold what the VAE's
decoder drew of each batch image (`reconstruction`): the card shows it
beside the image, so a user sees what the sampler's space kept of it.

NumPy only, memory-mapped reads: the app server calls this on every image
it shows, so it never loads the whole array nor PyTorch.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACES = {"vae": "the VAE's latent space", "features": "the feature space its sampler picked in"}


@dataclass(frozen=True)
class Why:
    disc_prob: float | None  # the round's discriminator's P(labeled) for the image; None without one
    space: str | None  # where `nearest` was measured, in words; None: the round kept no space
    nearest: tuple[tuple[int, float], ...]  # (labeled item id, Euclidean distance), nearest first


def _load(path: Path) -> np.ndarray | None:
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # absent, or written by a round that was killed half-way
        return None


def why(round_dir: Path, item_id: int, labeled_ids: Collection[int], map_space: str | None = None,
        k: int = 3) -> Why:
    """What round `round_dir` kept about `item_id`: its discriminator
    P(labeled) and its `k` nearest labeled images in the round's map space
    (`map_space`: the round's metrics["map_space"], "vae" or "features")."""
    round_dir = Path(round_dir)
    ids = _load(round_dir / "item_ids.npy")
    if ids is None:
        return Why(None, None, ())
    rows = np.flatnonzero(ids == item_id)
    if not len(rows):  # added after the round
        return Why(None, None, ())
    row = int(rows[0])
    probs = _load(round_dir / "disc_prob.npy")
    p = float(probs[row]) if probs is not None and len(probs) == len(ids) else None
    latents = _load(round_dir / "latents.npy")
    if latents is None or len(latents) != len(ids):
        return Why(p, None, ())
    others = np.flatnonzero(np.isin(ids, np.fromiter(labeled_ids, dtype=np.int64, count=len(labeled_ids))))
    others = others[others != row]
    if not len(others):
        return Why(p, SPACES.get(map_space or "", "the round's map space"), ())
    here = np.asarray(latents[row], dtype=np.float64)
    dist = np.sqrt(((np.asarray(latents[others], dtype=np.float64) - here) ** 2).sum(1))
    best = np.argsort(dist, kind="stable")[:k]
    nearest = tuple((int(ids[others[b]]), float(dist[b])) for b in best)
    return Why(p, SPACES.get(map_space or "", "the round's map space"), nearest)


def reconstruction(round_dir: Path, item_id: int) -> np.ndarray | None:
    """The round's VAE's reconstruction of `item_id` (S, S, 3) uint8, kept
    for the images of the round's batch (`loop/round_files.py`
    `save_reconstructions`); None for any other image or round."""
    ids = _load(Path(round_dir) / "recon_ids.npy")
    images = _load(Path(round_dir) / "recon.npy")
    if ids is None or images is None or len(ids) != len(images):
        return None
    rows = np.flatnonzero(ids == item_id)
    return np.array(images[int(rows[0])]) if len(rows) else None
