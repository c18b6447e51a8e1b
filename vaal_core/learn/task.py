"""The task classifier, trained on the labels every round: for the label
suggestions, for the task-aware samplers (its class probabilities, its
MC-dropout samples, LL4AL's loss-prediction head) and for the accuracy a
simulation measures. Warm-started across rounds; nothing here knows about
the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vaal_core.config import TaskConfig
from vaal_core.errors import BadInput, RoundCancelled
from vaal_core.learn.accel import Accel
from vaal_core.learn.batches import BatchStream, check_finite, random_crop, random_flip, to_tensor
from vaal_core.learn.checkpoints import read_user_weights
from vaal_core.learn.models import LossHead, TaskNet, build_task_net
from vaal_core.progress import Phase, Progress, Steps


@dataclass
class TaskModel:
    """A task classifier and, when a task-aware sampler asked for one, its
    LL4AL loss-prediction head. Warm-started across rounds as a whole."""

    net: TaskNet
    head: LossHead | None = None


def new_task_model(num_classes: int, cfg: TaskConfig, device: torch.device, seed: int,
                   loss_head: bool = False, accel: Accel | None = None) -> TaskModel:
    torch.manual_seed(seed)
    net = build_task_net(num_classes, cfg).to(device)
    if accel is not None:
        accel.prepare(net)
    return TaskModel(net, LossHead(net.stage_channels).to(device) if loss_head else None)


def class_weights(targets: np.ndarray, num_classes: int, device: torch.device) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set weighs 1 each:
    on a skewed labeled set rare classes count as much as common ones.
    Classes with no labels get weight 0 (they cannot appear as targets)."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weight = np.where(present, counts.sum() / np.maximum(counts, 1) / max(present.sum(), 1), 0.0)
    return torch.tensor(weight, dtype=torch.float32, device=device)


def train_task(model: TaskModel, images: np.ndarray | torch.Tensor, rows: np.ndarray, targets: np.ndarray,
               cfg: TaskConfig, device: torch.device, seed: int, progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None, accel: Accel | None = None) -> dict[str, Any]:
    """Train `model` in place on the labeled rows (warm start: whatever
    weights it holds), with random crop (padding 4) and flip augmentation and
    a class-weighted cross-entropy. With a loss head, the LL4AL objective is
    added: the head learns to rank the per-image (unweighted) losses with a
    margin ranking loss, and after `loss_stop_fraction` of the steps its
    gradient no longer reaches the backbone. Returns the last losses and the
    step count; the model is left in eval mode. `accel`: forward passes
    under its autocast and memory layout, losses in float32."""
    accel = accel or Accel(torch.device(device))
    scaler = accel.scaler()
    dist = accel.dist  # several processes: each its share of the rows, 1/N of each batch (learn/distributed.py)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + dist.rank)
    steps = max(cfg.min_steps, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))  # the same on every rank
    detach_after = int(cfg.loss_stop_fraction * steps)
    params = list(model.net.parameters()) + (list(model.head.parameters()) if model.head is not None else [])
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    weight = class_weights(targets, model.net.fc.out_features, device)
    by_row = dict(zip(np.asarray(rows).tolist(), np.asarray(targets).tolist()))
    stream = BatchStream(dist.shard(rows), dist.batch(cfg.batch_size), rng)
    report = Steps(progress, Phase.TASK, steps, items_per_step=min(cfg.batch_size, len(rows)))
    report(0)
    model.net.train()
    if model.head is not None:
        model.head.train()
    last: dict[str, float] = {}
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled while training the task model (step {step} of {steps}); "
                                 "the previous queue is kept")
        batch = stream.next()
        x = accel.layout(random_crop(random_flip(to_tensor(images, batch, device), gen), 4, gen))
        y = torch.tensor([by_row[r] for r in batch.tolist()], device=device)
        with accel.autocast():
            feats = model.net.features(x)
            logits = model.net.classify(model.net.pooled(feats))
        per_image = F.cross_entropy(logits.float(), y, reduction="none")  # (B,) the loss LL4AL predicts
        loss = (per_image * weight[y]).sum() / weight[y].sum()  # = F.cross_entropy(..., weight=weight)
        last = {"task_loss": loss.item()}
        if model.head is not None:
            head_in = feats if step <= detach_after else [f.detach() for f in feats]
            with accel.autocast():
                predicted = model.head(head_in)
            rank = LossHead.ranking_loss(predicted.float(), per_image, cfg.loss_margin)
            loss = loss + cfg.loss_weight * rank
            last["rank_loss"] = rank.item()
        check_finite("task model", loss, step)
        scaler.step(loss, opt)
        sched.step()
        report(step, **last)
    model.net.eval()
    if model.head is not None:
        model.head.eval()
    return {**last, "steps": steps}


@dataclass
class TaskOutputs:
    """A task model's eval-mode outputs for some rows, no augmentation."""

    probs: np.ndarray  # (N, C) softmax
    pred_loss: np.ndarray | None = None  # (N,) the loss head's prediction
    mc_probs: np.ndarray | None = None  # (T, N, C) softmax under sampled dropout
    embed: np.ndarray | None = None  # (N, D) pooled penultimate features (what the last layer reads)


