"""Low-budget samplers: label typical, covering examples in a feature space
with class meaning (`features`: SimCLR on the project's images, k-means
patch features of them with `--fast`, or an ImageNet backbone).

With few labels a model learns most from examples that represent dense
regions of the data, one per region, rather than from the uncertain or
outlying ones uncertainty and coreset sampling prefer (Hacohen et al.,
"Active Learning on a Budget", ICML 2022; Yehuda et al., "Active Learning
Through a Covering Lens", NeurIPS 2022). Both pick the very first batch too
(no labels needed).
"""

from __future__ import annotations

import numpy as np

from vaal_core.samplers.registry import Context, register


def ordered_scores(picks: list[int], n: int, rest: np.ndarray | None = None) -> np.ndarray:
    """Scores that make `select`'s ranking follow the pick order: the i-th
    pick scores n_picks - i + 1 (> 1), everything else below 1 (`rest`, in
    [0, 1), orders the others, e.g. by typicality)."""
    scores = np.zeros(n) if rest is None else 0.999 * np.clip(rest, 0.0, 1.0)
    scores[np.asarray(picks, dtype=np.int64)] = 1.0 + np.arange(len(picks), 0, -1)
    return scores


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float32, clipped at 0."""
    a, b = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means cluster of every row (scikit-learn; mini-batch beyond 50
    clusters, as TypiClust's reference code does for speed)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = int(min(k, len(x)))
    seed = int(rng.integers(2**31 - 1))
    if k <= 50:
        km = KMeans(n_clusters=k, n_init=1, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=k, n_init=1, random_state=seed, batch_size=max(1024, 3 * k))
    return km.fit_predict(x.astype(np.float32))


def typicality(x: np.ndarray, k: int = 20) -> np.ndarray:
    """TypiClust's typicality: the inverse mean distance to the k nearest
    neighbours (within the rows given: one cluster)."""
    if len(x) < 2:
        return np.ones(len(x))
    k = min(k, len(x) - 1)
    out = np.empty(len(x))
    for start in range(0, len(x), 1024):  # memory: (1024, len(x)) floats
        d = np.sqrt(sq_dists(x[start:start + 1024], x))
        nearest = np.partition(d, k, axis=1)[:, 1:k + 1]  # column 0 of the partition is the point itself
        out[start:start + 1024] = 1.0 / (nearest.mean(1) + 1e-8)
    return out


@register("typiclust", needs=("features",), max_clusters=500, min_cluster_size=5, neighbors=20,
          description="TypiClust: the most typical image of each uncovered cluster of the feature space "
                      "(low budgets: picks the first batch too)")
def typiclust_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int,
                     max_clusters: int, min_cluster_size: int, neighbors: int) -> np.ndarray:
    """Hacohen et al. 2022: cluster every image (labeled or not) into
    labeled + budget clusters (at most `max_clusters`); then, `budget`
    times, take the largest cluster among those with the fewest labels and
    pick its most typical unlabeled image. Clusters smaller than
    `min_cluster_size` are skipped while larger ones remain (they are
    outliers, the opposite of typical)."""
    feats = ctx["features"]
    pool_rows, lab_rows = ctx.rows(pool_ids), ctx.rows(labeled_ids)
    rows = np.concatenate([lab_rows, pool_rows])
    x = feats[rows]
    k = min(len(labeled_ids) + budget, max_clusters, len(rows))
    cluster = kmeans_labels(x, k, ctx.rng)
    is_pool = np.r_[np.zeros(len(lab_rows), bool), np.ones(len(pool_rows), bool)]
    sizes = np.bincount(cluster, minlength=k)
    covered = np.bincount(cluster[~is_pool], minlength=k).astype(np.float64)
    typ = np.zeros(len(rows))
    for c in np.flatnonzero(sizes):
        members = np.flatnonzero(cluster == c)
        typ[members] = typicality(x[members], neighbors)
    free = is_pool.copy()
    picks = []
    for _ in range(budget):
        open_ = np.bincount(cluster[free], minlength=k) > 0
        big = open_ & (sizes >= min_cluster_size)
        usable = big if big.any() else open_
        # fewest labels first, then the largest cluster
        c = min(np.flatnonzero(usable), key=lambda c: (covered[c], -sizes[c]))
        members = np.flatnonzero((cluster == c) & free)
        best = members[np.argmax(typ[members])]
        picks.append(int(best) - len(lab_rows))
        free[best] = False
        covered[c] += 1
    ctx.notes["typiclust"] = {"clusters": int(k), "space": "features"}
    pool_typ = typ[len(lab_rows):]
    return ordered_scores(picks, len(pool_ids), pool_typ / (pool_typ.max() + 1e-12))


def purity_radius(x: np.ndarray, n_classes: int, rng: np.random.Generator, alpha: float = 0.95,
                  grid: np.ndarray | None = None) -> tuple[float, float]:
    """ProbCover's ball radius: the largest delta such that at least `alpha`
    of the balls are pure (hold only points of their centre's k-means
    cluster, k = the number of classes), i.e. the distance from a point to
    its nearest point of another cluster exceeds delta. Returns (delta,
    its purity)."""
    cluster = kmeans_labels(x, n_classes, rng)
    nearest_other = np.full(len(x), np.inf)
    for start in range(0, len(x), 1024):
        d = np.sqrt(sq_dists(x[start:start + 1024], x))
        same = cluster[start:start + 1024, None] == cluster[None, :]
        d[same] = np.inf
        nearest_other[start:start + 1024] = d.min(1)
    grid = np.linspace(0.05, 1.5, 30) if grid is None else grid
    purity = np.array([(nearest_other > delta).mean() for delta in grid])
    ok = np.flatnonzero(purity >= alpha)
    i = int(ok[-1]) if len(ok) else 0
    return float(grid[i]), float(purity[i])


@register("probcover", needs=("features",), alpha=0.95, clusters=None,
          description="ProbCover: greedy maximum coverage of the feature space by balls of a purity-chosen "
                      "radius (low budgets: picks the first batch too)")
def probcover_scores(ctx: Context, pool_ids: np.ndarray, labeled_ids: np.ndarray, budget: int,
                     alpha: float, clusters: int | None) -> np.ndarray:
    """Yehuda et al. 2022: with balls of radius delta around every image
    (delta the largest radius whose balls are `alpha`-pure), repeatedly
    pick the unlabeled image whose ball covers the most images no labeled
    or picked image covers yet. Once everything is covered, the rest of the
    batch is drawn at random (the reference code's rule). Purity is judged
    against a k-means with `clusters` clusters: the project's class count
    unless set (10 when unknown)."""
    feats = ctx["features"]
    pool_rows, lab_rows = ctx.rows(pool_ids), ctx.rows(labeled_ids)
    rows = np.concatenate([lab_rows, pool_rows])
    x = feats[rows].astype(np.float32)
    delta, purity = purity_radius(x, max(2, clusters or ctx.n_classes or 10), ctx.rng, alpha)
    # The graph: for each image, the images inside its ball (as sorted index lists).
    balls = []
    for start in range(0, len(x), 1024):
        within = sq_dists(x[start:start + 1024], x) < delta * delta
        balls.extend(np.flatnonzero(r) for r in within)
    covered = np.zeros(len(x), bool)
    for i in range(len(lab_rows)):
        covered[balls[i]] = True
    degree = np.array([(~covered[b]).sum() for b in balls], dtype=np.int64)
    # who covers whom, to update degrees when points become covered
    members = np.concatenate(balls)
    owners = np.repeat(np.arange(len(x)), [len(b) for b in balls])
    by_member = np.argsort(members, kind="stable")
    starts = np.searchsorted(members[by_member], np.arange(len(x) + 1))
    free = np.r_[np.zeros(len(lab_rows), bool), np.ones(len(pool_rows), bool)]
    picks: list[int] = []
    while len(picks) < budget:
        candidates = np.flatnonzero(free)
        top = degree[candidates].max()
        if top == 0:
            break
        # Ties at random: with a small radius most balls hold one uncovered point, and taking the first
        # of them would follow the pool's order (a folder sorted by class: measured, every pick one class).
        ties = candidates[degree[candidates] == top]
        best = int(ties[ctx.rng.integers(len(ties))])
        newly = balls[best][~covered[balls[best]]]
        covered[newly] = True
        for m in newly:  # every ball holding a newly covered point covers one fewer
            degree[owners[by_member[starts[m]:starts[m + 1]]]] -= 1
        picks.append(int(best) - len(lab_rows))
        free[best] = False
    ctx.notes["probcover"] = {"radius": round(delta, 4), "purity": round(purity, 4),
                              "coverage": round(float(covered.mean()), 4), "random_after": len(picks)}
    rest = ctx.rng.random(len(pool_ids))  # once all is covered, random order (the reference's rule)
    return ordered_scores(picks, len(pool_ids), rest)
