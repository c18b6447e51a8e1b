"""The Label page's order and the image server's path checks, on a real
store and real files."""

from __future__ import annotations

import os

import numpy as np

from vaal_core.services import labeling
from vaal_core.data.images import load_image, safe_path
from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import make_subset, tiny_store


def _store(tmp_path, n: int = 8) -> Project:
    return tiny_store(tmp_path, ["a", "b"], n)


def test_order_before_any_round_is_a_fixed_shuffle(tmp_path):
    p = _store(tmp_path)
    order = labeling.label_order(p)
    assert sorted(order.ids) == list(range(1, 9)) and order.round_id is None and order.batch == 0
    assert order.ids != tuple(range(1, 9))  # not ingest (folder) order
    assert labeling.label_order(p).ids == order.ids  # the same after a refresh


def test_order_follows_pushes_then_batch_then_scores(tmp_path):
    p = _store(tmp_path)
    r = p.start_round("vaal", 2, 0, {})
    p.finish_round(r, [1, 2, 3, 4, 5, 6], [0.2, 0.9, 0.1, 0.8, 0.5, 0.3], [None, 1, None, 2, None, None], 0, {}, {})
    p.push_to_front([3])
    order = labeling.label_order(p)
    assert order.ids[:6] == (3, 2, 4, 5, 6, 1)  # pushed, batch by rank, rest by score
    assert set(order.ids[6:]) == {7, 8}  # not scored by the round: last
    assert order.batch == 3 and order.ranks == {2: 1, 4: 2} and order.pushed == {3}
    before = labeling.order_version(p)
    p.push_to_front([6])
    assert labeling.order_version(p) != before  # a push invalidates the cached order

def test_next_to_label_skips_labeled_and_skipped_then_wraps():
    order = labeling.LabelOrder((10, 11, 12, 13, 14), None, 0, {}, {}, frozenset())
    assert labeling.next_to_label(order, {10}, set(), 0) == 1
    assert labeling.next_to_label(order, {10}, {11}, 0) == 2
    assert labeling.next_to_label(order, set(), set(), 3) == 3
    assert labeling.next_to_label(order, {13, 14}, set(), 3) == 0  # wraps around
    assert labeling.next_to_label(order, {10, 12, 13, 14}, {11}, 0) == 1  # only a skipped one left
    assert labeling.next_to_label(order, {10, 11, 12, 13, 14}, set(), 0) is None
    assert labeling.page_of_unlabeled(order, {11}, {12}, 0, 3) == [10, 13, 14]
    assert labeling.page_of_unlabeled(order, {11}, {12}, 0, 10) == [10, 13, 14, 12]


def test_images_are_served_only_from_inside_the_image_root(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=2, classes=["cat", "dog"])
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((images / "cat" / sorted(os.listdir(images / "cat"))[0]).read_bytes())
    p, _, _ = init_project(tmp_path / "proj", images, ["cat", "dog"])
    assert safe_path(p, "../secret.jpg") is None  # outside, by '..'
    assert safe_path(p, "cat/../../secret.jpg") is None
    assert safe_path(p, "/etc/passwd") is None  # absolute
    assert safe_path(p, str(secret)) is None
    assert safe_path(p, "cat/none.jpg") is None  # not there
    ok = p.items()[0]
    assert safe_path(p, ok.path) == images / ok.path
    # a link inside the root is followed while its target stays inside; one that leads out is not,
    # nor a broken or looping one
    os.symlink(secret, images / "cat" / "link.jpg")
    assert safe_path(p, "cat/link.jpg") is None
    os.symlink(images / ok.path, images / "cat" / "link_in.jpg")
    assert safe_path(p, "cat/link_in.jpg") == images / "cat" / "link_in.jpg"
    os.symlink(images / "cat" / "loop.jpg", images / "cat" / "loop.jpg")
    assert safe_path(p, "cat/loop.jpg") is None
    img, note = load_image(p, ok)
    assert note is None and img.size == (32, 32) and img.mode == "RGB"
    # a file that disappears after ingest: the cached copy, with a note that says so
    (images / ok.path).unlink()
    img, note = load_image(p, ok)
    assert "cached copy" in note and img.size == (32, 32)
    cached = np.asarray(img)
    assert cached.std() > 0  # real pixels, not a blank placeholder


# -- what the page says about an image (samplers/words.py, services/label_words.py, maps/why.py) --------

def test_every_registered_sampler_says_what_its_score_means():
    from vaal_core import samplers
    from vaal_core.samplers.words import WORDS, score_words

    scoring = {n for n in samplers.names() if not samplers.get(n).is_policy}
    assert scoring <= set(WORDS), f"samplers without words: {scoring - set(WORDS)}"
    for name in scoring:  # every one gives a sentence for a pick and for the rest, never the bare number
        for score, picked in ((2.0, True), (0.4, False)):
            said = score_words(name, score, picked, n_classes=10)
            assert said and "score 2.000" not in said and "score 0.400" not in said, (name, said)
    assert score_words("vaal", 0.88, True) == \
        "the discriminator's chance this looks labeled: 0.12 — unlike anything labeled so far"
    assert score_words("vaal", 0.2, False).endswith("0.80 — much like images already labeled")
    # a discriminator near chance: the number is given, the words do not pretend
    near = score_words("vaal", 0.51, True, near_chance=True)
    assert "0.49" in near and "near chance" in near and "unlike" not in near
    assert "near chance" in score_words("vaal_diverse", 3.0, True, near_chance=True)
    # a cold start: vaal's score is a k-center distance
    assert score_words("vaal", 1.7, True, {"cold_start": "k-center greedy"}).startswith("no labels yet")
    # pick orders and random numbers say they are only ranks
    for name in ("typiclust", "probcover", "badge", "vaal_diverse"):
        assert "a pick order, not a probability" in score_words(name, 3.0, True)
    assert "only its place in the order counts" in score_words("random", 0.73, True)
    assert score_words("entropy", 2.0, True, n_classes=10).endswith("of at most 2.30 — it is unsure between "
                                                                      "several classes")
    assert "two likeliest classes are 0% apart" in score_words("margin", -0.0, True)  # not "-0%"
    assert score_words("my_new_sampler", 0.5, True).startswith("score 0.500 from my_new_sampler")


