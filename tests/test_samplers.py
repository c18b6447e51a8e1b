"""One contract for every registered sampler, plus planted-answer tests."""

from __future__ import annotations

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.errors import BadInput, BudgetTooLarge, UnknownSampler


def _context(seed: int = 0, n: int = 200) -> samplers.Context:
    """Every input any sampler needs, random but fixed (seed 123)."""
    rng = np.random.default_rng(123)
    return samplers.Context(item_ids=np.arange(1000, 1000 + n), rng=np.random.default_rng(seed),
                            latents=rng.normal(size=(n, 8)).astype(np.float32),
                            disc_prob=rng.random(n),
                            extras={"task_probs": rng.dirichlet(np.ones(4), size=n),
                                    "task_mc": rng.dirichlet(np.ones(4), size=(6, n)),
                                    "pred_loss": rng.normal(size=n), "ll4al_subset": 150})


@pytest.mark.parametrize("name", samplers.names())
@pytest.mark.parametrize("n_labeled", [0, 30])
def test_sampler_contract(name, n_labeled):
    ctx = _context()
    labeled, pool = ctx.item_ids[:n_labeled], ctx.item_ids[n_labeled:]
    sel = samplers.select(name, ctx, pool, labeled, 25)
    assert len(sel.ids) == 25 and len(set(sel.ids.tolist())) == 25
    assert set(sel.ids.tolist()) <= set(pool.tolist())
    assert not set(sel.ids.tolist()) & set(labeled.tolist())
    assert sorted(sel.ranks[sel.ranks > 0].tolist()) == list(range(1, 26))
    assert np.all(np.isfinite(sel.scores))
    # the batch is the top of the score order
    assert sel.scores[sel.ranks > 0].min() >= sel.scores[sel.ranks == 0].max()
    again = samplers.select(name, _context(), pool, labeled, 25)
    assert sel.ids.tolist() == again.ids.tolist()  # same seed, same result
    whole = samplers.select(name, _context(), pool, labeled, len(pool))
    assert sorted(whole.ids.tolist()) == sorted(pool.tolist())
    with pytest.raises(BudgetTooLarge, match=f"--budget {len(pool)}"):
        samplers.select(name, _context(), pool, labeled, len(pool) + 1)
    with pytest.raises(BadInput):
        samplers.select(name, _context(), pool, labeled, 0)


def test_random_depends_on_seed():
    ctx_a, ctx_b = _context(seed=1), _context(seed=2)
    a = samplers.select("random", ctx_a, ctx_a.item_ids, [], 20).ids
    b = samplers.select("random", ctx_b, ctx_b.item_ids, [], 20).ids
    assert a.tolist() != b.tolist()


def test_registry_names_and_errors():
    assert {"random", "vaal", "coreset"} <= set(samplers.names())
    with pytest.raises(UnknownSampler, match="random"):
        samplers.get("nope")
    with pytest.raises(ValueError, match="twice"):
        samplers.register("random")(lambda *a: None)


def test_vaal_picks_lowest_discriminator_probability():
    ctx = _context()
    ctx.disc_prob = np.linspace(0.99, 0.01, len(ctx.item_ids))  # last items look least labeled
    sel = samplers.select("vaal", ctx, ctx.item_ids[10:], ctx.item_ids[:10], 5)
    assert sel.ids.tolist() == ctx.item_ids[-5:][::-1].tolist()


def test_vaal_cold_start_uses_kcenter():
    ctx = _context()
    samplers.select("vaal", ctx, ctx.item_ids, [], 5)
    assert "k-center" in ctx.notes["cold_start"]


