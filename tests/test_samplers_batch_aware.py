"""Planted-answer tests for the batch-aware samplers (badge, vaal_diverse):
pools built so that the right batch is known, and so that a sampler ranking
items one by one (top gradient norm, plain VAAL) gets a different one. The
shared contract (sizes, seeds, budgets, declared needs) is in
test_samplers.py, which runs every registered sampler."""

from __future__ import annotations

import json
import tracemalloc
import warnings

import numpy as np
import pytest

from vaal_core import cli, samplers
from vaal_core.errors import BadInput
from vaal_core.samplers.batch_aware import gradient_factors, gradient_sq_dists, kmeanspp_picks


def _badge(probs, embed, budget, seed=0):
    ids = np.arange(len(probs))
    return samplers.select("badge", ids, {"task_probs": probs, "task_embed": embed}, ids, ids[:0], budget,
                           np.random.default_rng(seed))


def _spread_pool(n=200, c=4, d=16, seed=0):
    """Uncertain predictions on features pointing every which way."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, 2.0), size=n), rng.normal(size=(n, d)).astype(np.float32)


def _assert_pick_order_scores(sel, picks):
    """The batch is `picks` in pick order: strictly decreasing scores, and
    every other candidate strictly below the last pick."""
    assert sel.ids.tolist() == list(picks)
    picked = sel.scores[np.asarray(picks)]
    assert np.all(np.diff(picked) < 0)
    assert sel.scores[sel.ranks == 0].max() < picked.min()
    assert sel.ranks[np.asarray(picks)].tolist() == list(range(1, len(picks) + 1))


# -- badge --------------------------------------------------------------------

def test_badge_distances_equal_the_explicit_gradient_embedding():
    rng = np.random.default_rng(1)
    probs, embed = rng.dirichlet(np.ones(4), size=23), rng.normal(size=(23, 5))
    explicit = (probs - np.eye(4)[probs.argmax(1)])[:, :, None] * embed[:, None, :]  # (N, C, D)
    g = explicit.reshape(23, -1)
    want = ((g[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    a, h, sq = gradient_factors(probs, embed)
    np.testing.assert_allclose(sq, (g ** 2).sum(1), rtol=1e-12)
    got = gradient_sq_dists(a, h, sq, np.arange(23), block=7)  # blocks that do not divide the pool
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # float32 features (what the task model gives) are used as they are, not copied to float64
    a32, h32, sq32 = gradient_factors(probs, embed.astype(np.float32))
    assert h32.dtype == np.float32
    np.testing.assert_allclose(gradient_sq_dists(a32, h32, sq32, np.arange(23)), want, rtol=1e-4, atol=1e-5)


def test_badge_spends_at_most_one_pick_on_confident_items():
    """Sure predictions have gradients near zero, so for k-means++ they are
    one tight cluster at the origin: at most one centre lands there, the rest
    of the batch is uncertain items. A random batch is half confident."""
    rng = np.random.default_rng(0)
    c, d = 4, 32
    sure = np.full((100, c), 1e-6 / 3)
    sure[np.arange(100), rng.integers(c, size=100)] = 1 - 1e-6
    unsure = rng.dirichlet(np.full(c, 20.0), size=100)  # close to uniform
    probs, embed = np.concatenate([sure, unsure]), rng.normal(size=(200, d)).astype(np.float32)
    for seed in range(5):
        for budget in (10, 30):
            sel = _badge(probs, embed, budget, seed)
            assert (sel.ids < 100).sum() <= 1, (seed, budget, sel.ids)
            assert sel.ids[0] >= 100  # the largest gradient is an unsure item
        assert (samplers.select("random", np.arange(200), {}, np.arange(200), np.arange(0), 10,
                                np.random.default_rng(seed)).ids < 100).sum() >= 2


def test_badge_batch_takes_one_item_from_each_cluster_of_duplicates():
    """Two clusters of identical unsure items, A's gradients slightly longer,
    B's pointing the other way: ranking by gradient norm takes two copies of
    A; BADGE takes one of each (a second copy of A would teach nothing new)."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=16)
    probs = np.tile([0.4, 0.3, 0.3], (20, 1))
    embed = np.concatenate([np.tile(1.1 * h, (10, 1)), np.tile(-h, (10, 1))]).astype(np.float32)
    a, _, sq = gradient_factors(probs, embed)
    by_norm = np.argsort(-sq, kind="stable")[:2]
    assert (by_norm < 10).all()  # one-at-a-time ranking: both from A
    for seed in range(5):
        sel = _badge(probs, embed, 2, seed)
        assert sorted(int(i) // 10 for i in sel.ids) == [0, 1], (seed, sel.ids)
        assert sel.ids[0] < 10  # A first: its gradients are the longest


def test_badge_draws_the_next_centre_by_squared_distance():
    """Same prediction, features 5, 4 and 3 along one axis: the first centre
    is the longest gradient (item 0), and the others sit at gradient distance
    1 and 2 from it, so D^2 sampling takes item 2 with probability 4/5
    (sampling by distance would give 2/3, the largest distance always 1)."""
    probs = np.tile([0.7, 0.3], (3, 1))
    embed = np.array([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0]], np.float32)
    seconds = np.array([_badge(probs, embed, 2, seed).ids.tolist() for seed in range(1000)])
    assert (seconds[:, 0] == 0).all()
    assert 0.76 < (seconds[:, 1] == 2).mean() < 0.84


