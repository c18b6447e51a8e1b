"""Training loops: VAAL's VAE/discriminator game, scoring, and the task
classifier of simulations.

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
from vaal_core.models import VAE, Discriminator, TaskNet

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
               should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Play VAAL's minimax game for `iterations` iterations.

    Each iteration: `vae_steps` VAE updates (reconstruction + beta*KL on a
    labeled and an unlabeled batch, plus the adversarial term that pushes D to
    call both 'labeled'), then `disc_steps` D updates (labeled=1, unlabeled=0
    on the latent means). With no labeled items yet (cold start) there is no
    game: the VAE alone learns the latent space of the unlabeled pool.
    Returns the last losses.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    adversarial = len(labeled) > 0
    streams = [BatchStream(unlabeled, cfg.batch_size, rng)]
    if adversarial:
        streams.insert(0, BatchStream(labeled, cfg.batch_size, rng))
    report = _Reporter(iterations, cfg.progress_every, progress, "train")
    m.vae.train()
    m.disc.train()
    last: dict[str, float] = {}
    for it in range(1, iterations + 1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled at iteration {it} of {iterations}; the previous queue is kept")
        for _ in range(cfg.vae_steps):
            xs = [random_flip(to_tensor(images, s.next(), device), gen) for s in streams]
            recon_loss, mse, kl, mus = 0.0, 0.0, 0.0, []
            for x in xs:
                recon, mu, logvar = m.vae(x)
                total, part_mse, part_kl = m.vae.loss(x, recon, mu, logvar, cfg.beta)
                recon_loss, mse, kl = recon_loss + total, mse + part_mse, kl + part_kl
                mus.append(mu)
            adv = m.disc.fool_loss(*(m.disc(mu) for mu in mus)) if adversarial else torch.zeros((), device=device)
            vae_loss = recon_loss + cfg.adversary_weight * adv
            _check_finite("VAE", vae_loss, it)
            m.opt_vae.zero_grad(set_to_none=True)
            vae_loss.backward()
            m.opt_vae.step()
        disc_loss = torch.zeros(())
        if adversarial:
            for _ in range(cfg.disc_steps):
                with torch.no_grad():
                    mu_l = m.vae.encode(to_tensor(images, streams[0].next(), device))[0]
                    mu_u = m.vae.encode(to_tensor(images, streams[1].next(), device))[0]
                disc_loss = m.disc.loss(m.disc(mu_l), m.disc(mu_u))
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
def discriminate(disc: Discriminator, latents: np.ndarray, device: torch.device) -> np.ndarray:
    """P(labeled) for each latent mean, eval mode: (N,) float64."""
    was_training = disc.training
    disc.eval()
    try:
        logits = disc(torch.from_numpy(latents).to(device)).float().cpu()
    finally:
        disc.train(was_training)
    return torch.sigmoid(logits).double().numpy()


# -- task classifier ------------------------------------------------------

def train_classifier(images: np.ndarray, rows: np.ndarray, targets: np.ndarray, num_classes: int,
                     cfg: TaskConfig, device: torch.device, seed: int,
                     progress: Progress | None = None) -> TaskNet:
    """Train a fresh TaskNet on the labeled rows with crop+flip augmentation.

    Small or skewed labeled sets: the number of steps is at least
    `cfg.min_steps` (a 100-image set still gets trained), and the loss is
    weighted by inverse class frequency so rare classes count.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TaskNet(num_classes, cfg).to(device)
    steps = max(cfg.min_steps, math.ceil(cfg.epochs * len(rows) / cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr * 3, total_steps=steps)
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weight = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0),
                          dtype=torch.float32, device=device)
    by_row = dict(zip(rows.tolist(), targets.tolist()))
    stream = BatchStream(rows, cfg.batch_size, rng)
    report = _Reporter(steps, 20, progress, "task")
    model.train()
    for step in range(1, steps + 1):
        batch = stream.next()
        x = random_crop(random_flip(to_tensor(images, batch, device), gen), 4, gen)
        y = torch.tensor([by_row[r] for r in batch.tolist()], device=device)
        loss = model.loss(model(x), y, weight)
        _check_finite("task model", loss, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        report(step, len(batch), task_loss=loss.item())
    model.eval()
    return model


@torch.no_grad()
def predict(model: TaskNet, images: np.ndarray, rows: np.ndarray, device: torch.device,
            batch_size: int = 512) -> np.ndarray:
    """Class probabilities (len(rows), classes), eval mode, no augmentation."""
    was_training = model.training
    model.eval()
    try:
        out = [torch.softmax(model(to_tensor(images, rows[i:i + batch_size], device)).float(), 1).cpu()
               for i in range(0, len(rows), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
