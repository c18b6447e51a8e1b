"""One contract for every registered sampler, plus planted-answer tests.

The contract gives each sampler the inputs the round pipeline can compute
for every need it knows, and `select` hands the sampler only the ones it
declared: a sampler that reads an undeclared input fails here, before it can
fail in a round whose pipeline did not compute that input.
"""

from __future__ import annotations

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.errors import BadInput, BudgetTooLarge, UnknownSampler
from vaal_core.learn import pipeline

N = 200
IDS = np.arange(1000, 1000 + N)


def _inputs(n: int = N) -> dict[str, np.ndarray]:
    """A value for every need any producer of the pipeline provides, random
    but fixed (seed 123), shaped as the pipeline shapes it."""
    rng = np.random.default_rng(123)
    shapes = {"task_model": lambda: None,  # the trained model itself: no per-item array
              "task_probs": lambda: rng.dirichlet(np.ones(4), size=n),
              "task_mc": lambda: rng.dirichlet(np.ones(4), size=(6, n)),
              "pred_loss": lambda: rng.normal(size=n),
              "latents": lambda: rng.normal(size=(n, 8)).astype(np.float32),
              "disc_prob": lambda: rng.random(n),
              "ta_latents": lambda: rng.normal(size=(n, 8)).astype(np.float32),
              "ta_disc_prob": lambda: rng.random(n),
              "task_embed": lambda: rng.normal(size=(n, 16)).astype(np.float32),  # last: the others' draws stay
              "features": lambda: _unit(rng.normal(size=(n, 16))),
              "feature_probe": lambda: rng.normal(size=(n, 32)).astype(np.float32),  # after: the others' draws stay
              "suggest_probs": lambda: rng.dirichlet(np.ones(4), size=n).astype(np.float32)}
    assert set(shapes) == set(pipeline.NEEDS), "a producer was added: give the contract a value for its need"
    return {need: make() for need, make in shapes.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


SCORERS = [name for name in samplers.names() if not samplers.get(name).is_policy]
POLICIES = [name for name in samplers.names() if samplers.get(name).is_policy]


def _select(name, pool, labeled, budget, seed=0, inputs=None, **settings):
    return samplers.select(name, IDS, _inputs() if inputs is None else inputs, pool, labeled, budget,
                           np.random.default_rng(seed), **settings)


@pytest.mark.parametrize("name", SCORERS)
@pytest.mark.parametrize("n_labeled", [0, 30])
def test_sampler_contract(name, n_labeled):
    sampler = samplers.get(name)
    assert sampler.needs <= set(pipeline.NEEDS), f"{name} needs an input no producer computes"
    labeled, pool = IDS[:n_labeled], IDS[n_labeled:]
    sel = _select(name, pool, labeled, 25)
    assert len(sel.ids) == 25 and len(set(sel.ids.tolist())) == 25
    assert set(sel.ids.tolist()) <= set(pool.tolist())
    assert not set(sel.ids.tolist()) & set(labeled.tolist())
    assert sorted(sel.ranks[sel.ranks > 0].tolist()) == list(range(1, 26))
    assert np.all(np.isfinite(sel.scores))
    # the batch is the top of the score order
    assert sel.scores[sel.ranks > 0].min() >= sel.scores[sel.ranks == 0].max()
    again = _select(name, pool, labeled, 25)
    assert sel.ids.tolist() == again.ids.tolist()  # same seed, same result
    whole = _select(name, pool, labeled, len(pool))
    assert sorted(whole.ids.tolist()) == sorted(pool.tolist())
    with pytest.raises(BudgetTooLarge, match=f"--budget {len(pool)}"):
        _select(name, pool, labeled, len(pool) + 1)
    with pytest.raises(BadInput):
        _select(name, pool, labeled, 0)
    with pytest.raises(BadInput, match="no setting"):
        _select(name, pool, labeled, 5, no_such_setting=1)


@pytest.mark.parametrize("name", SCORERS)
def test_each_sampler_runs_on_its_declared_needs_alone(name):
    """Only the declared inputs, nothing else: what the round pipeline
    produces for that sampler (plus the task model's, for suggestions)."""
    declared = {need: value for need, value in _inputs().items() if need in samplers.get(name).needs}
    sel = _select(name, IDS[30:], IDS[:30], 10, inputs=declared)
    assert len(sel.ids) == 10


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("n_labeled, classes_labeled", [(0, 0), (10, 1), (50, 4), (5_000, 10), (200_000, 10)])
def test_policy_contract(name, n_labeled, classes_labeled):
    """A policy resolves to a registered sampler the pipeline can serve,
    says why in words, and is never scored directly."""
    chosen = samplers.resolve(name, n_labeled, 10, classes_labeled)
    assert not chosen.sampler.is_policy and chosen.asked == name
    pipeline.plan(chosen.sampler.needs)
    assert chosen.why and chosen.sampler.name in chosen.why
    if classes_labeled < 2:  # no classifier can be trained: nothing that reads one
        assert not pipeline.uses_task_model(chosen.sampler.needs)
    with pytest.raises(ValueError, match="resolve"):
        _select(name, IDS[30:], IDS[:30], 5)


def test_a_plain_sampler_resolves_to_itself():
    chosen = samplers.resolve("entropy", 100, 10, 10)
    assert chosen.sampler.name == "entropy" and chosen.why is None


@pytest.mark.parametrize("name", ["vaal", "vaal_diverse"])
def test_vaal_hands_a_round_with_no_labels_to_typiclust(name):
    """With nothing labeled VAAL's discriminator has nothing to tell apart;
    its k-center first batch trained a classifier 8 points below random's on
    CIFAR-10, typiclust's above it, so typiclust picks that round, and says
    why. From the first label on, VAAL ranks itself."""
    cold = samplers.resolve(name, 0, 10, 0)
    assert (cold.sampler.name, cold.asked) == ("typiclust", name)
    assert cold.why.startswith("typiclust: nothing is labeled yet") and name in cold.why
    pipeline.plan(cold.sampler.needs)  # the pipeline serves it: the feature space, no VAE
    assert "latents" not in cold.sampler.needs
    for n_labeled, classes in ((1, 1), (40, 4)):
        warm = samplers.resolve(name, n_labeled, 10, classes)
        assert warm.sampler.name == name and warm.why is None
    # samplers without a cold start, and those whose own rule covers no labels, stay themselves
    for plain in ("coreset", "random", "typiclust", "probcover"):
        assert samplers.resolve(plain, 0, 10, 0).sampler.name == plain


@pytest.mark.parametrize("name", ["entropy", "margin", "least_confidence", "bald", "ll4al", "ta_vaal", "badge"])
def test_a_task_model_sampler_hands_rounds_to_typiclust_until_two_classes_are_labeled(name):
    """No classifier trains on labels of fewer than 2 classes, so nothing it
    could be uncertain about: typiclust picks those rounds, and says why."""
    for n_labeled, classes in ((0, 0), (7, 1)):
        cold = samplers.resolve(name, n_labeled, 10, classes)
        assert (cold.sampler.name, cold.asked) == ("typiclust", name)
        assert cold.why.startswith(f"typiclust: {name} ranks by a classifier trained on the labels")
        assert f"now {n_labeled} labels of {classes} class" in cold.why
    warm = samplers.resolve(name, 2, 10, 2)
    assert warm.sampler.name == name and warm.why is None


def test_every_sampler_that_reads_a_classifier_has_a_cold_start_until_two_classes():
    for name in samplers.names():
        sampler = samplers.get(name)
        if not sampler.is_policy and pipeline.uses_task_model(sampler.needs):
            assert sampler.cold_start == "typiclust" and sampler.cold_classes == 2, name
            assert sampler.description.endswith("(until the labels cover 2 classes, typiclust picks)"), name


def test_every_cold_start_names_a_sampler_that_can_pick_with_no_labels():
    for name in samplers.names():
        cold = samplers.get(name).cold_start
        if cold:
            target = samplers.get(cold)
            assert not target.is_policy and target.cold_start is None, name
            assert not pipeline.uses_task_model(target.needs), name  # no labels: no classifier either
            sel = _select(cold, IDS, IDS[:0], 5, inputs={k: v for k, v in _inputs().items() if k in target.needs})
            assert len(sel.ids) == 5


def test_reading_an_undeclared_input_fails():
    @samplers.register("_reads_too_much", needs=("latents",))
    def sneaky(ctx, pool_ids, labeled_ids, budget):
        return ctx["disc_prob"][ctx.rows(pool_ids)]  # not declared

    try:
        with pytest.raises(samplers.UndeclaredNeed, match="'disc_prob'.*declared only latents"):
            _select("_reads_too_much", IDS[10:], IDS[:10], 5)
    finally:
        del samplers.REGISTRY["_reads_too_much"]


def test_random_depends_on_seed():
    a = _select("random", IDS, IDS[:0], 20, seed=1).ids
    b = _select("random", IDS, IDS[:0], 20, seed=2).ids
    assert a.tolist() != b.tolist()


def test_registry_names_and_errors():
    assert {"random", "vaal", "coreset"} <= set(samplers.names())
    with pytest.raises(UnknownSampler, match="random"):
        samplers.get("nope")
    with pytest.raises(ValueError, match="twice"):
        samplers.register("random")(lambda *a: None)


def test_vaal_picks_lowest_discriminator_probability():
    inputs = {**_inputs(), "disc_prob": np.linspace(0.99, 0.01, N)}  # last items look least labeled
    sel = _select("vaal", IDS[10:], IDS[:10], 5, inputs=inputs)
    assert sel.ids.tolist() == IDS[-5:][::-1].tolist()


def test_vaal_cold_start_uses_kcenter():
    inputs = {**_inputs(), "disc_prob": None}  # the pipeline has no discriminator with nothing labeled
    sel = _select("vaal", IDS, IDS[:0], 5, inputs=inputs)
    assert "k-center" in sel.notes["cold_start"]


def test_coreset_covers_unseen_clusters_first():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [50, 0], [0, 50]], dtype=np.float32)
    latents = np.concatenate([c + rng.normal(size=(30, 2)) for c in centers]).astype(np.float32)
    ids = np.arange(90)
    labeled = ids[:5]  # a few from cluster 0
    sel = samplers.select("coreset", ids, {"latents": latents}, ids[5:], labeled, 2, np.random.default_rng(0))
    assert sorted(int(i) // 30 for i in sel.ids) == [1, 2]


def _by_probs(name, probs, budget):
    probs = np.asarray(probs, dtype=np.float64)
    ids = np.arange(len(probs))
    return samplers.select(name, ids, {"task_probs": probs}, ids, ids[:0], budget, np.random.default_rng(0))


def test_uncertainty_samplers_rank_as_their_definitions():
    probs = [[0.97, 0.01, 0.01, 0.01],   # 0: sure
             [0.25, 0.25, 0.25, 0.25],   # 1: uniform: the most uncertain by every measure
             [0.50, 0.49, 0.01, 0.00],   # 2: two-way tie: small margin, low entropy
             [0.40, 0.20, 0.20, 0.20]]   # 3: spread out, clear winner
    order = {name: _by_probs(name, probs, 4).ids.tolist() for name in ("entropy", "margin", "least_confidence")}
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
    ids = np.arange(3)
    sel = samplers.select("bald", ids, {"task_mc": mc}, ids, ids[:0], 3, np.random.default_rng(0))
    assert sel.ids.tolist()[0] == 1
    assert sel.scores[0] == pytest.approx(0.0, abs=1e-9)  # all samples agree: no mutual information
    assert sel.scores[1] > 0.5


def test_ll4al_picks_highest_predicted_loss_from_a_random_subset():
    n = 300
    ids = np.arange(n)
    pred = np.arange(n, dtype=np.float64)  # item i's predicted loss is i

    def pick(budget, **settings):
        return samplers.select("ll4al", ids, {"pred_loss": pred}, ids, ids[:0], budget, np.random.default_rng(0),
                               **settings)

    assert samplers.get("ll4al").settings == {"subset": 10_000}  # the paper's size, a registry argument
    sel = pick(10, subset=100)
    assert sel.notes["scored_subset"] == 100
    in_subset = sel.scores > sel.scores.min()  # the rest share one score, below the subset's lowest
    assert in_subset.sum() == 100
    assert np.array_equal(sel.scores[in_subset], pred[in_subset])  # scored by predicted loss
    assert sel.ids.tolist() == sorted(np.flatnonzero(in_subset).tolist(), reverse=True)[:10]
    # a pool no larger than the subset is ranked whole (the default subset here)
    assert pick(3).ids.tolist() == [299, 298, 297] and "scored_subset" not in pick(3).notes
    # a budget above the subset size widens the subset to the budget
    assert len(pick(20, subset=5).ids) == 20


def test_ta_vaal_selects_on_its_conditioned_discriminator():
    inputs = {**_inputs(), "ta_disc_prob": np.linspace(0.01, 0.99, N),  # first items look least labeled
              "disc_prob": np.linspace(0.99, 0.01, N)}  # VAAL's own, which it must not read
    sel = _select("ta_vaal", IDS[5:], IDS[:5], 4, inputs=inputs)
    assert sel.ids.tolist() == IDS[5:9].tolist()
    assert samplers.get("ta_vaal").needs == {"ta_disc_prob"}
    # its needs call for the task model (the loss head's r) before TA-VAAL's own VAE
    assert [p.name for p, _ in pipeline.plan(samplers.get("ta_vaal").needs)] == ["task", "ta_vaal"]
