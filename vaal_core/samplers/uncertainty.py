"""Samplers that read the task classifier trained on the labels: its
uncertainty (entropy, margin, least confidence, BALD) and LL4AL's predicted
loss (Yoo & Kweon 2019)."""

from __future__ import annotations

import numpy as np

from vaal_core.samplers.registry import CLASSIFIER_COLD_START, Context, register


def _probs(ctx: Context, pool_ids: np.ndarray) -> np.ndarray:
    return ctx["task_probs"][ctx.rows(pool_ids)].astype(np.float64)


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis)


@register("entropy", needs=("task_probs",), **CLASSIFIER_COLD_START,
          description="uncertainty: highest entropy of the task model's predicted classes first")
def entropy_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    return _entropy(_probs(ctx, pool_ids))


@register("margin", needs=("task_probs",), **CLASSIFIER_COLD_START,
          description="uncertainty: smallest gap between the task model's two likeliest classes first")
def margin_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    top2 = np.sort(_probs(ctx, pool_ids), axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


@register("least_confidence", needs=("task_probs",), **CLASSIFIER_COLD_START,
          description="uncertainty: lowest top-class probability of the task model first")
def least_confidence_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray,
                            budget: int) -> np.ndarray:
    return 1.0 - _probs(ctx, pool_ids).max(axis=1)


@register("bald", needs=("task_mc",), **CLASSIFIER_COLD_START,
          description="BALD with MC dropout: most disagreement between dropout samples of the task model first")
def bald_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """Mutual information between the prediction and the weights (Houlsby
    et al. 2011; Gal et al. 2017): entropy of the mean prediction minus the
    mean entropy of the dropout samples."""
    mc = ctx["task_mc"][:, ctx.rows(pool_ids)].astype(np.float64)  # (T, P, C)
    return np.maximum(_entropy(mc.mean(0)) - _entropy(mc).mean(0), 0.0)


@register("ll4al", needs=("pred_loss",), **CLASSIFIER_COLD_START, subset=10_000,
          description="Learning Loss (Yoo & Kweon 2019): highest loss predicted by the task model's loss head first")
def ll4al_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int,
                 subset: int) -> np.ndarray:
    """As the paper, only a random subset of the pool (`subset`, 10,000 by
    default, never fewer than the budget) is ranked; the rest score below
    it, so the batch comes from the subset. This also spreads picks over the
    pool."""
    scores = ctx["pred_loss"][ctx.rows(pool_ids)].astype(np.float64)
    subset = int(subset)
    if len(scores) > max(subset, budget):
        keep = np.zeros(len(scores), dtype=bool)
        keep[ctx.rng.choice(len(scores), max(subset, budget), replace=False)] = True
        scores = np.where(keep, scores, scores[keep].min() - 1.0)
        ctx.notes["scored_subset"] = int(keep.sum())
    return scores
