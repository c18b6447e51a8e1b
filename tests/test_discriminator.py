"""Is VAAL's ranking more than noise? The discriminator's figures
(learn/disc_quality.py) on planted inputs, the ranking discriminator on
planted latents, a real `--fast` round that records them, and the pages
that say so when the queue is close to a random order. Real CIFAR-10 JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from vaal_core.data.ingest import init_project
from vaal_core.learn import disc_quality as dq
from vaal_core.loop.report import history
from vaal_core.store import Project

from conftest import make_subset, open_page

CLASSES = ["airplane", "cat", "dog"]


def _labeled(n: int, n_labeled: int, seed: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[np.random.default_rng(seed).choice(n, n_labeled, replace=False)] = True
    return out


# -- the figures on planted inputs ------------------------------------------------

def test_auc_is_sklearns_and_reads_perfect_reversed_and_coin_toss():
    rng = np.random.default_rng(0)
    for _ in range(50):  # ties included: probabilities rounded to 0-2 decimals
        n = int(rng.integers(2, 400))
        y = rng.random(n) < rng.uniform(0.05, 0.95)
        if y.all() or not y.any():
            continue
        p = np.round(rng.random(n), int(rng.integers(0, 3)))
        assert dq.auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    y = _labeled(1000, 100)
    assert dq.auc(y.astype(float), y) == 1.0 and dq.auc(1.0 - y, y) == 0.0
    assert dq.auc(np.full(1000, 0.5), y) == 0.5  # a constant: every pair a tie
    assert abs(dq.auc(rng.random(1000), y) - 0.5) < 0.07
    assert dq.auc(np.ones(3), np.ones(3, dtype=bool)) is None  # nothing to tell apart


def test_top_overlap_is_one_for_the_same_order_and_chance_for_random_orders():
    rng = np.random.default_rng(1)
    a = rng.random(2000)
    k = dq.batch_size(2000)
    assert k == 100 and dq.top_overlap(a, a, k) == 1.0 and dq.top_overlap(a, -a, k) == 0.0
    shared = [dq.top_overlap(rng.random(2000), rng.random(2000), k) for _ in range(200)]
    assert np.mean(shared) == pytest.approx(k / 2000, abs=0.01)  # chance: k / pool
    assert dq.batch_size(10) == 1 and dq.batch_size(21) == 2  # 5% of the pool, rounded up


def test_folds_deal_each_side_evenly_and_keep_a_small_side_whole():
    labeled = _labeled(200, 20)
    fold = dq.folds(labeled, 4, seed=3)
    assert [int(((fold == j) & labeled).sum()) for j in range(4)] == [5, 5, 5, 5]
    assert [int(((fold == j) & ~labeled).sum()) for j in range(4)] == [45, 45, 45, 45]
    assert np.array_equal(fold, dq.folds(labeled, 4, seed=3)) and not np.array_equal(fold, dq.folds(labeled, 4, 4))
    few = _labeled(50, 3)
    assert (dq.folds(few, 4, seed=0)[few] == -1).all()  # every member keeps some labeled items to learn from


def test_a_perfect_discriminator_is_trusted_and_a_coin_toss_is_called_near_chance():
    rng = np.random.default_rng(2)
    labeled = _labeled(1000, 100)
    # perfect: P(labeled) 1 on labeled items, and a ranking of the pool two seeds agree on
    pool_order = rng.random(1000)
    perfect = np.where(labeled, 1.0, 0.5 * pool_order)
    good = dq.summarise(perfect, labeled, perfect, perfect)
    assert good["auc"] == 1.0 and good["top_overlap"] == 1.0 and good["heldout_auc"] == 1.0
    assert good["top_k"] == 45 and good["overlap_by_chance"] == pytest.approx(45 / 900, abs=1e-4)
    assert not good["near_chance"] and "least like the labeled ones" in good["verdict"]
    assert "AUC 1.00" in good["verdict"] and "20.0x chance" in good["verdict"]
    # a coin toss: what a discriminator at loss 2 ln 2 gives
    noise = 0.5 + 0.01 * rng.standard_normal(1000)
    twin = 0.5 + 0.01 * rng.standard_normal(1000)
    bad = dq.summarise(noise, labeled, twin, game_prob=np.full(1000, 0.5))
    assert abs(bad["auc"] - 0.5) < 0.07 and bad["game_auc"] == 0.5 and bad["heldout_auc"] is None
    partly = np.where(np.arange(1000) < 500, noise, np.nan)  # held-out figures for half the items
    assert dq.summarise(noise, labeled, heldout_prob=partly)["heldout_auc"] == pytest.approx(
        roc_auc_score(labeled[:500], noise[:500]), abs=1e-4)
    assert dq.overlap_ratio(bad) < dq.MIN_OVERLAP_RATIO and bad["near_chance"]
    assert bad["verdict"].startswith("The discriminator cannot tell labeled from unlabeled images yet (AUC 0.")
    assert bad["verdict"].endswith("this queue is close to random order.")


def test_a_discriminator_that_separates_but_changes_with_the_seed_is_near_chance_too():
    labeled = _labeled(1000, 100)
    rng = np.random.default_rng(4)
    sep = np.where(labeled, 0.9, 0.3 * rng.random(1000))
    other = np.where(labeled, 0.9, 0.3 * rng.random(1000))  # same AUC, an unrelated order of the pool
    d = dq.summarise(sep, labeled, other)
    assert d["auc"] == 1.0 and d["near_chance"] and "changes with the training seed" in d["verdict"]
    assert dq.of_round({"discriminator": d}) is d and dq.of_round({"task": {}}) is None and dq.of_round(None) is None


# -- the ranking discriminator on planted latents ----------------------------------

@pytest.mark.slow
def test_the_ranking_discriminator_learns_planted_latents_and_reads_the_condition():
    import torch

    from vaal_core.config import engine_config
    from vaal_core.learn import vaal

    eng = engine_config(32, fast=True)
    rng = np.random.default_rng(5)
    labeled = _labeled(600, 60)
    latents = rng.standard_normal((600, 32)).astype(np.float32)
    latents[labeled, :2] += 2.0  # the labeled images sit apart in two directions
    far = np.flatnonzero(~labeled)[np.argsort(latents[~labeled, 0] + latents[~labeled, 1])[:20]]
    prob, figures = vaal.rank_and_measure(eng.vae, eng.train, latents, labeled, torch.device("cpu"), 0)
    assert figures["auc"] > 0.95 and figures["heldout_auc"] > 0.9 and not figures["near_chance"]
    assert figures["members"] == eng.train.rank_members and figures["game_auc"] is None
    assert dq.overlap_ratio(figures) >= 5
    assert np.mean(prob[far]) < np.mean(prob[~labeled])  # the unlabeled images least like the labeled ones
    # TA-VAAL: the latents say nothing, the condition (the predicted loss) does
    plain = rng.standard_normal((600, 32)).astype(np.float32)
    cond = np.where(labeled, 1.0, -1.0).astype(np.float32) + 0.3 * rng.standard_normal(600).astype(np.float32)
    _, with_cond = vaal.rank_and_measure(eng.vae, eng.train, plain, labeled, torch.device("cpu"), 0, cond=cond)
    assert with_cond["heldout_auc"] > 0.9


# -- a real round records them --------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAAL_PROJECT", raising=False)
    return tmp_path / "home"


@pytest.fixture
def project(cifar_root, tmp_path, home) -> Project:
    images = make_subset(cifar_root, tmp_path / "images", per_class=6, classes=CLASSES)
    proj, _, _ = init_project(home / "projects" / "pets", images, CLASSES, gold_from_folders=True)
    return proj


@pytest.mark.slow
def test_a_fast_vaal_round_records_the_discriminators_figures(cifar_root, tmp_path):
    from vaal_core.loop.round import RoundConfig, run_round

    images = make_subset(cifar_root, tmp_path / "images", per_class=20, classes=CLASSES)
    proj, _, _ = init_project(tmp_path / "proj", images, CLASSES, gold_from_folders=True)
    ids = [it.id for it in proj.items()]
    proj.set_labels([(ids[k], CLASSES[k % 3]) for k in range(0, 60, 5)])  # 12 labels
    run_round(proj, RoundConfig(sampler="vaal", budget=3, fast=True, device="cpu", suggest=False))
    d = proj.rounds()[-1]["metrics"]["discriminator"]
    assert d["n_labeled"] == 12 and d["pool"] == 48 and d["top_k"] == 3
    assert 0 <= d["auc"] <= 1 and 0 <= d["game_auc"] <= 1 and 0 <= d["top_overlap"] <= 1
    assert d["overlap_by_chance"] == pytest.approx(3 / 48, abs=1e-4) and d["heldout_auc"] is not None
    assert d["near_chance"] == dq.near_chance(d) and d["verdict"] == dq.verdict(d) and d["seconds"] >= 0
    row = history(proj)[-1]
    assert row["disc_auc"] == d["auc"] and row["disc_verdict"] == d["verdict"]
    # a round whose sampler trains no discriminator records none
    run_round(proj, RoundConfig(sampler="random", budget=3, fast=True, device="cpu", suggest=False))
    assert "discriminator" not in proj.rounds()[-1]["metrics"] and history(proj)[-1]["disc_auc"] is None


# -- the pages say so -----------------------------------------------------------------------

def _round_with(project: Project, figures: dict, sampler: str = "vaal") -> int:
    """A finished round written through the store, as the round runner
    writes one: every item scored, the first 5 ranked."""
    ids = [it.id for it in project.items()]
    rid = project.start_round(sampler, 5, 0, {})
    project.finish_round(rid, ids, [float(len(ids) - k) for k in range(len(ids))],
                         [k + 1 if k < 5 else None for k in range(len(ids))], len(project.labeled_ids()), {},
                         {"discriminator": figures})
    return rid


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning") for e in getattr(at, kind))




def test_the_train_and_label_pages_say_when_the_queue_is_close_to_random(project):
    labeled = _labeled(300, 30)
    near = dq.summarise(np.full(300, 0.5), labeled, 0.5 + 0.001 * np.random.default_rng(0).standard_normal(300))
    assert near["near_chance"] and "AUC 0.50" in near["verdict"]
    _round_with(project, near)
    at = open_page(project.root, "views/train.py")
    assert [w.value for w in at.warning if "cannot tell labeled from unlabeled" in w.value] == [
        f"Round 1 (vaal): {near['verdict']}"]
    table = at.dataframe[0].value
    assert list(table["disc AUC"]) == [0.5] and "top batch × chance" in table.columns
    assert "0.5 is a coin toss" in _texts(at)
    at.switch_page("views/label.py").run()
    assert not at.exception and near["verdict"] in [w.value for w in at.warning]
    # the next round ranked with no discriminator: its queue gets no warning
    ids = [it.id for it in project.items()]
    rid = project.start_round("random", 5, 0, {})
    project.finish_round(rid, ids, [0.0] * len(ids), [k + 1 if k < 5 else None for k in range(len(ids))], 0, {}, {})
    at = open_page(project.root, "views/train.py")
    assert not [w for w in at.warning if "random order" in w.value]
    assert at.dataframe[0].value["disc AUC"].isna().tolist() == [False, True]
    at.switch_page("views/label.py").run()
    assert not [w for w in at.warning if "random order" in w.value]
    # a discriminator worth trusting: no warning, its verdict under the history
    good = dq.summarise(labeled.astype(float), labeled, labeled.astype(float))
    _round_with(project, good)
    at = open_page(project.root, "views/train.py")
    assert not [w for w in at.warning if "random order" in w.value]
    assert f"Round 3 (vaal): {good['verdict']}" in _texts(at)
    at.switch_page("views/label.py").run()
    assert not [w for w in at.warning if "random order" in w.value]
