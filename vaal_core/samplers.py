"""The sampler registry: name -> strategy.

A sampler only scores the candidate pool (higher = label sooner); one shared
selector ranks, breaks ties with the seed and cuts the batch. Samplers declare
what they need computed for them (`needs`): "latents" (a trained VAE's latent
means), "disc" (VAAL's discriminator, conditioned on "pred_loss" when both are
needed: TA-VAAL), and the task model's outputs: "task_probs" (softmax),
"task_mc" (MC-dropout samples) and "pred_loss" (the LL4AL head's predicted
loss). The round runner and the simulation train only what the chosen sampler
uses, and new samplers plug in without touching the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vaal_core.errors import BadInput, BudgetTooLarge, UnknownSampler


@dataclass
class Context:
    """What a sampler may read. Arrays are aligned with `item_ids` (every
    present item, labeled or not); look rows up with `rows(ids)`."""

    item_ids: np.ndarray
    rng: np.random.Generator
    latents: np.ndarray | None = None  # (N, Z) VAE latent means, eval mode
    disc_prob: np.ndarray | None = None  # (N,) discriminator P(labeled)
    extras: dict[str, Any] = field(default_factory=dict)  # outputs of later task models
    notes: dict[str, Any] = field(default_factory=dict)  # what a sampler did, saved with the round

    def rows(self, ids: np.ndarray) -> np.ndarray:
        index = {int(i): r for r, i in enumerate(self.item_ids)}
        return np.fromiter((index[int(i)] for i in ids), dtype=np.int64, count=len(ids))

    def require(self, name: str) -> np.ndarray:
        """A computed input by need name ("latents", "disc_prob" or an extra)."""
        value = getattr(self, name, None) if name in ("latents", "disc_prob") else self.extras.get(name)
        if value is None:
            raise RuntimeError(f"sampler needs {name!r} but the round runner did not compute it")
        return value


# Needs that a task model trained on the labeled set provides.
TASK_NEEDS = frozenset({"task_probs", "task_mc", "pred_loss"})

ScoreFn = Callable[[Context, np.ndarray, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Sampler:
    name: str
    score: ScoreFn
    needs: frozenset[str]
    description: str


REGISTRY: dict[str, Sampler] = {}


def register(name: str, needs: tuple[str, ...] = (), description: str = "") -> Callable[[ScoreFn], ScoreFn]:
    def wrap(fn: ScoreFn) -> ScoreFn:
        if name in REGISTRY:
            raise ValueError(f"sampler {name!r} is registered twice")
        REGISTRY[name] = Sampler(name, fn, frozenset(needs), description or (fn.__doc__ or "").strip())
        return fn
    return wrap


def get(name: str) -> Sampler:
    if name not in REGISTRY:
        raise UnknownSampler(f"unknown sampler {name!r}; choose one of: {', '.join(names())}")
    return REGISTRY[name]


def names() -> list[str]:
    return sorted(REGISTRY)


@dataclass(frozen=True)
class Selection:
    ids: np.ndarray  # the batch, best first
    pool_ids: np.ndarray  # every candidate
    scores: np.ndarray  # aligned with pool_ids
    ranks: np.ndarray  # aligned with pool_ids: 1..budget for the batch, 0 otherwise


def rank(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of `scores` from highest to lowest; equal scores are ordered
    by a seeded random key, so ties never favour ingest order."""
    tiebreak = rng.random(len(scores))
    return np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))


