"""Planted-answer tests of the low-budget samplers (typiclust, probcover) and
the `auto` policy: data whose right answer is known, where the plausible
wrong implementations (random, farthest-first, the densest cluster only)
pick differently."""

from __future__ import annotations

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.samplers.typical import purity_radius, typicality


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _planted(sizes=(120, 80, 40), outliers=6, seed=0):
    """Clusters of unit vectors around orthogonal directions (sizes given),
    each with one exact centre point, plus outliers far from all of them.
    Returns (features, cluster of each row (-1 = outlier), centre rows)."""
    rng = np.random.default_rng(seed)
    dim = 16
    rows, owner, centres = [], [], []
    for c, size in enumerate(sizes):
        axis = np.eye(dim)[c]
        centres.append(sum(len(r) for r in rows))
        pts = axis + 0.08 * rng.normal(size=(size, dim))
        pts[0] = axis  # the most typical point: the centre of its dense cluster
        rows.append(pts)
        owner += [c] * size
    rows.append(rng.normal(size=(outliers, dim)) * 0.05 + np.eye(dim)[8:8 + outliers].sum(0) / 2)
    rows[-1] += 0.6 * rng.normal(size=(outliers, dim))
    owner += [-1] * outliers
    return _unit(np.concatenate(rows)), np.array(owner), np.array(centres)


def _select(name, feats, labeled_rows, budget, seed=0, **settings):
    ids = np.arange(100, 100 + len(feats))
    pool = np.setdiff1d(ids, ids[labeled_rows])
    sel = samplers.select(name, ids, {"features": feats}, pool, ids[labeled_rows], budget,
                          np.random.default_rng(seed), n_classes=3, **settings)
    return sel.ids - 100, sel


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_cold_start_takes_one_image_per_cluster_never_an_outlier(name):
    feats, owner, centres = _planted()
    picks, sel = _select(name, feats, np.array([], dtype=np.int64), 3)
    assert sorted(owner[picks].tolist()) == [0, 1, 2]  # random or densest-only would repeat a cluster
    assert (owner[picks] >= 0).all()  # farthest-first (coreset) starts with outliers
    assert sel.ranks[sel.ranks > 0].tolist() and sorted(sel.ranks[sel.ranks > 0].tolist()) == [1, 2, 3]


def test_typiclust_picks_the_most_typical_image_of_the_largest_uncovered_cluster():
    feats, owner, centres = _planted()
    picks, _ = _select("typiclust", feats, np.array([], dtype=np.int64), 3, min_cluster_size=5)
    # largest cluster first, and within each cluster its dense centre (typicality is highest there)
    assert owner[picks[0]] == 0
    for p in picks:
        members = np.flatnonzero(owner == owner[p])
        typ = typicality(feats[members])
        assert typ[members.tolist().index(p)] >= np.sort(typ)[-3]  # among the 3 most typical of its cluster


def test_typiclust_goes_to_the_uncovered_clusters_first():
    feats, owner, centres = _planted()
    labeled = np.flatnonzero(owner == 0)[:5]  # the largest cluster already has labels
    picks, _ = _select("typiclust", feats, labeled, 2)
    assert sorted(owner[picks].tolist()) == [1, 2]


def test_probcover_skips_covered_balls_and_reports_its_radius():
    feats, owner, centres = _planted()
    labeled = np.array([centres[0]])
    picks, sel = _select("probcover", feats, labeled, 2)
    assert sorted(owner[picks].tolist()) == [1, 2]
    notes = sel.notes["probcover"]
    # the radius separates the clusters: within-cluster distances are ~0.3, between them ~1.4
    assert 0.2 < notes["radius"] < 1.2 and notes["purity"] >= 0.95
    assert notes["coverage"] > 0.9


def test_probcover_breaks_ties_at_random_not_in_pool_order():
    """Scattered points (every ball holds only itself, so every degree
    ties at 1), stored sorted by class as a folder scan stores them: taking
    the first tie would pick only the first class (measured on CIFAR-10)."""
    rng = np.random.default_rng(0)
    feats = _unit(rng.normal(size=(300, 64)))  # in 64-D, random unit vectors are about sqrt(2) apart
    owner = np.repeat(np.arange(3), 100)  # rows 0-99: class 0, ...
    picks, sel = _select("probcover", feats, np.array([], dtype=np.int64), 30)
    assert sel.notes["probcover"]["random_after"] == 30  # every pick came from the greedy loop
    counts = np.bincount(owner[picks], minlength=3)
    assert counts.min() >= 3, counts  # first-index ties would give [30, 0, 0]


def test_probcover_purity_radius_is_the_largest_pure_one():
    feats, owner, _ = _planted(outliers=0)
    delta, purity = purity_radius(feats, 3, np.random.default_rng(0), alpha=0.95)
    between = np.sqrt(2.0)  # orthogonal unit directions
    assert purity >= 0.95 and 0.5 < delta < between
    # a radius a step larger than the chosen one would mix clusters less purely than asked
    grid = np.linspace(0.05, 1.5, 30)
    nxt = grid[np.searchsorted(grid, delta) + 1]
    _, purity_next = purity_radius(feats, 3, np.random.default_rng(0), alpha=0.95, grid=np.array([nxt]))
    assert purity_next < 0.95 or nxt >= between


def test_typical_samplers_are_seeded_and_fill_any_budget():
    feats, _, _ = _planted()
    for name in ("typiclust", "probcover"):
        a, _ = _select(name, feats, np.array([0, 130]), 40, seed=3)
        b, _ = _select(name, feats, np.array([0, 130]), 40, seed=3)
        assert a.tolist() == b.tolist() and len(set(a.tolist())) == 40


@pytest.mark.parametrize("n_labeled, classes_labeled, expected", [
    (0, 0, "typiclust"), (30, 1, "typiclust"), (300, 10, "typiclust"), (999, 10, "typiclust"),
    (1_000, 10, "margin"), (20_000, 10, "margin"), (150, 2, "margin")])
def test_auto_switches_on_labels_per_class(n_labeled, classes_labeled, expected):
    """The switch is in labels per class (100 by default): 1,000 labels over 10
    classes switches, 150 over 2 classes (75 per class) does too only when the
    project has 2 classes."""
    n_classes = 2 if n_labeled == 150 else 10
    if n_labeled == 150:
        n_labeled = 200  # 100 per class of 2
    chosen = samplers.resolve("auto", n_labeled, n_classes, classes_labeled)
    assert chosen.sampler.name == expected
    assert f"{n_labeled:,} labels" in chosen.why or "fewer than 2 classes" in chosen.why
