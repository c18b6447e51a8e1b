"""The suggestions with a feature space: the task model's softmax combined
with a linear probe on the project's features (learn/probe.py), on planted
answers and in real rounds on real JPEGs, recomputed from the round's own
checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_subset
from vaal_core.learn import calibration, probe


def _blobs(n: int, classes: int, spread: float, dims: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features where each class is a Gaussian blob around its own centre."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, dims)) * 3
    return (centres[y] + rng.normal(size=(n, dims)) * spread).astype(np.float32), y


def _noisy_expert(y: np.ndarray, classes: int, right: float, seed: int) -> np.ndarray:
    """Softmaxes that put most weight on the true class for a `right` share
    of the rows and on a random wrong class for the rest."""
    rng = np.random.default_rng(seed)
    guess = np.where(rng.random(len(y)) < right, y, (y + rng.integers(1, classes, len(y))) % classes)
    probs = np.full((len(y), classes), 0.3 / (classes - 1), np.float32)
    probs[np.arange(len(y)), guess] = 0.7
    return probs


def _split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    role = rng.random(n)
    return role < 0.3, (role >= 0.3) & (role < 0.4)  # train 30%, held out 10%, the rest unlabeled


def test_the_probe_carries_what_the_task_model_does_not_know():
    x, y = _blobs(2000, 5, spread=1.0)
    train, held = _split(len(y))
    rest = ~train & ~held
    blind = np.full((len(y), 5), 0.2, np.float32)  # a task model that knows nothing
    made = probe.suggest(blind, x, train, held, y)
    assert (made.probs[rest].argmax(1) == y[rest]).mean() > 0.95  # the probe's knowledge comes through
    assert made.metrics["task_accuracy"] <= 0.3 and made.metrics["probe_accuracy"] > 0.95
    assert made.metrics["n_val"] == held.sum() and made.metrics["n_train"] == train.sum()
    assert np.allclose(made.probs.sum(1), 1, atol=1e-5)


def test_the_task_model_carries_what_the_features_do_not_know():
    rng = np.random.default_rng(1)
    y = np.arange(2000) % 5
    noise = rng.normal(size=(len(y), 32)).astype(np.float32)  # features that know nothing
    train, held = _split(len(y), 1)
    rest = ~train & ~held
    sure = np.full((len(y), 5), 0.01, np.float32)
    sure[np.arange(len(y)), y] = 0.96
    made = probe.suggest(sure, noise, train, held, y)
    assert (made.probs[rest].argmax(1) == y[rest]).mean() == 1.0  # a near-uniform probe does not overrule it


def test_two_experts_with_independent_errors_beat_each_alone():
    x, y = _blobs(3000, 4, spread=12.0, seed=2)  # overlapping blobs: the probe is wrong a third of the time
    train, held = _split(len(y), 2)
    rest = ~train & ~held
    task = _noisy_expert(y, 4, right=0.6, seed=3)
    made = probe.suggest(task, x, train, held, y)
    combined = (made.probs[rest].argmax(1) == y[rest]).mean()
    alone_task = (task[rest].argmax(1) == y[rest]).mean()
    alone_probe = (probe.probe_probs(probe.fit_probe(x[train], y[train]), x[rest], 4).argmax(1) == y[rest]).mean()
    assert combined > max(alone_task, alone_probe) + 0.05, (combined, alone_task, alone_probe)


def test_the_held_out_labels_never_train_the_probe_and_calibrate_the_combination():
    x, y = _blobs(1500, 3, spread=3.0, seed=4)
    train, held = _split(len(y), 4)
    task = _noisy_expert(y, 3, right=0.7, seed=5)
    made = probe.suggest(task, x, train, held, y)
    shuffled = y.copy()
    shuffled[held] = np.random.default_rng(6).permutation(y[held])  # other held-out labels
    again = probe.suggest(task, x, train, held, shuffled)
    assert np.array_equal(made.probs, again.probs)  # only the training labels shaped the probabilities
    assert made.metrics["accuracy"] != again.metrics["accuracy"]  # ... and the held-out ones measured them
    cal = made.metrics["calibration"]
    assert cal["calibrated"] and cal["n_held_out"] == held.sum() >= calibration.MIN_HELD_OUT
    assert cal["temperature"] >= 1 and cal["ece_after"] <= cal["ece_before"] + 0.02


def test_two_experts_that_agree_are_no_surer_together_than_either():
    """The geometric mean: the same opinion twice is that opinion, not a
    squared (overconfident) one; opposite leanings meet in the middle."""
    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.ones(5), size=50).astype(np.float32) * (1 - 5 * probe.FLOOR) + probe.FLOOR
    assert np.allclose(probe.combine(p, p), p / p.sum(1, keepdims=True), atol=1e-5)
    a = np.array([[0.8, 0.2]], np.float32)
    assert np.allclose(probe.combine(a, a[:, ::-1]), [[0.5, 0.5]], atol=1e-6)
    sure = probe.combine(np.array([[0.9, 0.1]], np.float32), np.array([[0.6, 0.4]], np.float32))
    assert 0.6 < sure[0, 0] < 0.9  # between the two, never beyond the surer one


def test_a_class_nobody_labeled_yet_is_not_suggested_but_keeps_a_probability():
    """Both experts learn from the same labels, so a class with none (a class
    the user added but has not labeled yet) is one neither has seen: the
    task model gives it little, the probe nothing, and the combination keeps
    it possible but never suggests it over a class both know."""
    x, y = _blobs(600, 3, spread=0.5, seed=7)
    train, held = _split(len(y), 7)
    train &= y != 2  # no training label of class 2
    task = _noisy_expert(y, 3, right=0.9, seed=8) * np.array([1.0, 1.0, 0.05], np.float32)
    task /= task.sum(1, keepdims=True)  # the task model learnt class 2 from no label either: little weight
    p = probe.probe_probs(probe.fit_probe(x[train], y[train]), x, 3)
    assert np.all(p[:, 2] == 0) and np.allclose(p[:, :2].sum(1), 1, atol=1e-5)
    made = probe.suggest(task, x, train, held, y)
    assert np.all(made.probs[:, 2] > 0)  # floored: the probe alone never rules a class out
    assert not (made.probs.argmax(1) == 2).any()
    seen = y != 2
    assert (made.probs[seen].argmax(1) == y[seen]).mean() > 0.95


def test_what_the_pages_read_of_a_round_with_the_probe():
    from vaal_core.loop.report import _alone, _made_by
    from vaal_core.services.label_words import suggestion_sentence
    from vaal_core.store.queue import Suggestion

    cal = {"calibrated": True, "temperature": 1.7, "n_held_out": 40, "ece_before": 0.2, "ece_after": 0.05}
    metrics = {"task": {"accuracy": 0.5, "n_val": 40, "calibration": {**cal, "temperature": 1.2}, "how": "h"},
               "suggest": {"model": probe.MODEL, "accuracy": 0.6, "n_val": 40, "calibration": cal,
                           "task_accuracy": 0.5, "probe_accuracy": 0.55}}
    made_by = calibration.suggester(metrics)
    assert made_by["accuracy"] == 0.6 and made_by["how"] == "h" and made_by["calibration"] == cal
    trust = calibration.of_round(metrics)
    assert trust.temperature == 1.7 and trust.maker == "task model + feature probe"
    line = suggestion_sentence(Suggestion("cat", 0.9, 3), trust)
    assert line.startswith("Suggested: cat · 90% (round 3's task model + feature probe) — calibrated on 40")
    assert calibration.of_round({"task": metrics["task"]}).maker == "task model"
    assert trust.raw == "the raw combined confidence"
    assert calibration.of_round({"task": metrics["task"]}).raw == "the raw softmax"
    assert calibration.suggester({}) == {} and calibration.suggester({"suggest": {"accuracy": 1}}) == {}
    row = {"suggest_model": probe.MODEL, "model_accuracy": 0.5}
    assert _made_by(row) == "(task model + feature probe) " and _alone(row) == " (the task model alone 50%)"
    assert _made_by({"suggest_model": "task model"}) == "" and _alone({"suggest_model": "task model"}) == ""
    from vaal_core.loop.report import calibration_sentence

    words = calibration_sentence({"round": 3, "calibration": cal, "task_n_val": 40, "suggest_model": probe.MODEL})
    assert "Temperature 1.70: the raw combined confidence was overconfident" in words


# -- real rounds -----------------------------------------------------------------------------

CLASSES4 = ["airplane", "frog", "truck", "cat"]


@pytest.mark.slow
def test_a_rounds_suggestions_are_the_calibrated_combination_of_its_own_models(cifar_root, tmp_path):
    """Real --fast rounds on 400 real JPEGs. A typiclust round computes the
    feature space, so its suggestions combine the task model with the probe;
    recomputed here from the round's checkpoints (task.pt, features.pt) and
    labels, they are what the store holds. The next round (random, which needs
    no features) reuses the kept space and still combines; a --fresh one,
    which ignores what is kept, suggests from the task model alone."""
    import torch

    from vaal_core.config import engine_config
    from vaal_core.data.cache import open_cache
    from vaal_core.data.ingest import init_project
    from vaal_core.learn import task
    from vaal_core.learn.checkpoints import CheckpointDir
    from vaal_core.loop.round import RoundConfig, held_out, run_round

    images = make_subset(cifar_root, tmp_path / "images", per_class=100, classes=CLASSES4)
    project, _, _ = init_project(tmp_path / "proj", images, CLASSES4)
    items = project.items()
    truth = {it.id: CLASSES4.index(it.path.split("/")[0]) for it in items}
    ids = np.array([it.id for it in items])
    engine = engine_config(32, True)
    rng = np.random.default_rng(0)
    first = rng.choice(ids, 300, replace=False)  # 300 of 400 labeled: about 30 held out
    project.set_labels([(int(i), CLASSES4[truth[int(i)]]) for i in first], source="import")

    result = run_round(project, RoundConfig(sampler="typiclust", budget=20, fast=True, device="cpu", audit=0.0))
    made = result.metrics["suggest"]
    assert made["model"] == probe.MODEL and made["n_val"] == result.metrics["task"]["n_val"] > 0
    assert made["task_accuracy"] == result.metrics["task"]["accuracy"]
    assert made["probe_dims"] == min(engine.features.probe_dims, len(ids))

    # Recompute the suggestions from the round's own models and labels.
    kept = CheckpointDir(project.checkpoint_dir)
    feats = kept.load("features")
    assert np.array_equal(feats["item_ids"].numpy(), ids)
    x = feats["probe"].float().numpy()
    model = task.new_task_model(4, engine.task, torch.device("cpu"), 0)
    model.net.load_state_dict(kept.load("task")["net"])
    rows = np.array([it.cache_index for it in items])
    raw = task.predict(model, open_cache(project), rows, "cpu")
    labeled = np.isin(ids, first)
    val = labeled & held_out(ids, engine.task.val_fraction)
    targets = np.array([truth[int(i)] if labeled[k] else -1 for k, i in enumerate(ids)])
    again = probe.suggest(raw, x, labeled & ~val, val, targets)
    assert again.metrics["accuracy"] == made["accuracy"] and again.metrics["probe_accuracy"] == made["probe_accuracy"]
    stored = project.suggestions()
    pool = ~labeled
    assert sorted(stored) == sorted(ids[pool].tolist())
    shown = again.probs[pool]
    if made["calibration"]["calibrated"]:
        shown = calibration.scale(shown, made["calibration"]["temperature"])
    assert [stored[int(i)].label for i in ids[pool]] == [CLASSES4[k] for k in shown.argmax(1)]
    assert np.allclose([stored[int(i)].confidence for i in ids[pool]], shown.max(1), atol=1e-4)
    # The combination is not the task model under another name: their suggestions differ somewhere.
    assert (raw[pool].argmax(1) != again.probs[pool].argmax(1)).any()
    assert calibration.of_round(project.round(result.round_id)["metrics"]).maker == probe.MODEL

    # A round whose sampler needs no features: the kept space is reused, the probe still has its part.
    project.set_labels([(q["item_id"], CLASSES4[truth[q["item_id"]]]) for q in result.queue], source="import")
    second = run_round(project, RoundConfig(sampler="random", budget=20, fast=True, device="cpu", audit=0.0))
    assert second.metrics["features"]["reused"] and second.metrics["suggest"]["model"] == probe.MODEL
    assert second.metrics["suggest"]["n_train"] == second.metrics["task"]["n_train"] > made["n_train"]

    # --fresh ignores what is kept: a random round then has no feature space, and the task model suggests alone.
    third = run_round(project, RoundConfig(sampler="random", budget=20, fast=True, device="cpu", audit=0.0,
                                           fresh=True))
    assert "suggest" not in third.metrics and "features" not in third.metrics
    assert calibration.of_round(project.round(third.round_id)["metrics"]).maker == "task model"
