"""Batch-aware samplers: pick a batch that is informative *and* diverse,
where ranking items one by one takes near-duplicates of the best item.

badge (Ash et al. 2020) runs k-means++ seeding on the task model's gradient
embeddings; vaal_diverse clusters VAAL's top candidates in the latent space
and takes the best of each cluster. Both return scores in pick order (first
pick highest, strictly decreasing, every other item below the last pick), so
the registry's `select` ranks the batch exactly as it was picked.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager

import numpy as np

from vaal_core.errors import BadInput
from vaal_core.samplers.baselines import coreset_scores
from vaal_core.samplers.registry import CLASSIFIER_COLD_START, Context, UndeclaredNeed, rank, register

# Pool rows per block: temporaries stay at BLOCK x D floats (norms) or
# BLOCK x centres (distances), whatever the pool size.
BLOCK = 8192


def one_thread() -> AbstractContextManager:
    """BLAS and OpenMP on one thread for the loops below. Their products are
    small (one matrix-vector product per pick, k-means on a few thousand
    points): threads cost more to wake than they save, and on shared cores
    each wake-up can wait a scheduler tick: measured on 2 busy cores, badge
    on 10,000 items took 2.4 s with OpenBLAS's threads and 0.08 s without."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def pick_order_scores(n: int, picks: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Scores for `n` candidates whose batch is `picks`, in pick order: the
    picks score len(picks), ..., 1 (strictly decreasing, so rank order = pick
    order); every other candidate keeps the order of `rest` (its own score)
    scaled into [0, 0.5], strictly below the last pick."""
    picks = np.asarray(picks, dtype=np.int64)
    scores = np.zeros(n)
    others = np.ones(n, dtype=bool)
    others[picks] = False
    r = np.asarray(rest, dtype=np.float64)[others]
    if len(r) and np.ptp(r) > 0:
        scores[others] = 0.5 * (r - r.min()) / np.ptp(r)
    scores[picks] = np.arange(len(picks), 0, -1, dtype=np.float64)
    return scores


# -- BADGE ------------------------------------------------------------------

def _task_outputs(ctx: Context, pool_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pool's softmax (P, C) and penultimate features (P, D), with a
    message that says why they can be missing (no task model yet)."""
    try:
        probs, embed = ctx["task_probs"], ctx["task_embed"]
    except UndeclaredNeed:
        raise
    except RuntimeError as err:
        raise RuntimeError("badge needs the task model's softmax and penultimate features (task_probs, "
                           "task_embed), and there is no task model this round: label items of at least two "
                           "classes first, or start with a sampler that needs no labels (coreset, vaal)") from err
    rows = ctx.rows(pool_ids)
    h = np.asarray(embed[rows])
    if h.dtype not in (np.float32, np.float64):
        h = h.astype(np.float64)
    return np.asarray(probs[rows], dtype=np.float64), h


