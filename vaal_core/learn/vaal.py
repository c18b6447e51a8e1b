"""VAAL's minimax game (Sinha et al. 2019) and TA-VAAL's conditioned one
(Kim et al. 2021): training the VAE and the discriminator, and scoring
images with them.

Images come from the decoded uint8 cache (N, S, S, 3) and are indexed by
cache row; nothing here knows about the store. Deliberate differences from
the VAAL reference code (docs/ARCHITECTURE.md, "Known defects we do not
copy"): the models are put in eval mode for scoring and back in train mode
for training, every time; scoring uses no augmentation (training flips
each image at random); rounds warm-start and train for an iteration budget
that follows the pool size instead of ~39k iterations from scratch; one
loss scale, chosen on purpose (see VAE.loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from vaal_core.config import TrainConfig, VAEConfig
from vaal_core.errors import RoundCancelled
from vaal_core.learn.batches import BatchStream, check_finite, random_flip, to_tensor
from vaal_core.learn.models import VAE, Discriminator
from vaal_core.progress import Phase, Progress, Steps


@dataclass
class VAALModels:
    vae: VAE
    disc: Discriminator
    opt_vae: torch.optim.Optimizer
    opt_disc: torch.optim.Optimizer


def build_vaal(vae_cfg: VAEConfig, train_cfg: TrainConfig, device: torch.device, seed: int) -> VAALModels:
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

    per_step = sum(min(cfg.batch_size, len(s.rows)) for s in streams) * cfg.vae_steps
    report = Steps(progress, Phase.TRAIN, iterations, items_per_step=per_step)
    report(0)
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
            check_finite("VAE", vae_loss, it)
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
                check_finite("discriminator", disc_loss, it)
                m.opt_disc.zero_grad(set_to_none=True)
                disc_loss.backward()
                m.opt_disc.step()
        last = {"vae_loss": vae_loss.item(), "mse": float(mse.detach()), "kl": float(kl.detach()),
                "adversarial": float(adv.detach()), "disc_loss": disc_loss.item()}
        report(it, **last)
    return last


@torch.no_grad()
def encode(vae: VAE, images: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 512,
           progress: Progress | None = None) -> np.ndarray:
    """Latent means of the given cache rows, in eval mode with no
    augmentation: (len(rows), Z) float32."""
    was_training = vae.training
    vae.eval()
    starts = range(0, len(rows), batch_size)
    report = Steps(progress, Phase.SCORE, len(starts), items_per_step=batch_size)
    report(0)
    out = []
    try:
        for k, i in enumerate(starts, start=1):
            out.append(vae.encode(to_tensor(images, rows[i:i + batch_size], device))[0].float().cpu())
            report(k)
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
