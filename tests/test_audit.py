"""The random audit picks: how many a batch gets, that they are a seeded
uniform sample of the pool spread through the batch, that the store and
`queue --json` mark them, the honest accuracy estimate built on them
(Wilson interval, planted labels), and projects made before the audit."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.data.ingest import init_project
from vaal_core.errors import BadInput
from vaal_core.loop.audit import (MIN_BATCH, agreement, audit_count, audit_positions, audit_rng, compare,
                                  swap_in_audit, wilson)
from vaal_core.loop.round import RoundConfig, check_round, run_round
from vaal_core.services import labeling
from vaal_core.store import Project
from vaal_core.store.schema import SCHEMA_VERSION

from conftest import key_button, make_subset, open_page, run_cli, tiny_store

CLASSES3 = ["cat", "dog", "ship"]


# -- the picks, as pure functions ------------------------------------------------------------

def test_how_many_audit_picks_a_batch_gets():
    assert audit_count(100, 0.05) == 5 and audit_count(200, 0.05) == 10 and audit_count(40, 0.1) == 4
    assert audit_count(10, 0.05) == 1 and audit_count(20, 0.01) == 1  # at least one from MIN_BATCH on
    assert MIN_BATCH == 10 and audit_count(9, 0.05) == 0 and audit_count(9, 0.3) == 0  # small batches: none
    assert audit_count(100, 0.0) == 0  # 0 turns the audit off


def test_audit_positions_are_spread_through_the_batch():
    assert audit_positions(100, 5) == [10, 30, 50, 70, 90]  # one in the middle of every 20
    assert audit_positions(10, 1) == [5]
    for budget in range(MIN_BATCH, 120):
        for fraction in (0.01, 0.05, 0.1, 0.25, 0.49):
            n = audit_count(budget, fraction)
            pos = audit_positions(budget, n)
            assert len(set(pos)) == n and 0 <= pos[0] and pos[-1] < budget
            assert pos[0] <= budget / n / 2 + 1  # the top of the queue holds one
            assert all(b - a >= budget // n - 1 for a, b in zip(pos, pos[1:]))


def test_swap_keeps_the_sampler_head_and_draws_a_seeded_sample_of_the_rest():
    batch = list(range(100, 120))  # the sampler's 20, best first
    pool = list(range(100, 300))
    out, audit = swap_in_audit(batch, pool, 0.1, audit_rng(0, 1))
    assert len(out) == 20 and len(set(out)) == 20 and len(audit) == 2 and set(audit) <= set(pool)
    assert [out.index(i) for i in audit] == audit_positions(20, 2)
    assert [i for i in out if i not in audit] == batch[:18]  # the sampler's first 18, in its order
    assert not set(audit) & set(batch[:18])  # never one of the kept sampler picks
    assert swap_in_audit(batch, pool, 0.1, audit_rng(0, 1)) == (out, audit)  # seeded
    assert len({tuple(swap_in_audit(batch, pool, 0.1, audit_rng(s, 1))[1]) for s in range(10)}) > 5
    assert swap_in_audit(batch, pool, 0.0, audit_rng(0, 1)) == (batch, [])
    assert swap_in_audit(batch[:9], pool, 0.1, audit_rng(0, 1)) == (batch[:9], [])


def test_audit_picks_are_uniform_over_the_pool_whatever_the_sampler_ranked():
    """Over many rounds, every candidate outside the kept sampler picks is
    drawn equally often: the dropped sampler tail is no likelier than the
    pool's far end (a chi-square test at the 0.1% level)."""
    batch = list(range(20))  # the sampler's top 20 of 60
    pool = list(range(60))
    counts: Counter[int] = Counter()
    draws = 3000
    for round_id in range(draws):
        counts.update(swap_in_audit(batch, pool, 0.1, audit_rng(7, round_id))[1])
    candidates = range(18, 60)  # the pool outside the 18 kept picks
    assert set(counts) == set(candidates)
    expected = 2 * draws / len(candidates)
    chi2 = sum((counts[i] - expected) ** 2 / expected for i in candidates)
    from scipy.stats import chi2 as chi2_dist

    assert chi2 < chi2_dist.ppf(0.999, len(candidates) - 1), chi2
    tail, far = sum(counts[i] for i in (18, 19)) / 2, sum(counts[i] for i in range(40, 60)) / 20
    assert abs(tail - far) < 0.25 * expected