def test_badge_is_seeded():
    probs, embed = _spread_pool()
    assert _badge(probs, embed, 10, seed=3).ids.tolist() == _badge(probs, embed, 10, seed=3).ids.tolist()
    assert _badge(probs, embed, 10, seed=3).ids.tolist() != _badge(probs, embed, 10, seed=4).ids.tolist()


def test_badge_ranks_are_pick_order_and_the_rest_follow_gradient_norm():
    probs, embed = _spread_pool()
    a, h, sq = gradient_factors(probs, embed)
    picks, _ = kmeanspp_picks(a, h, sq, 12, np.random.default_rng(7))  # the stream select gives the sampler
    sel = _badge(probs, embed, 12, seed=7)
    _assert_pick_order_scores(sel, picks)
    assert sel.ids[0] == np.argmax(sq)  # the first centre: the largest gradient
    rest = np.flatnonzero(sel.ranks == 0)
    assert np.argsort(sel.scores[rest], kind="stable").tolist() == np.argsort(sq[rest], kind="stable").tolist()
    assert sel.notes["badge"]["embedding_dim"] == 4 * 16
    assert sel.notes["badge"]["batch_mean_grad_norm"] > sel.notes["badge"]["pool_mean_grad_norm"]


def test_badge_without_a_task_model_says_why():
    probs, embed = _spread_pool(n=20)
    ids = np.arange(20)
    with pytest.raises(RuntimeError, match="label items of at least two classes"):
        samplers.select("badge", ids, {"task_probs": None, "task_embed": None}, ids, ids[:0], 5,
                        np.random.default_rng(0))


