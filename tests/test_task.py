"""The task model and the task-aware samplers on real CIFAR-10 JPEGs:
every sampler runs a real `--fast` round, suggestions are stored with the
round, the accuracy estimate is held out honestly, warm starts carry over,
and LL4AL's pieces behave as the paper says."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vaal_core import samplers
from vaal_core.learn import task as train
from vaal_core.config import TaskConfig, engine_config
from vaal_core.errors import BadInput
from vaal_core.learn.models import CifarResNet18, LossHead
from vaal_core.store import Project
from vaal_core.loop.report import history, round_summary
from vaal_core.loop.round import RoundConfig, held_out, run_round

from conftest import make_subset, run_cli

pytestmark = pytest.mark.slow

CLASSES3 = ["cat", "ship", "truck"]


@pytest.fixture(scope="module")
def folder(cifar_root, tmp_path_factory):
    """30 real JPEGs of each of 3 classes."""
    return make_subset(cifar_root, tmp_path_factory.mktemp("task") / "images", per_class=30, classes=CLASSES3)


@pytest.fixture(scope="module")
def ingested(folder, tmp_path_factory):
    """The folder ingested once (a real project.db and decode cache); tests
    work on copies."""
    from vaal_core.data.ingest import init_project

    root = tmp_path_factory.mktemp("base") / "proj"
    init_project(root, folder, gold_from_folders=True)[0].close()
    return root


def _project(ingested, tmp_path, n_labeled: int = 30) -> Project:
    """A copy of the ingested project with `n_labeled` gold labels: every
    third image, so all three classes are labeled."""
    shutil.copytree(ingested, tmp_path / "proj")
    project = Project.open(tmp_path / "proj")
    items = project.items()
    project.set_labels([(it.id, it.gold) for it in items[::3][:n_labeled]])
    return project


@pytest.mark.parametrize("name", sorted(set(samplers.names()) - {"random", "vaal", "coreset"}))
def test_every_task_aware_sampler_runs_a_real_round(name, ingested, tmp_path):
    project = _project(ingested, tmp_path)
    labeled = project.labeled_ids()
    result = run_round(project, RoundConfig(sampler=name, budget=7, fast=True, device="cpu"))
    assert len(result.queue) == 7  # odd on purpose: LL4AL pairs a batch with its reverse
    assert not {q["item_id"] for q in result.queue} & labeled
    task = result.metrics["task"]
    assert task["arch"] == "cnn" and task["loss_head"] == (name in ("ll4al", "ta_vaal"))
    assert task["n_train"] + task["n_val"] == 30 and task["n_val"] >= 1
    assert 0.0 <= task["accuracy"] <= 1.0 and "held out" in task["how"]
    # a suggestion for every image of the pool, none for the labeled ones
    guesses = project.suggestions()
    assert set(guesses) == {it.id for it in project.items()} - labeled
    assert {g.label for g in guesses.values()} <= set(CLASSES3)
    assert all(0.0 < g.confidence <= 1.0 for g in guesses.values())
    assert {g.round_id for g in guesses.values()} == {result.round_id}
    if name == "ta_vaal":  # the conditioned VAE keeps its own checkpoint, and the Explore page its latents
        state = torch.load(project.checkpoint_dir / "ta_vaal.pt", weights_only=True)
        assert state["vae_config"]["cond_dim"] == 1
        assert (project.round_dir(result.round_id) / "latents.npy").is_file()
    if name == "ll4al":
        head = torch.load(project.checkpoint_dir / "task.pt", weights_only=True)["head"]
        assert head is not None and head["out.weight"].shape == (1, 4 * 128)


def test_task_samplers_hand_rounds_to_typiclust_until_two_classes_are_labeled(ingested, tmp_path):
    """With labels of one class there is no classifier to be uncertain: the
    round is typiclust's, recorded as chosen for the sampler asked for (as
    `auto`'s choices are), with no task model and no suggestions. Once the
    labels cover 2 classes the sampler ranks itself."""
    project = _project(ingested, tmp_path, n_labeled=0)
    cats = [it.id for it in project.items() if it.gold == "cat"][:5]
    project.set_labels([(i, "cat") for i in cats])
    result = run_round(project, RoundConfig(sampler="ll4al", budget=3, fast=True, device="cpu"))
    assert result.sampler == "typiclust" and len(result.queue) == 3
    policy = result.metrics["policy"]
    assert (policy["name"], policy["chose"]) == ("ll4al", "typiclust")
    assert "ll4al ranks by a classifier" in policy["why"] and "5 labels of 1 class)" in policy["why"]
    assert "task" not in result.metrics and project.suggestions() == {}
    assert project.rounds()[-1]["sampler"] == "typiclust"
    # the terminal's summary (python -m vaal_core round) says it as the Train page does
    assert "\nll4al used typiclust this round. Why: ll4al ranks by" in round_summary(result)
    # a second class labeled: ll4al's own round, its loss head trained
    ships = [it.id for it in project.items() if it.gold == "ship"][:5]
    project.set_labels([(i, "ship") for i in ships])
    own = run_round(project, RoundConfig(sampler="ll4al", budget=3, fast=True, device="cpu"))
    assert own.sampler == "ll4al" and "policy" not in own.metrics and "task" in own.metrics


def test_warm_start_validation_slice_and_history(ingested, tmp_path):
    project = _project(ingested, tmp_path)
    first = run_round(project, RoundConfig(sampler="entropy", budget=5, fast=True, device="cpu"))
    assert first.metrics["task"]["warm_start"] is False
    # label the batch with its gold classes, then the next round starts from these weights
    project.set_labels([(q["item_id"], project.item(q["item_id"]).gold) for q in first.queue])
    second = run_round(project, RoundConfig(sampler="margin", budget=5, fast=True, device="cpu"))
    task = second.metrics["task"]
    assert task["warm_start"] is True and task["n_train"] + task["n_val"] == 35
    # the slice is a fixed function of the item id: what was held out stays held out
    ids = np.array(sorted(project.labeled_ids()))
    assert held_out(ids, 0.1).tolist() == held_out(ids, 0.1).tolist()
    first_ids = ids[np.isin(ids, list(set(ids.tolist()) - {q["item_id"] for q in first.queue}))]
    assert held_out(first_ids, 0.1).sum() == first.metrics["task"]["n_val"]
    assert abs(held_out(np.arange(100_000), 0.1).mean() - 0.1) < 0.005
    rows = history(project)
    assert rows[-1]["task_accuracy"] == task["accuracy"] and rows[-1]["task_n_val"] == task["n_val"]
    # reordering the classes changes what each output means: a fresh start
    project.reorder_classes(list(reversed(project.classes())))
    third = run_round(project, RoundConfig(sampler="entropy", budget=5, fast=True, device="cpu"))
    assert third.metrics["task"]["warm_start"] is False
    # too few labels for a held-out slice: an honest "no estimate"
    few = _project(ingested, tmp_path / "few", n_labeled=12)
    result = run_round(few, RoundConfig(sampler="least_confidence", budget=3, fast=True, device="cpu"))
    assert result.metrics["task"]["accuracy"] is None and result.metrics["task"]["n_val"] == 0
    assert "too few" in result.metrics["task"]["how"]


def test_ranking_loss_pairs_odd_batches_and_orders_losses():
    target = torch.tensor([3.0, 1.0, 2.0, 0.0, 5.0])  # pairs (0, 4) and (1, 3); item 2 unpaired
    right = torch.tensor([3.0, 1.0, 99.0, -1.0, 6.0])  # ordered as the targets by >= 1
    assert LossHead.ranking_loss(right, target, 1.0).item() == 0.0
    wrong = torch.tensor([6.0, -1.0, 0.0, 1.0, 3.0])  # both pairs reversed by 3 and 2
    # pair 0: target 3 - 5 < 0, pred 6 - 3 = 3: max(0, 1 + 3) = 4; pair 1: 1 - 0 > 0, -1 - 1 = -2: 1 + 2 = 3
    assert LossHead.ranking_loss(wrong, target, 1.0).item() == pytest.approx((4 + 3) / 2)
    single = torch.tensor([1.0], requires_grad=True)
    loss = LossHead.ranking_loss(single, torch.tensor([2.0]), 1.0)
    assert loss.item() == 0.0
    loss.backward()  # no pair, but the graph is intact


def test_loss_head_learns_to_rank_real_losses(folder):
    """After LL4AL training on real images, the head's predicted loss ranks
    images by their true loss better than chance (Spearman > 0.2)."""
    from vaal_core.data.ingest import load_folder

    images, _, golds, _ = load_folder(folder, 32)
    y = np.array([CLASSES3.index(g) for g in golds])
    rows = np.arange(len(y))
    cfg = engine_config(32, fast=True).task
    model = train.new_task_model(3, cfg, torch.device("cpu"), seed=0, loss_head=True)
    train.train_task(model, images, rows, y, cfg, torch.device("cpu"), seed=0)
    out = train.run_task(model, images, rows, torch.device("cpu"))
    true_loss = -np.log(np.clip(out.probs[rows, y], 1e-12, 1))
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    spearman = np.corrcoef(rank(out.pred_loss), rank(true_loss))[0, 1]
    assert spearman > 0.2, spearman


def test_loss_head_gradient_stops_reaching_the_backbone(monkeypatch):
    """The ranking loss alone: before the stop point the backbone gets a
    gradient from it, after it none (checked through train_task's own
    switch by making the classification term vanish)."""
    cfg = TaskConfig(arch="cnn", width=4, epochs=1, batch_size=4, optimizer="adamw", lr=1e-3, min_steps=10,
                     loss_stop_fraction=0.5, loss_weight=1.0)
    images = np.random.default_rng(0).integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    model = train.new_task_model(2, cfg, torch.device("cpu"), seed=0, loss_head=True)
    grads = []
    real_ce = torch.nn.functional.cross_entropy

    def no_class_gradient(logits, y, **kw):  # keeps the per-image values, drops their gradient
        return real_ce(logits.detach(), y, **kw)

    monkeypatch.setattr(train.F, "cross_entropy", no_class_gradient)
    first_conv = model.net.stages[0][0].weight
    first_conv.register_hook(lambda g: grads.append(float(g.abs().sum())))
    train.train_task(model, images, np.arange(8), np.array([0, 1] * 4), cfg, torch.device("cpu"), seed=0)
    # steps 1-5 reach the backbone through the head, steps 6-10 do not (no hook call)
    assert len(grads) == 5 and all(g > 0 for g in grads)


def test_cifar_resnet18_and_pretrained_weights(tmp_path):
    from torchvision.models import resnet18

    cfg = TaskConfig()
    net = CifarResNet18(10, cfg)
    feats = net.features(torch.zeros(2, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    # an ImageNet-shaped torchvision state dict: everything but the 7x7 stem and the 1000-way head loads
    imagenet = resnet18()
    loaded, left = net.load_backbone(imagenet.state_dict())
    assert left == ["conv1.weight", "fc.bias", "fc.weight"] and loaded == len(imagenet.state_dict()) - 3
    assert torch.equal(net.net.layer4[1].conv2.weight, imagenet.layer4[1].conv2.weight)


def test_pretrained_file_errors_name_the_file(ingested, tmp_path):
    project = _project(ingested, tmp_path)
    with pytest.raises(BadInput, match="w.pth does not exist"):
        run_round(project, RoundConfig(sampler="entropy", budget=3, fast=True, pretrained=str(tmp_path / "w.pth")))
    with pytest.raises(BadInput, match="w.pth does not exist"):
        run_round(project, RoundConfig(sampler="entropy", budget=3, pretrained=str(tmp_path / "w.pth")))
    from vaal_core.learn.task import load_pretrained as _load_pretrained

    bad = tmp_path / "other.pth"
    torch.save({"something.else": torch.zeros(3)}, bad)
    model = train.new_task_model(3, TaskConfig(), torch.device("cpu"), seed=0)
    with pytest.raises(BadInput, match="other.pth holds no tensor of a torchvision ResNet-18"):
        _load_pretrained(model, bad)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(BadInput, match="cannot read pretrained weights .*junk.pth"):
        _load_pretrained(model, junk)
    assert project.rounds() == []


def test_cli_round_and_suggest(ingested, tmp_path):
    project = _project(ingested, tmp_path)
    root = project.root
    empty = run_cli("suggest", root).stdout
    assert "the queue is empty" in empty
    out = json.loads(run_cli("round", root, "--sampler", "ll4al", "--budget", "6", "--fast", "--json").stdout)
    assert out["metrics"]["task"]["loss_head"] and out["queue_length"] == 6
    text = run_cli("round", root, "--sampler", "ll4al", "--budget", "6", "--fast").stdout
    assert "task model (cnn, warm start)" in text and "suggestions stored" in text
    got = json.loads(run_cli("suggest", root, "--json").stdout)
    assert [r["path"] for r in got["items"]] == [q["path"] for q in Project.open(root).queue()]
    stored = Project.open(root).suggestions()
    for row in got["items"]:
        assert (row["suggestion"], row["confidence"]) == tuple(stored[row["item_id"]][:2])
    assert got["task"]["n_val"] >= 1 and "held out" in got["task"]["how"]
    human = run_cli("suggest", root, "--limit", "2").stdout.splitlines()
    assert len(human) == 4 and human[0].split()[0] == "1" and human[0].split()[1] in CLASSES3
    assert "suggestions of round 2 (task model): " in human[-2] and got["task"]["model"] == "task model"
    # a handful of labels hold too few out to calibrate: the confidence says it is the raw softmax
    assert human[-1].startswith("confidence: not calibrated") and "raw softmax" in human[-1]
    assert got["calibration"]["calibrated"] is False
    # --no-suggest skips the task model when the sampler needs none
    out = json.loads(run_cli("round", root, "--sampler", "random", "--budget", "3", "--fast", "--no-suggest",
                             "--json").stdout)
    assert "task" not in out["metrics"]
    assert "trained no task model" in run_cli("suggest", root).stdout


def test_auto_round_says_what_it_chose_and_keeps_its_feature_space(ingested, tmp_path):
    """The default round (auto) on a project with no labels: typiclust in a
    patch feature space learned from the project's images, recorded with the round;
    the next round, with the same images, reuses the space without training."""
    project = _project(ingested, tmp_path, n_labeled=0)
    first = run_round(project, RoundConfig(budget=6, fast=True, device="cpu"))
    assert first.sampler == "typiclust" and len(first.queue) == 6
    policy, space = first.metrics["policy"], first.metrics["features"]
    assert policy["name"] == "auto" and policy["chose"] == "typiclust" and "fewer than 2 classes" in policy["why"]
    assert space["source"] == "patches" and space["images"] == len(project.items()) and not space.get("reused")
    assert first.metrics["typiclust"]["clusters"] == 6
    assert (project.checkpoint_dir / "features.pt").is_file()
    # no VAE trained: the Explore page maps the feature space instead, one unit-length row per item
    assert first.metrics["map_space"] == "features"
    mapped = np.load(project.round_dir(first.round_id) / "latents.npy")
    assert mapped.shape[0] == len(project.items()) and np.allclose(np.linalg.norm(mapped, axis=1), 1, atol=1e-4)
    # the first batch covers the classes better than one class would: typical images of several clusters
    gold = {it.id: it.gold for it in project.items()}
    assert len({gold[q["item_id"]] for q in first.queue}) >= 2
    project.set_labels([(q["item_id"], gold[q["item_id"]]) for q in first.queue])
    second = run_round(project, RoundConfig(budget=6, fast=True, device="cpu"))
    assert second.metrics["features"]["reused"] and second.metrics["features"]["seconds"] == 0.0
    assert second.metrics["policy"]["chose"] == "typiclust"  # 6 labels over 3 classes: a low budget
    assert not {q["item_id"] for q in second.queue} & project.labeled_ids()