# -- the estimate --------------------------------------------------------------------------

def test_wilson_interval_known_answers():
    for (k, n), (lo, hi) in {(8, 10): (0.4902, 0.9433), (0, 10): (0.0, 0.2775), (5, 5): (0.5655, 1.0),
                             (50, 100): (0.4038, 0.5962), (1, 20): (0.0089, 0.2361)}.items():
        got = wilson(k, n)
        assert got == pytest.approx((lo, hi), abs=1e-4), (k, n, got)
    assert wilson(0, 0) is None
    lo, hi = wilson(30, 40, z=1.0)  # narrower at a lower level
    assert wilson(30, 40)[0] < lo < 0.75 < hi < wilson(30, 40)[1]


def test_agreement_counts_only_labeled_items_with_a_suggestion():
    triples = [("cat", "cat", "ui"), ("cat", "dog", "ui"), ("dog", "dog", "suggestion"), ("dog", "dog", "grid"),
               (None, "cat", "ui"), ("cat", None, None)]
    got = agreement(triples)
    assert (got["n"], got["correct"]) == (4, 3)
    assert got["accuracy"] == 0.75 and got["changed"] == 0.25 and got["accepted"] == 0.25
    assert (got["low"], got["high"]) == wilson(3, 4)
    empty = agreement([(None, "cat", "ui")])
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["low"] is None and empty["accepted"] is None


def _store(tmp_path, n: int = 60) -> Project:
    return tiny_store(tmp_path, ["cat", "dog"], n)


def test_compare_on_planted_labels(tmp_path):
    p = _store(tmp_path)
    ids = [it.id for it in p.items()]
    batch, audit = ids[:30], ids[30:40]  # 30 sampler picks, 10 audit picks; the rest unranked
    order = batch + audit + ids[40:]
    ranks = list(range(1, 41)) + [None] * 20
    guesses = [("cat", 0.9)] * 60
    r1 = p.start_round("entropy", 40, 0, {})
    p.finish_round(r1, order, [1.0] * 60, ranks, 0, {}, {"audit": {"fraction": 0.25, "n": 10, "ids": audit}},
                   suggestions=guesses, audit=audit)
    # audit: 9 labeled (7 as suggested, one of them by accepting it), 1 left; sampler: 20 labeled, 5 as suggested
    p.set_labels([(i, "cat") for i in audit[:6]], source="ui")
    p.set_label(audit[6], "cat", source="suggestion")
    p.set_labels([(i, "dog") for i in audit[7:9]], source="ui")
    p.set_labels([(i, "cat") for i in batch[:5]] + [(i, "dog") for i in batch[5:20]], source="grid")
    # a later round suggests otherwise for the same images: round 1's own suggestions are what count
    r2 = p.start_round("entropy", 5, 0, {})
    rest = [i for i in ids if i not in p.labeled_ids()]
    p.finish_round(r2, rest, [0.5] * len(rest), [1, 2, 3, 4, 5] + [None] * (len(rest) - 5), 69, {}, {},
                   suggestions=[("dog", 0.6)] * len(rest))
    rows = compare(p)
    assert [r["round"] for r in rows] == [r1]  # round 2 made no audit picks
    row = rows[0]
    assert (row["sampler"], row["fraction"], row["picks"], row["labeled"]) == ("entropy", 0.25, 10, 9)
    a, s = row["audit"], row["sampler_picks"]
    assert (a["n"], a["correct"], a["accuracy"]) == (9, 7, pytest.approx(7 / 9))
    assert (a["low"], a["high"]) == pytest.approx(wilson(7, 9)) and a["accepted"] == pytest.approx(1 / 9)
    assert a["changed"] == pytest.approx(2 / 9)
    assert (s["n"], s["correct"], s["accuracy"], s["accepted"]) == (20, 5, 0.25, 0.0)
    # the label now is what counts: a relabel changes the estimate, an undone label leaves it
    p.set_label(audit[0], "dog")
    assert (compare(p)[0]["audit"]["n"], compare(p)[0]["audit"]["correct"]) == (9, 6)
    p.undo()
    p.set_label(audit[9], "cat")
    assert (compare(p)[0]["audit"]["n"], compare(p)[0]["audit"]["correct"]) == (10, 8)
    p.undo()
    assert (compare(p)[0]["audit"]["n"], compare(p)[0]["audit"]["correct"]) == (9, 7)