def test_place_and_the_grid_enters_split(tmp_path):
    from vaal_core.learn.calibration import Trust
    from vaal_core.services import label_words
    from vaal_core.store import Suggestion

    p = _store(tmp_path)
    r = p.start_round("vaal", 2, 0, {})
    p.finish_round(r, [1, 2, 3, 4, 5, 6], [0.2, 0.9, 0.1, 0.8, 0.5, 0.3], [None, 1, None, 2, None, None], 0, {}, {})
    p.push_to_front([3])
    order, facts = labeling.label_order(p), label_words.round_facts(p, r)
    assert facts.sampler == "vaal" and not facts.trust.calibrated and not facts.near_chance
    assert label_words.place(order, 2, facts, 2) == ("rank 1 of 2 in round 1's batch · the discriminator's chance "
                                                     "this looks labeled: 0.10 — unlike anything labeled so far")
    assert label_words.place(order, 5, facts, 2).startswith("beyond round 1's batch · ")
    assert label_words.place(order, 3, facts, 2) == "pushed to the front from Explore"
    assert label_words.place(order, 7, facts, 2) == "added after the last round (not scored yet)"
    assert label_words.how_chosen(order, 4, facts).startswith("Rank 2 of 2 in round 1's batch, ranked by vaal: VAAL")
    trust = Trust(True, 42, 1.5, 0.2, 0.04, 0.8)
    guesses = {1: Suggestion("a", 0.95, r), 2: Suggestion("b", 0.8, r), 3: Suggestion("a", 0.79, r)}
    sure, unsure = label_words.split(guesses, trust)
    assert sure == {1: "a", 2: "b"} and unsure == {3}
    assert label_words.left_words([1, 2, 3, 4], sure, unsure, label_words.why_not(trust)) == \
        "1 left unlabeled: below 80% calibrated confidence; 1 without a suggestion left unlabeled"
    untrusted = Trust(False, 4, None, None, None, 0.8)
    assert label_words.split(guesses, untrusted) == ({}, frozenset({1, 2, 3}))
    assert label_words.why_not(untrusted) == "its confidence is not calibrated"


def test_why_reads_the_rounds_map_space(tmp_path):
    from vaal_core.maps.why import why

    folder = tmp_path / "rounds" / "1"
    assert why(folder, 3, {1, 2}) == why(folder, 3, set())  # no arrays: nothing to say
    folder.mkdir(parents=True)
    np.save(folder / "item_ids.npy", np.array([1, 2, 3, 4, 5], np.int64))
    np.save(folder / "latents.npy", np.array([[0, 0], [3, 4], [1, 0], [0, 2], [10, 10]], np.float32))
    got = why(folder, 3, {1, 2, 4, 5}, "vae")
    assert got.disc_prob is None and got.space == "the VAE's latent space"
    assert [i for i, _ in got.nearest] == [1, 4, 2]  # nearest first, 3 of them
    assert [round(d, 3) for _, d in got.nearest] == [1.0, round(5 ** 0.5, 3), round(20 ** 0.5, 3)]
    np.save(folder / "disc_prob.npy", np.array([0.9, 0.8, 0.12, 0.5, 0.4], np.float32))
    assert why(folder, 3, {1}, "features").disc_prob == np.float32(0.12)
    assert why(folder, 3, set()).nearest == ()  # nothing labeled yet
    assert why(folder, 9, {1}).space is None  # added after the round: no row


def test_the_next_round_repeats_the_last_ones_settings(tmp_path):
    from dataclasses import asdict

    from vaal_core.loop.round import RoundConfig
    from vaal_core.services import next_round

    p = _store(tmp_path, n=10)
    assert next_round.like_last(p) is None  # no round yet
    cfg = RoundConfig(sampler="auto", budget=6, seed=7, device="cpu", fast=True, audit=0.1)
    r = p.start_round("typiclust", 6, 7, {"round": asdict(cfg)})  # auto chose typiclust
    p.finish_round(r, list(range(1, 11)), [1.0] * 10, [1, 2, 3, 4, 5, 6, None, None, None, None], 0, {}, {})
    p.set_labels([(i, "a") for i in range(1, 6)], source="ui")
    failed = p.start_round("auto", 6, 7, {})
    p.fail_round(failed, "stopped")
    plan = next_round.like_last(p)
    assert plan == next_round.NextRound(after=r, number=failed + 1, sampler="auto", budget=5, fast=True,
                                        device="cpu", seed=7, audit=0.1)  # the budget: at most the pool now
    assert plan.words() == "auto, budget 5, quick models, device cpu, seed 7"
    assert not next_round.busy(p)
    p.set_labels([(i, "b") for i in range(6, 11)], source="ui")
    assert next_round.like_last(p) is None  # nothing left to label