def test_coreset_covers_unseen_clusters_first():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [50, 0], [0, 50]], dtype=np.float32)
    latents = np.concatenate([c + rng.normal(size=(30, 2)) for c in centers]).astype(np.float32)
    ids = np.arange(90)
    ctx = samplers.Context(item_ids=ids, rng=np.random.default_rng(0), latents=latents)
    labeled = ids[:5]  # a few from cluster 0
    sel = samplers.select("coreset", ctx, ids[5:], labeled, 2)
    assert sorted(int(i) // 30 for i in sel.ids) == [1, 2]


def _probs_context(probs) -> samplers.Context:
    probs = np.asarray(probs, dtype=np.float64)
    return samplers.Context(item_ids=np.arange(len(probs)), rng=np.random.default_rng(0),
                            extras={"task_probs": probs})


def test_uncertainty_samplers_rank_as_their_definitions():
    probs = [[0.97, 0.01, 0.01, 0.01],   # 0: sure
             [0.25, 0.25, 0.25, 0.25],   # 1: uniform: the most uncertain by every measure
             [0.50, 0.49, 0.01, 0.00],   # 2: two-way tie: small margin, low entropy
             [0.40, 0.20, 0.20, 0.20]]   # 3: spread out, clear winner
    ids = np.arange(4)
    order = {name: samplers.select(name, _probs_context(probs), ids, [], 4).ids.tolist()
             for name in ("entropy", "margin", "least_confidence")}
    assert order["entropy"] == [1, 3, 2, 0]
    assert order["margin"] == [1, 2, 3, 0]  # margins 0, 0.01, 0.2, 0.96
    assert order["least_confidence"] == [1, 3, 2, 0]  # top class 0.25, 0.40, 0.50, 0.97


def test_bald_prefers_disagreement_over_plain_uncertainty():
    """Two items with the same mean prediction (0.5/0.5): item 0's dropout
    samples all say 0.5 (noise in the data: no information to gain), item 1's
    flip between sure answers (the model's weights disagree): BALD picks 1,
    entropy of the mean cannot tell them apart."""
    agree = np.tile([[0.5, 0.5]], (10, 1))
    flip = np.array([[0.99, 0.01], [0.01, 0.99]] * 5)
    sure = np.tile([[0.99, 0.01]], (10, 1))
    mc = np.stack([agree, flip, sure], axis=1)  # (T=10, N=3, C=2)
    ctx = samplers.Context(item_ids=np.arange(3), rng=np.random.default_rng(0), extras={"task_mc": mc})
    sel = samplers.select("bald", ctx, np.arange(3), [], 3)
    assert sel.ids.tolist()[0] == 1
    assert sel.scores[0] == pytest.approx(0.0, abs=1e-9)  # all samples agree: no mutual information
    assert sel.scores[1] > 0.5


def test_ll4al_picks_highest_predicted_loss_from_a_random_subset():
    n = 300
    pred = np.arange(n, dtype=np.float64)  # item i's predicted loss is i
    ctx = samplers.Context(item_ids=np.arange(n), rng=np.random.default_rng(0),
                           extras={"pred_loss": pred, "ll4al_subset": 100})
    sel = samplers.select("ll4al", ctx, np.arange(n), [], 10)
    assert ctx.notes["scored_subset"] == 100
    in_subset = sel.scores > sel.scores.min()  # the rest share one score, below the subset's lowest
    assert in_subset.sum() == 100
    assert np.array_equal(sel.scores[in_subset], pred[in_subset])  # scored by predicted loss
    assert sel.ids.tolist() == sorted(np.flatnonzero(in_subset).tolist(), reverse=True)[:10]
    # a pool no larger than the subset is ranked whole
    whole = samplers.Context(item_ids=np.arange(n), rng=np.random.default_rng(0),
                             extras={"pred_loss": pred, "ll4al_subset": n})
    assert samplers.select("ll4al", whole, np.arange(n), [], 3).ids.tolist() == [299, 298, 297]
    # a budget above the subset size widens the subset to the budget
    wide = samplers.Context(item_ids=np.arange(n), rng=np.random.default_rng(0),
                            extras={"pred_loss": pred, "ll4al_subset": 5})
    assert len(samplers.select("ll4al", wide, np.arange(n), [], 20).ids) == 20


def test_ta_vaal_selects_on_its_conditioned_discriminator():
    ctx = _context()
    ctx.disc_prob = np.linspace(0.01, 0.99, len(ctx.item_ids))  # first items look least labeled
    sel = samplers.select("ta_vaal", ctx, ctx.item_ids[5:], ctx.item_ids[:5], 4)
    assert sel.ids.tolist() == ctx.item_ids[5:9].tolist()
    assert samplers.get("ta_vaal").needs == {"latents", "disc", "pred_loss"}