def test_store_marks_audit_picks_and_refuses_ones_outside_the_batch(tmp_path):
    p = _store(tmp_path, n=12)
    r = p.start_round("random", 10, 0, {})
    with pytest.raises(ValueError, match="not in the round's batch"):
        p.finish_round(r, list(range(1, 13)), [0.0] * 12, list(range(1, 11)) + [None, None], 0, {}, {},
                       audit=[11])
    assert p.queue() == [] and p.current_round_id() is None  # nothing written
    p.finish_round(r, list(range(1, 13)), [0.0] * 12, list(range(1, 11)) + [None, None], 0, {}, {}, audit=[6])
    assert [q["audit"] for q in p.queue()] == [k == 5 for k in range(10)]
    assert p.audit_ids() == {6}


def test_a_project_from_before_the_audit_opens_and_gets_the_column(tmp_path):
    from vaal_core.store.db import split_sql
    from vaal_core.store.schema import MIGRATIONS

    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "project.db")
    for version in (1, 2, 3):
        for statement in split_sql(MIGRATIONS[version]):
            db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('image_root', ?), ('image_size', '32')", (str(tmp_path),))
    db.execute("INSERT INTO classes(name, position) VALUES ('cat', 0), ('dog', 1)")
    for i in range(3):
        db.execute("INSERT INTO items(path, size_bytes, sha1, width, height, cache_index, added_at) "
                   "VALUES (?, 1, ?, 32, 32, ?, 't')", (f"{i}.jpg", str(i), i))
    db.execute("INSERT INTO rounds(sampler, budget, seed, status, settings, created_at) "
               "VALUES ('entropy', 2, 0, 'done', '{}', 't')")
    db.execute("INSERT INTO scores(round_id, item_id, score, rank, suggestion_class_id, confidence) "
               "VALUES (1, 1, 0.9, 1, 1, 0.8), (1, 2, 0.5, 2, 2, 0.7), (1, 3, 0.1, NULL, 1, 0.6)")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    p = Project.open(root)
    assert p.db.schema_version() == SCHEMA_VERSION >= 4
    assert "audit" in {r["name"] for r in p.db.rows("PRAGMA table_info(scores)")}
    assert [(q["item_id"], q["rank"], q["audit"]) for q in p.queue()] == [(1, 1, False), (2, 2, False)]
    assert p.suggestions()[1].label == "cat"  # the old round's data is intact
    assert p.audit_ids() == set() and compare(p) == []
    assert labeling.label_order(p).audit == frozenset()


# -- real rounds ------------------------------------------------------------------------------

@pytest.fixture
def project(cifar_root, tmp_path) -> Project:
    images = make_subset(cifar_root, tmp_path / "images", per_class=20, classes=CLASSES3)
    proj, _, _ = init_project(tmp_path / "proj", images, CLASSES3)
    return proj


def _oracle(p: Project, ids) -> list[tuple[int, str]]:
    return [(i, p.item(i).path.split("/")[0]) for i in ids]


def _expected(p: Project, cfg: RoundConfig, round_id: int) -> tuple[list[int], list[int]]:
    """The batch the sampler alone would pick (random: no model), with the
    audit swapped in, recomputed from the same seeds."""
    items = np.array([it.id for it in p.items()], dtype=np.int64)
    labeled = np.isin(items, list(p.labeled_ids()))
    sel = samplers.select(cfg.sampler, items, {}, items[~labeled], items[labeled], cfg.budget,
                          np.random.default_rng(cfg.seed), n_classes=len(p.classes()))
    return swap_in_audit(sel.ids, sel.pool_ids, cfg.audit, audit_rng(cfg.seed, round_id))