def test_badge_on_a_large_pool_never_forms_the_gradient_embeddings():
    """50,000 items, 10 classes, 512 features: the explicit embeddings would
    be 50,000 x 5,120 float64 = 2 GB; the factors need a copy of the pool's
    features (100 MB) and blocks of it."""
    rng = np.random.default_rng(0)
    n, c, d = 50_000, 10, 512
    probs = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    embed = rng.standard_normal(size=(n, d), dtype=np.float32)
    tracemalloc.start()
    try:
        sel = _badge(probs, embed, 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(set(sel.ids.tolist())) == 20
    assert peak < 400 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"


# -- vaal_diverse -------------------------------------------------------------

def _clumps(seed=0):
    """Three well-separated clumps of 10 latents whose VAAL scores are all
    higher than the 100 background items'; clump 0 holds the 10 best scores
    overall, so plain VAAL's batch of 3 is all clump 0. Each clump's best item
    sits at its edge, away from the clump's centre, so picking the item
    nearest a k-means centroid would miss it."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
    clumps = np.concatenate([c + rng.normal(scale=0.3, size=(10, 2)) for c in centres])
    best = np.array([3, 17, 25])  # one per clump
    clumps[best] += 1.5
    background = rng.uniform(-60, 60, size=(100, 2)) + np.array([80.0, 80.0])
    latents = np.concatenate([clumps, background, rng.normal(size=(10, 2))]).astype(np.float32)  # + labeled
    disc = np.concatenate([rng.uniform(0.01, 0.05, 10), rng.uniform(0.10, 0.15, 10), rng.uniform(0.20, 0.25, 10),
                           rng.uniform(0.5, 0.9, 100), np.full(10, 0.99)])
    disc[best] = [0.005, 0.09, 0.19]  # the best of each clump (clump 0's is also the best overall)
    ids = np.arange(len(latents))
    return ids, {"latents": latents, "disc_prob": disc}, ids[:130], ids[130:], best


def test_vaal_diverse_takes_one_per_clump_where_vaal_takes_the_best_clump():
    ids, inputs, pool, labeled, best = _clumps()
    vaal = samplers.select("vaal", ids, inputs, pool, labeled, 3, np.random.default_rng(0))
    assert (vaal.ids < 10).all()  # plain VAAL: three from clump 0
    for seed in range(5):
        sel = samplers.select("vaal_diverse", ids, inputs, pool, labeled, 3, np.random.default_rng(seed))
        assert sel.ids.tolist() == best.tolist(), seed  # each clump's best, best first
        _assert_pick_order_scores(sel, best)
        assert sel.notes["vaal_diverse"] == {"candidates": 30, "clusters": 3, "clusters_filled": 3,
                                             "picks_beyond_vaal_top": 2}


def test_vaal_diverse_ranks_the_rest_by_vaal_score():
    ids, inputs, pool, labeled, best = _clumps()
    sel = samplers.select("vaal_diverse", ids, inputs, pool, labeled, 3, np.random.default_rng(0))
    rest = np.flatnonzero(sel.ranks == 0)
    vaal = 1.0 - inputs["disc_prob"][pool]
    assert np.argsort(sel.scores[rest], kind="stable").tolist() == np.argsort(vaal[rest], kind="stable").tolist()


def test_vaal_diverse_candidates_setting():
    ids, inputs, pool, labeled, _ = _clumps()
    assert samplers.get("vaal_diverse").settings == {"candidates": 10}
    plain = samplers.select("vaal", ids, inputs, pool, labeled, 3, np.random.default_rng(0))
    one = samplers.select("vaal_diverse", ids, inputs, pool, labeled, 3, np.random.default_rng(0), candidates=1)
    assert one.ids.tolist() == plain.ids.tolist()  # one candidate per pick: plain VAAL
    huge = samplers.select("vaal_diverse", ids, inputs, pool, labeled, 3, np.random.default_rng(0),
                           candidates=1000)
    assert huge.notes["vaal_diverse"]["candidates"] == len(pool)  # capped at the pool
    with pytest.raises(BadInput, match="at least 1"):
        samplers.select("vaal_diverse", ids, inputs, pool, labeled, 3, np.random.default_rng(0), candidates=0)


def test_vaal_diverse_fills_the_batch_when_candidates_coincide():
    """Identical latents make one cluster, not `budget`: the batch is topped
    up with the best candidates left, quietly."""
    ids = np.arange(60)
    inputs = {"latents": np.zeros((60, 4), np.float32), "disc_prob": np.linspace(0.01, 0.9, 60)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = samplers.select("vaal_diverse", ids, inputs, ids[:50], ids[50:], 4, np.random.default_rng(0))
    assert sel.ids.tolist() == [0, 1, 2, 3]
    assert sel.notes["vaal_diverse"]["clusters_filled"] == 1


def test_vaal_diverse_cold_start_is_kcenter():
    ids, inputs, _, _, _ = _clumps()
    cold = {**inputs, "disc_prob": None}  # nothing labeled: the pipeline has no discriminator
    sel = samplers.select("vaal_diverse", ids, cold, ids, ids[:0], 5, np.random.default_rng(2))
    coreset = samplers.select("coreset", ids, cold, ids, ids[:0], 5, np.random.default_rng(2))
    assert sel.ids.tolist() == coreset.ids.tolist()
    np.testing.assert_array_equal(sel.scores, coreset.scores)
    assert "k-center" in sel.notes["cold_start"]


def test_cli_lists_the_batch_aware_samplers(capsys):
    assert cli.main(["samplers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["samplers"]}
    assert rows["badge"]["needs"] == ["task_embed", "task_probs"]
    assert rows["vaal_diverse"]["needs"] == ["disc_prob", "latents"]
