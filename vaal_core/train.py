"""Training loops: VAAL's VAE/discriminator game (and TA-VAAL's conditioned
one), scoring, and the task classifier with its optional LL4AL loss head.

Images come from the decoded uint8 cache (N, S, S, 3) and are indexed by cache
row; nothing here knows about the store. Every loop takes a seed, reports
progress through a callback, stops when `should_stop()` turns true, and fails
with TrainingDiverged the moment a loss is NaN or infinite.

Deliberate differences from the VAAL reference code (see DESIGN.md):
- models are put in eval mode for scoring and validation and back in train
  mode for training, every time;
- scoring uses no augmentation (training uses horizontal flips);
- the iteration budget follows the pool size and rounds warm-start from the
  previous round's weights instead of ~39k iterations from scratch;
- one loss scale, chosen on purpose (see VAE.loss).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vaal_core.config import TaskConfig, TrainConfig
from vaal_core.errors import BadInput, RoundCancelled, TrainingDiverged
from vaal_core.models import VAE, Discriminator, LossHead, TaskNet, build_task_net

Progress = Callable[[dict[str, Any]], None]


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is not
    there is an error rather than a silent fallback."""
    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    if name == "mps" and not has_mps:
        raise BadInput("--device mps was asked for but Apple's MPS is not available; use --device auto or cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise BadInput(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def describe_device(name: str = "auto") -> str:
    """What `name` resolves to, in words for the Train page, e.g.
    'cuda (NVIDIA H100 80GB HBM3)' or 'cpu (2 cores, no GPU found)'."""
    import os

    device = resolve_device(name)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({os.cpu_count()} cores{', no GPU found' if name == 'auto' else ''})"


def to_tensor(images: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, S, S, 3) cache rows -> float (B, 3, S, S) in [-1, 1] on device."""
    order = np.sort(rows)  # sorted reads are sequential on a memmap
    batch = torch.from_numpy(np.ascontiguousarray(images[order]))
    if not np.array_equal(order, rows):
        batch = batch[torch.from_numpy(np.argsort(np.argsort(rows)))]
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image horizontal flip (torchvision's batch transforms flip the whole
    batch at once, which is weaker augmentation)."""
    mask = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-image random crop after reflect padding (the standard CIFAR
    augmentation), done on the whole batch by gathering shifted windows."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    di = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dj = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (di[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dj[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


class BatchStream:
    """Endless shuffled batches of cache rows: every row once per pass."""

    def __init__(self, rows: np.ndarray, batch_size: int, rng: np.random.Generator):
        self.rows, self.batch_size, self.rng = np.asarray(rows), batch_size, rng
        self._perm, self._pos = self.rng.permutation(self.rows), 0

    def next(self) -> np.ndarray:
        if len(self.rows) <= self.batch_size:
            return self.rng.permutation(self.rows)
        if self._pos + self.batch_size > len(self._perm):
            self._perm, self._pos = self.rng.permutation(self.rows), 0
        out = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return out


def _check_finite(name: str, value: torch.Tensor, iteration: int) -> None:
    if not torch.isfinite(value):
        raise TrainingDiverged(
            f"the {name} loss became {value.item()} at iteration {iteration}; the round stopped and the "
            "previous queue is kept. Try a lower learning rate or start fresh (--fresh)")


class _Reporter:
    """Progress callback throttled to `every` iterations, with ETA."""

    def __init__(self, total: int, every: int, progress: Progress | None, phase: str):
        self.total, self.every, self.progress, self.phase = total, max(1, every), progress, phase
        self.start = time.perf_counter()

    def __call__(self, it: int, batch_images: int, **losses: float) -> None:
        if self.progress is None or (it % self.every and it != self.total):
            return
        elapsed = time.perf_counter() - self.start
        rate = it / elapsed if elapsed > 0 else 0.0
        self.progress({"phase": self.phase, "iteration": it, "total": self.total,
                       "elapsed_s": round(elapsed, 2),
                       "eta_s": round((self.total - it) / rate, 1) if rate else None,
                       "images_per_s": round(rate * batch_images, 1),
                       **{k: round(float(v), 5) for k, v in losses.items()}})


@dataclass
class VAALModels:
    vae: VAE
    disc: Discriminator
    opt_vae: torch.optim.Optimizer
    opt_disc: torch.optim.Optimizer


def build_vaal(vae_cfg, train_cfg: TrainConfig, device: torch.device, seed: int) -> VAALModels:
    torch.manual_seed(seed)
    vae, disc = VAE(vae_cfg).to(device), Discriminator(vae_cfg).to(device)
    return VAALModels(vae, disc, torch.optim.Adam(vae.parameters(), lr=train_cfg.lr_vae),
                      torch.optim.Adam(disc.parameters(), lr=train_cfg.lr_disc))


def train_vaal(m: VAALModels, images: np.ndarray, labeled: np.ndarray, unlabeled: np.ndarray,
               cfg: TrainConfig, iterations: int, device: torch.device, seed: int,
               progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None,
               ranker: np.ndarray | None = None) -> dict[str, float]:
    """Play VAAL's minimax game for `iterations` iterations.

    Each iteration: `vae_steps` VAE updates (reconstruction + beta*KL on a
    labeled and an unlabeled batch, plus the adversarial term that pushes D to
    call both 'labeled'), then `disc_steps` D updates (labeled=1, unlabeled=0
    on the latent means). With no labeled items yet (cold start) there is no
    game: the VAE alone learns the latent space of the unlabeled pool.

    TA-VAAL: `ranker` holds the loss head's prediction r for every image row;
    the decoder then gets [z, sigmoid(r)] and the discriminator [mu, r]
    (the models must have been built with cond_dim 1).
    Returns the last losses.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    adversarial = len(labeled) > 0
    streams = [BatchStream(unlabeled, cfg.batch_size, rng)]
    if adversarial:
        streams.insert(0, BatchStream(labeled, cfg.batch_size, rng))

    def r_of(rows: np.ndarray) -> torch.Tensor | None:
        return None if ranker is None else torch.from_numpy(ranker[rows]).float().to(device)[:, None]

    report = _Reporter(iterations, cfg.progress_every, progress, "train")
    m.vae.train()
    m.disc.train()
    last: dict[str, float] = {}
    for it in range(1, iterations + 1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled at iteration {it} of {iterations}; the previous queue is kept")
        for _ in range(cfg.vae_steps):
            batches = [s.next() for s in streams]
            recon_loss, mse, kl, mus, rs = 0.0, 0.0, 0.0, [], []
            for rows in batches:
                x, r = random_flip(to_tensor(images, rows, device), gen), r_of(rows)
                recon, mu, logvar = m.vae(x, None if r is None else torch.sigmoid(r))
                total, part_mse, part_kl = m.vae.loss(x, recon, mu, logvar, cfg.beta)
                recon_loss, mse, kl = recon_loss + total, mse + part_mse, kl + part_kl
                mus.append(mu)
                rs.append(r)
            adv = (m.disc.fool_loss(*(m.disc(mu, r) for mu, r in zip(mus, rs))) if adversarial
                   else torch.zeros((), device=device))
            vae_loss = recon_loss + cfg.adversary_weight * adv
            _check_finite("VAE", vae_loss, it)
            m.opt_vae.zero_grad(set_to_none=True)
            vae_loss.backward()
            m.opt_vae.step()
        disc_loss = torch.zeros(())
        if adversarial:
            for _ in range(cfg.disc_steps):
                rows_l, rows_u = streams[0].next(), streams[1].next()
                with torch.no_grad():
                    mu_l = m.vae.encode(to_tensor(images, rows_l, device))[0]
                    mu_u = m.vae.encode(to_tensor(images, rows_u, device))[0]
                disc_loss = m.disc.loss(m.disc(mu_l, r_of(rows_l)), m.disc(mu_u, r_of(rows_u)))
                _check_finite("discriminator", disc_loss, it)
                m.opt_disc.zero_grad(set_to_none=True)
                disc_loss.backward()
                m.opt_disc.step()
        last = {"vae_loss": vae_loss.item(), "mse": float(mse.detach()), "kl": float(kl.detach()),
                "adversarial": float(adv.detach()), "disc_loss": disc_loss.item()}
        report(it, cfg.batch_size * len(streams) * cfg.vae_steps, **last)
    return last


@torch.no_grad()
def encode(vae: VAE, images: np.ndarray, rows: np.ndarray, device: torch.device,
           batch_size: int = 512) -> np.ndarray:
    """Latent means of the given cache rows, in eval mode with no
    augmentation: (len(rows), Z) float32."""
    was_training = vae.training
    vae.eval()
    try:
        out = [vae.encode(to_tensor(images, rows[i:i + batch_size], device))[0].float().cpu()
               for i in range(0, len(rows), batch_size)]
    finally:
        vae.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, vae.cfg.latent_dim), np.float32)


@torch.no_grad()
def discriminate(disc: Discriminator, latents: np.ndarray, device: torch.device,
                 ranker: np.ndarray | None = None) -> np.ndarray:
    """P(labeled) for each latent mean (and, for TA-VAAL, each image's
    predicted loss, aligned with `latents`), eval mode: (N,) float64."""
    was_training = disc.training
    disc.eval()
    try:
        r = None if ranker is None else torch.from_numpy(np.asarray(ranker)).float().to(device)[:, None]
        logits = disc(torch.from_numpy(latents).to(device), r).float().cpu()
    finally:
        disc.train(was_training)
    return torch.sigmoid(logits).double().numpy()


# -- task classifier ------------------------------------------------------

@dataclass
class TaskModel:
    """A task classifier and, when a task-aware sampler asked for one, its
    LL4AL loss-prediction head. Warm-started across rounds as a whole."""

    net: TaskNet
    head: LossHead | None = None


def new_task_model(num_classes: int, cfg: TaskConfig, device: torch.device, seed: int,
                   loss_head: bool = False) -> TaskModel:
    torch.manual_seed(seed)
    net = build_task_net(num_classes, cfg).to(device)
    return TaskModel(net, LossHead(net.stage_channels).to(device) if loss_head else None)


def class_weights(targets: np.ndarray, num_classes: int, device: torch.device) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set weighs 1 each:
    on a skewed labeled set rare classes count as much as common ones.
    Classes with no labels get weight 0 (they cannot appear as targets)."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weight = np.where(present, counts.sum() / np.maximum(counts, 1) / max(present.sum(), 1), 0.0)
    return torch.tensor(weight, dtype=torch.float32, device=device)


def train_task(model: TaskModel, images: np.ndarray, rows: np.ndarray, targets: np.ndarray, cfg: TaskConfig,
               device: torch.device, seed: int, progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train `model` in place on the labeled rows (warm start: whatever
    weights it holds), with random crop (padding 4) and flip augmentation and
    a class-weighted cross-entropy. With a loss head, the LL4AL objective is
    added: the head learns to rank the per-image (unweighted) losses with a
    margin ranking loss, and after `loss_stop_fraction` of the steps its
    gradient no longer reaches the backbone. Returns the last losses and the
    step count; the model is left in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    steps = max(cfg.min_steps, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))
    detach_after = int(cfg.loss_stop_fraction * steps)
    params = list(model.net.parameters()) + (list(model.head.parameters()) if model.head is not None else [])
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    weight = class_weights(targets, model.net.fc.out_features, device)
    by_row = dict(zip(np.asarray(rows).tolist(), np.asarray(targets).tolist()))
    stream = BatchStream(rows, cfg.batch_size, rng)
    report = _Reporter(steps, 20, progress, "task")
    model.net.train()
    if model.head is not None:
        model.head.train()
    last: dict[str, float] = {}
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled while training the task model (step {step} of {steps}); "
                                 "the previous queue is kept")
        batch = stream.next()
        x = random_crop(random_flip(to_tensor(images, batch, device), gen), 4, gen)
        y = torch.tensor([by_row[r] for r in batch.tolist()], device=device)
        feats = model.net.features(x)
        logits = model.net.classify(model.net.pooled(feats))
        per_image = F.cross_entropy(logits, y, reduction="none")  # (B,) the loss LL4AL predicts
        loss = (per_image * weight[y]).sum() / weight[y].sum()  # = F.cross_entropy(..., weight=weight)
        last = {"task_loss": loss.item()}
        if model.head is not None:
            head_in = feats if step <= detach_after else [f.detach() for f in feats]
            rank = LossHead.ranking_loss(model.head(head_in), per_image, cfg.loss_margin)
            loss = loss + cfg.loss_weight * rank
            last["rank_loss"] = rank.item()
        _check_finite("task model", loss, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        report(step, len(batch), **last)
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


@torch.no_grad()
def run_task(model: TaskModel, images: np.ndarray, rows: np.ndarray, device: torch.device,
             mc_samples: int = 0, seed: int = 0, batch_size: int = 512) -> TaskOutputs:
    """Class probabilities, the loss head's predictions (with a head) and,
    with `mc_samples`, that many MC-dropout samples of the last layer, which
    reuse the features of one forward pass (dropout is only there)."""
    net, head = model.net, model.head
    was = net.training, head.training if head is not None else False
    net.eval()
    if head is not None:
        head.eval()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the dropout masks
    probs, losses, mc = [], [], []
    try:
        for i in range(0, len(rows), batch_size):
            feats = net.features(to_tensor(images, rows[i:i + batch_size], device))
            pooled = net.pooled(feats)
            probs.append(torch.softmax(net.classify(pooled).float(), 1).cpu())
            if head is not None:
                losses.append(head(feats).float().cpu())
            if mc_samples:
                mc.append(torch.stack([torch.softmax(net.classify(pooled, dropout=True).float(), 1)
                                       for _ in range(mc_samples)]).cpu())  # (T, B, C)
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
        if mc_samples else None)


def predict(model: TaskModel, images: np.ndarray, rows: np.ndarray, device: torch.device) -> np.ndarray:
    """Class probabilities (len(rows), classes), eval mode, no augmentation."""
    return run_task(model, images, rows, device).probs
