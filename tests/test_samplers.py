"""One contract for every registered sampler, plus planted-answer tests."""

from __future__ import annotations

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.errors import BadInput, BudgetTooLarge, UnknownSampler


def _context(seed: int = 0, n: int = 200) -> samplers.Context:
    rng = np.random.default_rng(123)
    return samplers.Context(item_ids=np.arange(1000, 1000 + n), rng=np.random.default_rng(seed),
                            latents=rng.normal(size=(n, 8)).astype(np.float32),
                            disc_prob=rng.random(n))


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
