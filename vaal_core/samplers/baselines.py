"""The baselines: random, and k-center greedy coverage of the VAE's latent
space (coreset, Sener & Savarese 2018)."""

from __future__ import annotations

import numpy as np

from vaal_core.samplers.registry import Context, register


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
    return kcenter_scores(ctx["latents"], ctx.rows(pool_ids), ctx.rows(labeled_ids), budget, ctx.rng)