def select(name: str, ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> Selection:
    """Score the pool with sampler `name` and take the best `budget` items."""
    sampler = get(name)
    pool_ids = np.asarray(pool_ids, dtype=np.int64)
    labeled_ids = np.asarray(labeled_ids, dtype=np.int64)
    check_budget(budget, len(pool_ids))
    scores = np.asarray(sampler.score(ctx, pool_ids, labeled_ids, budget), dtype=np.float64)
    if scores.shape != pool_ids.shape or not np.all(np.isfinite(scores)):
        raise RuntimeError(f"sampler {name!r} returned {scores.shape} scores (finite: "
                           f"{bool(np.all(np.isfinite(scores)))}) for {len(pool_ids)} candidates")
    order = rank(scores, ctx.rng)[:budget]
    ranks = np.zeros(len(pool_ids), dtype=np.int64)
    ranks[order] = np.arange(1, budget + 1)
    return Selection(ids=pool_ids[order], pool_ids=pool_ids, scores=scores, ranks=ranks)


def check_budget(budget: int, pool_size: int) -> None:
    if budget < 1:
        raise BadInput(f"budget must be at least 1, got {budget}")
    if budget > pool_size:
        raise BudgetTooLarge(f"budget {budget} is larger than the unlabeled pool ({pool_size} items); "
                             f"use --budget {pool_size} or less")


# -- strategies -----------------------------------------------------------

@register("random", description="uniform random sample of the unlabeled pool (the baseline to beat)")
def random_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    return ctx.rng.random(len(pool_ids))


def kcenter_scores(latents: np.ndarray, pool_rows: np.ndarray, center_rows: np.ndarray, budget: int,
                   rng: np.random.Generator) -> np.ndarray:
    """k-center greedy (Sener & Savarese 2018): repeatedly pick the pool point
    farthest from every center so far. Scores of the picks are their distance
    when picked (non-increasing, so rank order = pick order); every other
    candidate scores strictly below the last pick."""
    pool = latents[pool_rows].astype(np.float64)
    dist = np.full(len(pool), np.inf)
    pool_sq = (pool ** 2).sum(1)
    centers = latents[center_rows].astype(np.float64)
    for start in range(0, len(centers), 256):  # memory stays at (pool, 256) floats
        block = centers[start:start + 256]
        d2 = pool_sq[:, None] + (block ** 2).sum(1)[None, :] - 2.0 * pool @ block.T
        dist = np.minimum(dist, np.sqrt(np.maximum(d2, 0.0)).min(1))
    scores = np.empty(len(pool))
    picked = np.zeros(len(pool), dtype=bool)
    for k in range(budget):
        # cold start: the first pick is a seeded random point
        i = int(rng.integers(len(pool))) if not np.isfinite(dist).any() else int(np.argmax(np.where(picked, -1, dist)))
        scores[i] = dist[i]
        picked[i] = True
        dist = np.minimum(dist, np.sqrt(((pool - pool[i]) ** 2).sum(1)))
        if not np.isfinite(scores[i]):  # a cold-start first pick: just above every later one
            scores[i] = np.nextafter(dist.max(), np.inf)
    last = scores[picked].min()
    rest = np.minimum(dist[~picked], np.nextafter(last, -np.inf))
    scores[~picked] = rest
    return scores


@register("coreset", needs=("latents",),
          description="k-center greedy on the VAE latent means: covers the latent space")
def coreset_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    latents = ctx.require("latents")
    return kcenter_scores(latents, ctx.rows(pool_ids), ctx.rows(labeled_ids), budget, ctx.rng)


@register("vaal", needs=("latents", "disc"),
          description="VAAL: items the discriminator is surest are unlabeled first")
def vaal_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    if len(labeled_ids) == 0:
        # Cold start: with nothing labeled there is nothing to tell apart, so
        # VAAL's first batch covers the latent space instead (k-center greedy).
        ctx.notes["cold_start"] = "k-center greedy on VAE latents (no labeled items yet)"
        return coreset_scores(ctx, pool_ids, labeled_ids, budget)
    return 1.0 - ctx.require("disc_prob")[ctx.rows(pool_ids)]


# -- task-aware strategies: the task model trained on the labeled set -----------

def _probs(ctx: Context, pool_ids: np.ndarray) -> np.ndarray:
    return ctx.require("task_probs")[ctx.rows(pool_ids)].astype(np.float64)


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis)


@register("entropy", needs=("task_probs",),
          description="uncertainty: highest entropy of the task model's predicted classes first")
def entropy_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    return _entropy(_probs(ctx, pool_ids))


@register("margin", needs=("task_probs",),
          description="uncertainty: smallest gap between the task model's two likeliest classes first")
def margin_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    top2 = np.sort(_probs(ctx, pool_ids), axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


@register("least_confidence", needs=("task_probs",),
          description="uncertainty: lowest top-class probability of the task model first")
def least_confidence_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray,
                            budget: int) -> np.ndarray:
    return 1.0 - _probs(ctx, pool_ids).max(axis=1)


@register("bald", needs=("task_mc",),
          description="BALD with MC dropout: most disagreement between dropout samples of the task model first")
def bald_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """Mutual information between the prediction and the weights (Houlsby
    et al. 2011; Gal et al. 2017): entropy of the mean prediction minus the
    mean entropy of the dropout samples."""
    mc = ctx.require("task_mc")[:, ctx.rows(pool_ids)].astype(np.float64)  # (T, P, C)
    return np.maximum(_entropy(mc.mean(0)) - _entropy(mc).mean(0), 0.0)


@register("ll4al", needs=("pred_loss",),
          description="Learning Loss (Yoo & Kweon 2019): highest loss predicted by the task model's loss head first")
def ll4al_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """As the paper, only a random subset of the pool (10,000 by default,
    never fewer than the budget) is ranked; the rest score below it, so the
    batch comes from the subset. This also spreads picks over the pool."""
    scores = ctx.require("pred_loss")[ctx.rows(pool_ids)].astype(np.float64)
    subset = int(ctx.extras.get("ll4al_subset", 10_000))
    if len(scores) > max(subset, budget):
        keep = np.zeros(len(scores), dtype=bool)
        keep[ctx.rng.choice(len(scores), max(subset, budget), replace=False)] = True
        scores = np.where(keep, scores, scores[keep].min() - 1.0)
        ctx.notes["scored_subset"] = int(keep.sum())
    return scores


@register("ta_vaal", needs=("latents", "disc", "pred_loss"),
          description="TA-VAAL (Kim et al. 2021): VAAL whose VAE and discriminator see the predicted task loss")
def ta_vaal_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """The discriminator was trained on [mu, r] (r = the loss head's
    prediction), so it already folds in the task's view: select as VAAL,
    items it is surest are unlabeled first."""
    return 1.0 - ctx.require("disc_prob")[ctx.rows(pool_ids)]