@pytest.mark.slow
def test_a_round_swaps_in_a_seeded_spread_audit_sample(project):
    cfg = RoundConfig(sampler="random", budget=20, seed=3, audit=0.1, fast=True, device="cpu", suggest=False)
    batch, audit = _expected(project, cfg, round_id=1)
    result = run_round(project, cfg)
    assert result.round_id == 1 and len(result.queue) == 20
    assert [q["item_id"] for q in result.queue] == batch  # the sampler's head, audit picks at their slots
    assert [q["rank"] for q in result.queue if q["audit"]] == [k + 1 for k in audit_positions(20, 2)] == [6, 16]
    assert [q["item_id"] for q in result.queue if q["audit"]] == audit
    assert result.metrics["audit"] == {"fraction": 0.1, "n": 2, "ids": audit}
    assert project.round(1)["settings"]["round"]["audit"] == 0.1
    # the CLI lists them; the Label page knows them and the share
    out = json.loads(run_cli("queue", project.root, "--json").stdout)
    assert [it["item_id"] for it in out["items"] if it["audit"]] == audit
    assert all(isinstance(it["audit"], bool) for it in out["items"])
    assert "(random audit pick)" in run_cli("queue", project.root).stdout
    order = labeling.label_order(project)
    assert order.audit == frozenset(audit) and order.audit_fraction == 0.1


@pytest.mark.slow
def test_no_audit_picks_with_audit_zero_or_a_small_batch(project):
    for cfg in (RoundConfig(sampler="random", budget=20, audit=0.0, fast=True, device="cpu", suggest=False),
                RoundConfig(sampler="random", budget=9, audit=0.3, fast=True, device="cpu", suggest=False)):
        round_id = project.rounds()[-1]["id"] + 1 if project.rounds() else 1
        batch, audit = _expected(project, cfg, round_id)
        result = run_round(project, cfg)
        assert audit == [] and not any(q["audit"] for q in result.queue)
        assert [q["item_id"] for q in result.queue] == batch  # exactly the sampler's ranking
        assert result.metrics["audit"]["n"] == 0 and project.audit_ids() == set()


@pytest.mark.slow
def test_bad_audit_values_fail_in_one_line_and_change_nothing(project):
    run_round(project, RoundConfig(sampler="random", budget=20, fast=True, device="cpu", suggest=False))
    before = (project.rounds(), project.queue())
    assert sum(q["audit"] for q in before[1]) == 1  # the default: 5% of 20
    for bad in (0.5, -0.01, 0.9, math.nan):
        with pytest.raises(BadInput, match=f"got {bad}"):
            check_round(project, RoundConfig(sampler="random", budget=20, audit=bad))
    for value, match in (("0.5", "got 0.5"), ("abc", "invalid float value: 'abc'")):
        proc = run_cli("round", project.root, "--sampler", "random", "--budget", "20", "--fast", "--no-suggest",
                       "--device", "cpu", "--audit", value, check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert match in err, err
    assert (project.rounds(), project.queue()) == before


@pytest.mark.slow
def test_the_suggestions_accuracy_on_audit_picks_after_a_real_round(project):
    """The end-to-end path: a round with a task model, the batch labeled by
    the oracle (the folder names), then the Train page's comparison."""
    items = [it.id for it in project.items()]
    project.set_labels(_oracle(project, items[::5]), source="import")  # 12 labels, 4 per class
    result = run_round(project, RoundConfig(sampler="random", budget=20, audit=0.25, fast=True, device="cpu"))
    audit = result.metrics["audit"]["ids"]
    assert len(audit) == 5 and [q["item_id"] for q in result.queue if q["audit"]] == audit
    guesses = project.suggestions()
    assert set(audit) <= set(guesses)
    project.set_labels(_oracle(project, [q["item_id"] for q in result.queue]), source="ui")
    (row,) = compare(project)
    truth = dict(_oracle(project, items))
    right = sum(guesses[i].label == truth[i] for i in audit)
    assert (row["round"], row["picks"], row["labeled"], row["fraction"]) == (result.round_id, 5, 5, 0.25)
    assert (row["audit"]["n"], row["audit"]["correct"]) == (5, right)
    assert (row["audit"]["low"], row["audit"]["high"]) == pytest.approx(wilson(right, 5))
    sampler_ids = [q["item_id"] for q in result.queue if not q["audit"]]
    assert row["sampler_picks"]["n"] == 15
    assert row["sampler_picks"]["correct"] == sum(guesses[i].label == truth[i] for i in sampler_ids)
    suggest = json.loads(run_cli("suggest", project.root, "--json").stdout)
    assert suggest["items"] == []  # everything in the queue is labeled now


# -- the pages ------------------------------------------------------------------------------

@pytest.fixture
def app_project(cifar_root, tmp_path, monkeypatch) -> Project:
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAAL_PROJECT", raising=False)
    images = make_subset(cifar_root, tmp_path / "images", per_class=6, classes=CLASSES3)
    proj, _, _ = init_project(tmp_path / "home" / "projects" / "audit", images, CLASSES3)
    return proj




def _texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "text", "info", "success", "warning")
                     for e in getattr(at, kind))


