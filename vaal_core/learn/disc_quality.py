"""Is VAAL's ranking worth anything? Figures of the discriminator that ranks
the pool, and the plain sentence the pages show.

VAAL ranks the unlabeled pool by a discriminator's P(labeled), lowest
first (`vaal.fit_ranker`: the mean of a few small discriminators fit to the
final VAE's frozen latent means after the game). That order means something
only if the discriminator tells labeled from unlabeled latents at all, and
if it is a property of the data and the labels rather than of one training
seed. Measured every round that ranks with one (`pipeline._vaal_game`),
under the round's metrics key "discriminator":

- `auc`: ROC AUC of the ranking P(labeled), labeled vs unlabeled items of
  the round. These are the items it learnt from, so this is an in-sample
  figure, and it is the one judged: it says whether the discriminator
  learnt anything at all (a coin toss, loss 2 ln 2, gives 0.5). Telling
  apart the labeled images it has seen is how VAAL ranks: an unlabeled
  image unlike every labeled one gets a low P(labeled) and comes first.
- `heldout_auc`: the same AUC with each item scored by the member that
  never learnt from it (out of fold). When the labels are a random sample
  of the folder it stays near 0.5 however good the discriminator is
  (nothing tells a random labeled image from an unlabeled one but having
  seen it), so it is reported, not judged: above 0.5 it says the labeled
  set differs from the pool in kind (earlier picks covered some region of
  the latent space, or missed one).
- `top_overlap`: the stability of the queue. Retraining the VAE for a
  second seed would double the round; instead a twin ranking is fit the
  same way on the same frozen latents with another seed (other member
  seeds, other folds), and we count the share of the ranking's top-k
  unlabeled items that are also in the twin's top-k. k is 5% of the pool
  (`TOP_FRACTION`: the default budget's share; the producer does not know
  the round's budget), so two random orders share `overlap_by_chance` =
  k / pool on average. It leaves out the VAE's own seed, so it is an upper
  bound of the whole round's stability: retraining whole `--fast` rounds
  with a second seed (CIFAR-10) gave overlaps below it, by about a third
  for warm-started rounds and more for a first round, whose VAE starts
  from scratch and whose latent space depends on its seed.
- `game_auc`: the game's own discriminator, for the record (it ends near
  0.5: see `vaal.fit_ranker`).

`near_chance`: AUC below NEAR_CHANCE_AUC (0.6), or an overlap below
MIN_OVERLAP_RATIO (2) times chance. Either way the queue is close to a
random order, and the pages say so. Everything here is NumPy: the app
server imports this module to word the verdict, and never loads PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NEAR_CHANCE_AUC = 0.6  # below: it cannot tell labeled from unlabeled
MIN_OVERLAP_RATIO = 2.0  # below this many times chance: two seeds disagree on the top batch
TOP_FRACTION = 0.05  # the top batch compared between seeds: 5% of the pool


def auc(prob: np.ndarray, labeled: np.ndarray) -> float | None:
    """ROC AUC of P(labeled) for telling labeled (positive) from unlabeled
    items; None when one side is empty. Computed as the Mann-Whitney U
    statistic (ties count one half), which is the same number as
    sklearn.metrics.roc_auc_score (the tests check it) without importing
    scikit-learn into every round's process (about a second)."""
    labeled = np.asarray(labeled, dtype=bool)
    n_pos = int(labeled.sum())
    n_neg = len(labeled) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(np.asarray(prob, dtype=np.float64))
    return float((ranks[labeled].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first position of each run of equal values
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # the mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores (ties: the lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]


def top_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of a's top-k items that are also in b's top-k (1: the same
    batch; two random orders share k / len(a) on average)."""
    k = min(k, len(a))
    if k <= 0:
        return 0.0
    return len(set(top_k(a, k).tolist()) & set(top_k(b, k).tolist())) / k


def batch_size(pool: int, fraction: float = TOP_FRACTION) -> int:
    """The top batch compared between seeds: `fraction` of the pool, at least 1."""
    return max(1, min(pool, math.ceil(fraction * pool)))


def folds(labeled: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each item's fold, 0..k-1, dealt at random within the labeled and
    within the unlabeled items (so every fold holds both in proportion); a
    side with fewer than k items gets -1 (held out of no fold: a member
    without one of them might have none of its side to learn from)."""
    labeled = np.asarray(labeled, dtype=bool)
    rng = np.random.default_rng(seed)
    out = np.full(len(labeled), -1, dtype=np.int64)
    for side in (np.flatnonzero(labeled), np.flatnonzero(~labeled)):
        if len(side) >= k:
            out[rng.permutation(side)] = np.arange(len(side)) % k
    return out


def summarise(prob: np.ndarray, labeled: np.ndarray, twin_prob: np.ndarray | None = None,
              heldout_prob: np.ndarray | None = None, game_prob: np.ndarray | None = None,
              **extra: Any) -> dict[str, Any]:
    """The figures of one round's ranking from P(labeled) arrays aligned
    with the round's items: the ranking's, its twin's (the same fit with
    another seed), the held-out ones (each item's from a model that never
    learnt from it; NaN where there is none) and the game discriminator's.
    The unlabeled items are ranked as VAAL ranks them (lowest P(labeled)
    first). `extra` is recorded as given."""
    labeled = np.asarray(labeled, dtype=bool)
    pool = np.flatnonzero(~labeled)
    k = batch_size(len(pool))
    overlap = None
    if twin_prob is not None and len(pool):
        overlap = top_overlap(1.0 - np.asarray(prob, np.float64)[pool],
                              1.0 - np.asarray(twin_prob, np.float64)[pool], k)
    held = None
    if heldout_prob is not None:
        heldout_prob = np.asarray(heldout_prob, dtype=np.float64)
        known = np.isfinite(heldout_prob)
        held = auc(heldout_prob[known], labeled[known])
    out = {"auc": _round(auc(prob, labeled)), "heldout_auc": _round(held), "top_overlap": _round(overlap),
           "overlap_by_chance": _round(k / len(pool)) if len(pool) else None, "top_k": int(k),
           "pool": int(len(pool)), "n_labeled": int(labeled.sum()),
           "game_auc": _round(auc(game_prob, labeled)) if game_prob is not None else None, **extra}
    out["near_chance"] = near_chance(out)
    out["verdict"] = verdict(out)
    return out


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def overlap_ratio(d: dict[str, Any]) -> float | None:
    """The top-batch overlap in multiples of what chance gives."""
    if d.get("top_overlap") is None or not d.get("overlap_by_chance"):
        return None
    return d["top_overlap"] / d["overlap_by_chance"]


def near_chance(d: dict[str, Any]) -> bool:
    """AUC below NEAR_CHANCE_AUC, or the top batches of two seeds sharing
    less than MIN_OVERLAP_RATIO times what chance gives."""
    ratio = overlap_ratio(d)
    return bool((d.get("auc") is not None and d["auc"] < NEAR_CHANCE_AUC)
                or (ratio is not None and ratio < MIN_OVERLAP_RATIO))


def figures(d: dict[str, Any]) -> str:
    """'AUC 0.52; two discriminator seeds share 9% of their top 450, 1.8x chance'."""
    parts, ratio = [], overlap_ratio(d)
    if d.get("auc") is not None:
        parts.append(f"AUC {d['auc']:.2f}")
    if ratio is not None:
        parts.append(f"two discriminator seeds share {d['top_overlap']:.0%} of their top {d['top_k']:,}, "
                     f"{ratio:.1f}x chance")
    return "; ".join(parts)


def verdict(d: dict[str, Any]) -> str:
    """One or two plain sentences with the figures: is the queue more than
    a random order?"""
    said = figures(d)
    ratio = overlap_ratio(d)
    if d.get("auc") is not None and d["auc"] < NEAR_CHANCE_AUC:
        return (f"The discriminator cannot tell labeled from unlabeled images yet ({said}): "
                "this queue is close to random order.")
    if ratio is not None and ratio < MIN_OVERLAP_RATIO:
        return (f"The discriminator tells labeled from unlabeled images, but its ranking changes with the "
                f"training seed ({said}): this queue is close to random order.")
    return (f"The discriminator tells labeled from unlabeled images ({said}): the queue puts first the "
            "images least like the labeled ones.")


def of_round(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The discriminator figures a round recorded (VAAL's or TA-VAAL's), or
    None for a round that ranked with no discriminator."""
    d = (metrics or {}).get("discriminator")
    return d if isinstance(d, dict) and d.get("verdict") else None