def gradient_factors(probs: np.ndarray, embed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two factors of BADGE's gradient embedding g_i = a_i (x) h_i, and
    ||g_i||^2, without forming g (P x C*D floats: 1 GB for 50,000 x 10 x 256).

    a_i = p_i - onehot(argmax p_i) is the gradient of the cross-entropy with
    respect to the logits when the model's own guess is taken as the label
    (the sign does not matter for distances); h_i is what the last layer
    reads. ||g_i|| = ||a_i|| ||h_i||: small when the model is sure (a ~ 0),
    large when it is unsure about an item its last layer reads strongly."""
    a = np.array(probs, dtype=np.float64)
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    h_sq = np.empty(len(embed))
    for start in range(0, len(embed), BLOCK):  # float64 sums without a float64 copy of the whole pool
        block = np.asarray(embed[start:start + BLOCK], dtype=np.float64)
        h_sq[start:start + BLOCK] = np.einsum("ij,ij->i", block, block)
    return a, embed, (a ** 2).sum(1) * h_sq


def gradient_sq_dists(a: np.ndarray, h: np.ndarray, sq_norms: np.ndarray, centres: np.ndarray,
                      block: int = BLOCK) -> np.ndarray:
    """(P, len(centres)) squared distances ||g_i - g_c||^2 between gradient
    embeddings, from the factors: <g_i, g_c> = <a_i, a_c> <h_i, h_c> (the
    inner product of two outer products is the product of the inner
    products), so each block costs P x (C + D) work and memory, not C x D."""
    centres = np.asarray(centres, dtype=np.int64)
    a_c, h_c, sq_c = a[centres], h[centres], sq_norms[centres]
    out = np.empty((len(a), len(centres)))
    for start in range(0, len(a), block):
        part = slice(start, start + block)
        cross = (a[part] @ a_c.T) * (h[part] @ h_c.T)
        out[part] = sq_norms[part, None] + sq_c[None, :] - 2.0 * cross
    return np.maximum(out, 0.0)  # rounding can take a duplicate's distance just below zero


def kmeanspp_picks(a: np.ndarray, h: np.ndarray, sq_norms: np.ndarray, budget: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """k-means++ seeding on the gradient embeddings, as BADGE's reference
    code: the first centre is the largest gradient (the item the model would
    learn most from), each next one is drawn with probability proportional to
    its squared distance to the nearest centre so far (D^2 sampling), which
    favours large gradients that point somewhere new. Returns the picks in
    pick order, and how many were not drawn because every item left sits on a
    centre (the reference code stops there; we take the largest gradients
    left)."""
    n = len(a)
    picked = np.zeros(n, dtype=bool)
    picks = [int(rank(sq_norms, rng)[0])]  # largest norm; ties broken by the seed, not ingest order
    picked[picks[0]] = True
    d2 = gradient_sq_dists(a, h, sq_norms, picks[:1])[:, 0]
    fallback = 0
    while len(picks) < budget:
        d2[picked] = 0.0
        cum = np.cumsum(d2)
        if cum[-1] > 0:
            # the first index whose cumulative mass exceeds a uniform draw
            i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), n - 1)
            if picked[i]:  # only when rounding lands the draw on the very end
                i = int(np.flatnonzero(d2 > 0)[-1])
        else:
            left = np.flatnonzero(~picked)
            i = int(left[rank(sq_norms[left], rng)[0]])
            fallback += 1
        picks.append(i)
        picked[i] = True
        d2 = np.minimum(d2, gradient_sq_dists(a, h, sq_norms, [i])[:, 0])
    return np.asarray(picks, dtype=np.int64), fallback


@register("badge", needs=("task_probs", "task_embed"), **CLASSIFIER_COLD_START,
          description="BADGE (Ash et al. 2020): k-means++ on the task model's gradient embeddings: "
                      "uncertain and diverse")
def badge_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int) -> np.ndarray:
    """Uncertainty and diversity in one space: an item's gradient embedding
    is long when the model is unsure of it, and two items whose gradients
    point the same way would teach the model the same thing, so seeding
    k-means++ there picks unsure items that differ. The pipeline calls it
    only when a task model exists (labels of two classes or more)."""
    probs, embed = _task_outputs(ctx, pool_ids)
    a, h, sq = gradient_factors(probs, embed)
    with one_thread():
        picks, fallback = kmeanspp_picks(a, h, sq, budget, ctx.rng)
    norms = np.sqrt(sq)
    ctx.notes["badge"] = {"method": "k-means++ seeding on gradient embeddings, first pick the largest gradient",
                          "embedding_dim": int(a.shape[1] * h.shape[1]),
                          "batch_mean_grad_norm": round(float(norms[picks].mean()), 6),
                          "pool_mean_grad_norm": round(float(norms.mean()), 6),
                          "picked_without_d2": fallback}
    return pick_order_scores(len(pool_ids), picks, norms)


# -- VAAL with a diverse batch ----------------------------------------------

def _cluster(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means labels of `points` (one run, seeded from the round's
    generator). Fewer distinct points than k leaves clusters empty; the
    caller fills the batch, so scikit-learn's warning about it is noise."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2 ** 31 - 1)))
        return km.fit(np.asarray(points, dtype=np.float64)).labels_


def best_per_cluster(labels: np.ndarray, budget: int) -> np.ndarray:
    """Positions (into candidates ordered best first) of each cluster's best
    candidate, topped up with the best candidates left when fewer than
    `budget` clusters are non-empty; sorted, i.e. best first."""
    _, first = np.unique(labels, return_index=True)
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[first] = True
    short = budget - int(chosen.sum())
    if short > 0:
        chosen[np.flatnonzero(~chosen)[:short]] = True
    return np.flatnonzero(chosen)


@register("vaal_diverse", needs=("latents", "disc_prob"), candidates=10, cold_start="typiclust",
          description="VAAL with a diverse batch: its top candidates clustered in the latent space, "
                      "the best of each cluster")
def vaal_diverse_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int,
                        candidates: int) -> np.ndarray:
    """VAAL ranks items one at a time, and the discriminator's surest
    'unlabeled' items are often one region of the latent space it has not
    seen labeled (near-duplicates), so its top-k batch can be a single clump.
    As diverse mini-batch active learning (Zhdanov 2019): keep VAAL's signal
    by considering only its top `candidates` x budget items, cluster them into
    `budget` groups in the latent space (k-means), and take each group's
    highest-scoring item; the batch is ordered by VAAL score. `candidates`
    trades informativeness (1 = plain VAAL) for spread."""
    if int(candidates) < 1:
        raise BadInput(f"vaal_diverse's candidates must be at least 1 (1 = plain VAAL), got {candidates}")
    if len(labeled_ids) == 0:
        # Called with no labels without resolving first (a round resolves to
        # typiclust): no discriminator, so the batch covers the latent space.
        ctx.notes["cold_start"] = "k-center greedy on VAE latents (no labeled items yet)"
        return coreset_scores(ctx, pool_ids, labeled_ids, budget)
    vaal = 1.0 - np.asarray(ctx["disc_prob"][ctx.rows(pool_ids)], dtype=np.float64)
    top = rank(vaal, ctx.rng)[:min(int(candidates) * budget, len(pool_ids))]  # best first, seeded ties
    if len(top) > budget:
        labels = _cluster(ctx["latents"][ctx.rows(pool_ids[top])], budget, ctx.rng)
    else:  # as many candidates as picks: each is its own cluster
        labels = np.arange(len(top))
    picks = top[best_per_cluster(labels, budget)]
    ctx.notes["vaal_diverse"] = {"candidates": int(len(top)), "clusters": int(budget),
                                 "clusters_filled": int(len(np.unique(labels))),
                                 "picks_beyond_vaal_top": int(np.sum(~np.isin(picks, top[:budget])))}
    return pick_order_scores(len(pool_ids), picks, vaal)