def _audited_round(project: Project, audit_ranks: list[int], guess: str = "cat") -> tuple[int, list[int]]:
    """A finished round written through the store as run_round writes one:
    the first 12 items ranked, those at `audit_ranks` random audit picks."""
    ids = [it.id for it in project.items()]
    audit = [ids[r - 1] for r in audit_ranks]
    rid = project.start_round("entropy", 12, 0, {})
    project.finish_round(rid, ids, [1.0] * len(ids), [k + 1 if k < 12 else None for k in range(len(ids))], 0, {},
                         {"audit": {"fraction": 0.25, "n": len(audit), "ids": audit}},
                         suggestions=[(guess, 0.8)] * len(ids), audit=audit)
    return rid, ids


def test_label_page_marks_an_audit_pick(app_project):
    _, ids = _audited_round(app_project, [1, 6, 10])
    at = open_page(app_project.root, "views/label.py")
    assert at.text[0].value == app_project.item(ids[0]).path  # rank 1: an audit pick
    marker = "random audit pick (25% of this batch is drawn at random, so the accuracy estimate is honest)"
    assert marker in _texts(at)
    key_button(at, "class_1").click().run()  # labeled: on to rank 2, a sampler pick
    assert at.text[0].value == app_project.item(ids[1]).path and marker not in _texts(at)
    at.segmented_control[0].set_value("Grid").run()
    assert sum("random audit pick" in str(c.value) for c in at.caption) == 2  # ranks 6 and 10 on the page


def test_train_page_compares_sampler_and_audit_picks(app_project):
    rid, ids = _audited_round(app_project, [2, 5, 8])
    at = open_page(app_project.root, "views/train.py")
    heads = lambda: [h.value for h in at.subheader]  # noqa: E731
    assert "Sampler picks vs random audit picks" not in heads()  # no audit pick labeled yet
    app_project.set_labels([(ids[1], "cat"), (ids[4], "cat"), (ids[7], "dog")], source="ui")  # audit: 2 of 3
    app_project.set_labels([(i, "dog") for i in (ids[0], ids[2], ids[3])] + [(ids[5], "cat")], source="ui")
    at.run()
    assert not at.exception, at.exception
    assert "Sampler picks vs random audit picks" in heads()
    table = at.dataframe[-1].value
    lo, hi = wilson(2, 3)
    assert list(table["round"]) == [rid] and list(table["audit labels"]) == [3]
    assert list(table["accuracy on audit picks (95% CI)"]) == [f"67% ({lo:.0%}–{hi:.0%})"]
    assert list(table["sampler labels"]) == [4] and list(table["accuracy on sampler picks (95% CI)"]) == [
        f"25% ({wilson(1, 4)[0]:.0%}–{wilson(1, 4)[1]:.0%})"]
    assert "With few audit labels the interval is wide" in _texts(at)