@torch.no_grad()
def run_task(model: TaskModel, images: np.ndarray | torch.Tensor, rows: np.ndarray, device: torch.device,
             mc_samples: int = 0, seed: int = 0, batch_size: int | None = None,
             progress: Progress | None = None, accel: Accel | None = None) -> TaskOutputs:
    """Class probabilities, the loss head's predictions (with a head) and,
    with `mc_samples`, that many MC-dropout samples of the last layer, which
    reuse the features of one forward pass (dropout is only there).
    Batches of `accel.score_batch` unless `batch_size` is given."""
    accel = accel or Accel(torch.device(device))
    batch_size = batch_size or accel.score_batch
    net, head = model.net, model.head
    was = net.training, head.training if head is not None else False
    net.eval()
    if head is not None:
        head.eval()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the dropout masks
    probs, losses, mc, embed = [], [], [], []
    starts = range(0, len(rows), batch_size)
    report = Steps(progress, Phase.PREDICT, len(starts), items_per_step=batch_size)
    report(0)
    try:
        for k, i in enumerate(starts, start=1):
            with accel.autocast():
                feats = net.features(accel.layout(to_tensor(images, rows[i:i + batch_size], device)))
                pooled = net.pooled(feats)
                logits = net.classify(pooled)
                loss_pred = head(feats) if head is not None else None
            pooled = pooled.float()  # MC dropout below samples the last layer in float32
            probs.append(torch.softmax(logits.float(), 1).cpu())
            embed.append(pooled.cpu())
            if loss_pred is not None:
                losses.append(loss_pred.float().cpu())
            if mc_samples:
                mc.append(torch.stack([torch.softmax(net.classify(pooled, dropout=True).float(), 1)
                                       for _ in range(mc_samples)]).cpu())  # (T, B, C)
            report(k)
    finally:
        torch.random.set_rng_state(gen_state)
        net.train(was[0])
        if head is not None:
            head.train(was[1])
    n_classes = net.fc.out_features
    return TaskOutputs(
        probs=torch.cat(probs).numpy() if probs else np.zeros((0, n_classes), np.float32),
        pred_loss=(torch.cat(losses).numpy() if losses else np.zeros(0, np.float32)) if head is not None else None,
        mc_probs=(torch.cat(mc, 1).numpy() if mc else np.zeros((mc_samples, 0, n_classes), np.float32))
        if mc_samples else None,
        embed=torch.cat(embed).numpy() if embed else np.zeros((0, net.fc.in_features), np.float32))


def predict(model: TaskModel, images: np.ndarray | torch.Tensor, rows: np.ndarray, device: torch.device,
            accel: Accel | None = None) -> np.ndarray:
    """Class probabilities (len(rows), classes), eval mode, no augmentation."""
    return run_task(model, images, rows, device, accel=accel).probs


def load_pretrained(model: TaskModel, path: Path) -> dict[str, Any]:
    """A user's torchvision ResNet-18 weights (e.g. ImageNet) as the task
    model's starting point, from a local file only."""
    state = read_user_weights(path, "a torchvision ResNet-18")
    if not hasattr(model.net, "load_backbone"):
        raise BadInput(f"{path} is not a ResNet-18 state dict")
    loaded, left = model.net.load_backbone(state)
    if loaded == 0:
        raise BadInput(f"{path} holds no tensor of a torchvision ResNet-18 (names and shapes do not match)")
    return {"file": str(path), "tensors_loaded": loaded, "left_fresh": left}
