"""The round pipeline that the app's rounds and the simulation share: which
producers a sampler's needs call for, what they compute, where their models
live between rounds, and fresh runs shared between samplers. On real
CIFAR-10 JPEGs decoded as a project's cache would be."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vaal_core import samplers
from vaal_core.config import engine_config
from vaal_core.learn import pipeline
from vaal_core.learn.checkpoints import CheckpointDir, InMemory
from vaal_core.progress import Phase

from conftest import make_subset

pytestmark = pytest.mark.slow

CLASSES3 = ["airplane", "cat", "ship"]


@pytest.fixture(scope="module")
def images(cifar_root, tmp_path_factory):
    from vaal_core.data.ingest import load_folder

    folder = make_subset(cifar_root, tmp_path_factory.mktemp("pipe") / "images", per_class=20, classes=CLASSES3)
    pixels, paths, golds, _ = load_folder(folder, 32)
    return pixels, np.array([CLASSES3.index(g) for g in golds])


def _data(images, n_labeled=15, held_out=0):
    pixels, y = images
    n = len(pixels)
    ids = np.arange(100, 100 + n)  # item ids are not rows: the pipeline must not mix them up
    rows = np.arange(n)
    labeled = np.zeros(n, dtype=bool)
    labeled[np.random.default_rng(0).choice(n, n_labeled, replace=False)] = True
    hold = labeled & (np.cumsum(labeled) <= held_out)
    return pipeline.RoundData(pixels, ids, rows, labeled, np.where(labeled, y, -1), CLASSES3,
                              task_train=labeled & ~hold, eval_rows=rows[hold], eval_targets=y[hold])


def _job(data, models, seed=0, events=None, shared=None):
    return pipeline.Job(data, engine_config(32, fast=True), "cpu", seed, models,
                        None if events is None else events.append, shared=shared)


def test_plan_follows_declared_needs_and_their_dependencies():
    def names(needs):
        return [(p.name, sorted(wanted)) for p, wanted in pipeline.plan(needs)]

    assert names([]) == []
    assert names(["latents"]) == [("vaal", ["latents"])]
    assert names(["task_probs", "disc_prob"]) == [("task", ["task_probs"]), ("vaal", ["disc_prob"])]
    assert names(["ta_disc_prob"]) == [("task", ["pred_loss"]), ("ta_vaal", ["ta_disc_prob"])]
    assert pipeline.phases(["ta_disc_prob"]) == [Phase.TASK, Phase.PREDICT, Phase.TRAIN, Phase.SCORE]
    assert pipeline.uses_task_model(samplers.get("ta_vaal").needs) and not pipeline.uses_task_model({"latents"})
    assert pipeline.task_needs(samplers.get("ta_vaal").needs) == {"pred_loss"}  # its classifier has the loss head
    assert pipeline.task_needs(samplers.get("vaal").needs) == frozenset()
    assert pipeline.trains_vae({"ta_disc_prob"}) and not pipeline.trains_vae({"task_probs"})
    with pytest.raises(ValueError, match="no producer computes gradients.*pipeline.py"):
        pipeline.plan(["gradients"])
    for name in samplers.names():  # every registered sampler can be served
        pipeline.plan(samplers.get(name).needs)


def test_produces_only_what_is_needed_and_warm_starts_from_the_store(images):
    data = _data(images, n_labeled=30, held_out=6)
    models, events = InMemory(), []
    made = pipeline.produce({"latents", "disc_prob"}, _job(data, models, events=events))
    n = len(data.item_ids)
    assert set(made.values) == {"latents", "disc_prob"} and made.values["latents"].shape == (n, 32)
    assert made.values["disc_prob"].shape == (n,) and np.all((made.values["disc_prob"] > 0)
                                                           & (made.values["disc_prob"] < 1))
    assert "task" not in made.metrics and models.has("vaal") and not models.has("task")  # no task model trained
    assert made.metrics["warm_start"] is False and set(made.timings) == {"train_s", "score_s"}
    assert [e.phase for e in events if e.done == 0 and e.total] == [Phase.TRAIN, Phase.SCORE]
    again = pipeline.produce({"latents", "disc_prob"}, _job(data, models))
    assert again.metrics["warm_start"] is True
    train = engine_config(32, fast=True).train
    assert again.metrics["iterations"] == train.iterations(int((~data.labeled).sum()), warm=True)
    # the task model: trained on its share of the labels, measured on the held-out ones
    task = pipeline.produce({"task_probs", "task_mc"}, _job(data, models)).metrics["task"]
    assert task["n_train"] == 24 and task["n_val"] == 6 and 0 <= task["accuracy"] <= 1
    # only measured (a simulation's accuracy): no pass over the round's items
    events.clear()
    measured = pipeline.produce({"task_model"}, _job(data, models, events=events))
    assert measured.values == {} and measured.metrics["task"]["n_val"] == 6
    assert {e.phase for e in events} == {Phase.TASK} and pipeline.phases({"task_model"}) == [Phase.TASK]


def test_a_warm_task_model_trains_fewer_passes_than_a_fresh_one(images):
    # A warm model has had the earlier rounds' passes; one from scratch needs more (README,
    # "How long the task model trains"). Few enough steps a pass that the passes decide the steps.
    data = _data(images, n_labeled=24)
    fast = engine_config(32, fast=True)
    engine = replace(fast, task=replace(fast.task, min_steps=1, batch_size=8))
    models = InMemory()
    fresh, warm = (pipeline.produce({"task_model"}, pipeline.Job(data, engine, "cpu", 0, models)).metrics["task"]
                   for _ in range(2))
    assert (fresh["warm_start"], fresh["epochs"], fresh["steps"]) == (False, 30, 90)  # 30 passes x 24 / 8
    assert (warm["warm_start"], warm["epochs"], warm["steps"]) == (True, 15, 45)
    # no warm setting (the reference size): a warm round trains as many passes as a fresh one
    same = replace(engine, task=replace(engine.task, epochs_warm=None))
    again = pipeline.produce({"task_model"}, pipeline.Job(data, same, "cpu", 0, models)).metrics["task"]
    assert (again["warm_start"], again["epochs"], again["steps"]) == (True, 30, 90)  # warm, yet trained as fresh


def test_no_labels_means_no_discriminator(images):
    data = _data(images, n_labeled=0)
    made = pipeline.produce({"latents", "disc_prob"}, _job(data, InMemory()))
    assert made.values["disc_prob"] is None and made.latent_space()[1] is None
    sel = samplers.select("vaal", data.item_ids, made.values, data.item_ids, data.item_ids[:0], 5,
                          np.random.default_rng(0))
    assert "cold_start" in sel.notes


def test_ta_vaal_is_conditioned_on_the_loss_head(images):
    data = _data(images)
    made = pipeline.produce(samplers.get("ta_vaal").needs, _job(data, InMemory()))
    assert set(made.values) >= {"pred_loss", "task_probs", "ta_latents", "ta_disc_prob"}
    assert made.metrics["task"]["loss_head"] is True
    assert made.latent_space()[0] is made.values["ta_latents"]  # what the map shows for a TA-VAAL round


def test_fresh_runs_on_the_same_labels_are_shared(images):
    data, shared = _data(images), {}
    first_store, second_store = InMemory(), InMemory()
    first = pipeline.produce({"task_model", "latents"}, _job(data, first_store, shared=shared))
    # made for the memo: the predictions that do not change training, for whoever reads them next
    assert set(first.values) >= {"task_probs", "task_mc", "latents", "disc_prob"}
    second = pipeline.produce({"task_mc", "disc_prob"}, _job(data, second_store, shared=shared))
    assert second.values["latents"] is first.values["latents"]  # reused, not retrained
    assert second.values["task_mc"] is first.values["task_mc"]
    assert second_store.has("vaal") and second_store.has("task")  # the next round can warm-start
    # trained another way (LL4AL's loss head), or measured on other rows: not the same run
    head = pipeline.produce({"pred_loss"}, _job(data, InMemory(), shared=shared))
    assert head.metrics["task"]["loss_head"] and head.values["task_probs"] is not first.values["task_probs"]
    other_eval = _data(images, held_out=3)
    assert pipeline.produce({"task_model"}, _job(other_eval, InMemory(), shared=shared)).metrics["task"]["n_val"] == 3
    # a different seed, other labels, or a run that is no longer fresh: trained for itself
    other_seed = pipeline.produce({"task_probs"}, _job(data, InMemory(), seed=1, shared=shared))
    assert other_seed.values["task_probs"] is not first.values["task_probs"]
    warm = pipeline.produce({"task_probs"}, _job(data, second_store, shared=shared))
    assert warm.metrics["task"]["warm_start"] is True
    # sharing changes nothing: the same inputs trained alone give the same numbers
    alone = pipeline.produce({"task_probs", "latents"}, _job(data, InMemory()))
    assert np.allclose(alone.values["task_probs"], first.values["task_probs"])
    assert np.allclose(alone.values["latents"], first.values["latents"])


def test_checkpoint_dir_saves_for_the_next_round_and_fresh_ignores_it(images, tmp_path):
    data = _data(images)
    store = CheckpointDir(tmp_path / "checkpoints")
    pipeline.produce({"task_probs"}, _job(data, store))
    assert (tmp_path / "checkpoints" / "task.pt").is_file() and store.has("task")
    assert pipeline.produce({"task_probs"}, _job(data, store)).metrics["task"]["warm_start"] is True
    fresh = CheckpointDir(tmp_path / "checkpoints", fresh=True)
    assert not fresh.has("task") and fresh.load("task") is None
    assert pipeline.produce({"task_probs"}, _job(data, fresh)).metrics["task"]["warm_start"] is False
    assert store.has("task")  # a fresh start still saves for the round after it
