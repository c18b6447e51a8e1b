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

The pool is ranked by a discriminator fit afresh to the final VAE's frozen
latent means (`fit_ranker`), not by the game's own: measured on CIFAR-10
and `--fast` settings, the game's ends every round at loss 2 ln 2 and AUC
about 0.5 (the VAE's last updates are made to fool it), so its order was
noise. `rank_and_measure` adds the figures that say whether the ranking is
worth anything (`disc_quality`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import torch

from vaal_core.config import TrainConfig, VAEConfig
from vaal_core.errors import RoundCancelled
from vaal_core.learn import disc_quality
from vaal_core.learn.accel import Accel
from vaal_core.learn.batches import BatchStream, check_finite, random_flip, to_tensor
from vaal_core.learn.models import VAE, Discriminator
from vaal_core.progress import Phase, Progress, Steps


@dataclass
class VAALModels:
    vae: VAE
    disc: Discriminator
    opt_vae: torch.optim.Optimizer
    opt_disc: torch.optim.Optimizer


def build_vaal(vae_cfg: VAEConfig, train_cfg: TrainConfig, device: torch.device, seed: int,
               accel: Accel | None = None) -> VAALModels:
    torch.manual_seed(seed)
    vae, disc = VAE(vae_cfg).to(device), Discriminator(vae_cfg).to(device)
    if accel is not None:
        accel.prepare(vae)
    return VAALModels(vae, disc, torch.optim.Adam(vae.parameters(), lr=train_cfg.lr_vae),
                      torch.optim.Adam(disc.parameters(), lr=train_cfg.lr_disc))


def train_vaal(m: VAALModels, images: np.ndarray | torch.Tensor, labeled: np.ndarray, unlabeled: np.ndarray,
               cfg: TrainConfig, iterations: int, device: torch.device, seed: int,
               progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None,
               ranker: np.ndarray | None = None, accel: Accel | None = None) -> dict[str, float]:
    """Play VAAL's minimax game for `iterations` iterations.

    Each iteration: `vae_steps` VAE updates (reconstruction + beta*KL on a
    labeled and an unlabeled batch, plus the adversarial term that pushes D to
    call both 'labeled'), then `disc_steps` D updates (labeled=1, unlabeled=0
    on the latent means). With no labeled items yet (cold start) there is no
    game: the VAE alone learns the latent space of the unlabeled pool.

    TA-VAAL: `ranker` holds the loss head's prediction r for every image row;
    the decoder then gets [z, sigmoid(r)] and the discriminator [mu, r]
    (the models must have been built with cond_dim 1).
    `accel` (learn/accel.py): the forward passes under autocast, images in
    its memory layout, the VAE's forward compiled where chosen; the losses
    are computed in float32 whatever the precision.
    Returns the last losses (and, when compiling failed, `compile_note`).
    """
    accel = accel or Accel(torch.device(device))
    notes: list[str] = []
    vae_forward = accel.compiled(m.vae, notes)
    scale_vae, scale_disc = accel.scaler(), accel.scaler()
    dist = accel.dist  # several processes: each its share of the rows, 1/N of each batch (learn/distributed.py)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + dist.rank)
    adversarial = len(labeled) > 0
    batch = dist.batch(cfg.batch_size)
    streams = [BatchStream(dist.shard(unlabeled), batch, rng)]
    if adversarial:
        streams.insert(0, BatchStream(dist.shard(labeled), batch, rng))

    def r_of(rows: np.ndarray) -> torch.Tensor | None:
        return None if ranker is None else torch.from_numpy(ranker[rows]).float().to(device)[:, None]

    per_step = sum(min(batch, len(s.rows)) for s in streams) * cfg.vae_steps * dist.world
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
                x, r = accel.layout(random_flip(to_tensor(images, rows, device), gen)), r_of(rows)
                with accel.autocast():
                    recon, mu, logvar = vae_forward(x, None if r is None else torch.sigmoid(r))
                total, part_mse, part_kl = m.vae.loss(x, recon.float(), mu.float(), logvar.float(), cfg.beta)
                recon_loss, mse, kl = recon_loss + total, mse + part_mse, kl + part_kl
                mus.append(mu)
                rs.append(r)
            if adversarial:
                with accel.autocast():
                    logits = [m.disc(mu, r) for mu, r in zip(mus, rs)]
                adv = m.disc.fool_loss(*(lg.float() for lg in logits))
            else:
                adv = torch.zeros((), device=device)
            vae_loss = recon_loss + cfg.adversary_weight * adv
            check_finite("VAE", vae_loss, it)
            scale_vae.step(vae_loss, m.opt_vae)
        disc_loss = torch.zeros(())
        if adversarial:
            for _ in range(cfg.disc_steps):
                rows_l, rows_u = streams[0].next(), streams[1].next()
                with torch.no_grad(), accel.autocast():
                    mu_l = m.vae.encode(accel.layout(to_tensor(images, rows_l, device)))[0]
                    mu_u = m.vae.encode(accel.layout(to_tensor(images, rows_u, device)))[0]
                with accel.autocast():
                    logits_l, logits_u = m.disc(mu_l, r_of(rows_l)), m.disc(mu_u, r_of(rows_u))
                disc_loss = m.disc.loss(logits_l.float(), logits_u.float())
                check_finite("discriminator", disc_loss, it)
                scale_disc.step(disc_loss, m.opt_disc)
        last = {"vae_loss": vae_loss.item(), "mse": float(mse.detach()), "kl": float(kl.detach()),
                "adversarial": float(adv.detach()), "disc_loss": disc_loss.item()}
        report(it, **last)
    if notes:
        last["compile_note"] = notes[0]
    return last


@torch.no_grad()
def encode(vae: VAE, images: np.ndarray | torch.Tensor, rows: np.ndarray, device: torch.device,
           batch_size: int | None = None, progress: Progress | None = None,
           accel: Accel | None = None) -> np.ndarray:
    """Latent means of the given cache rows, in eval mode with no
    augmentation: (len(rows), Z) float32 (batches of `accel.score_batch`
    unless `batch_size` is given)."""
    accel = accel or Accel(torch.device(device))
    batch_size = batch_size or accel.score_batch
    was_training = vae.training
    vae.eval()
    starts = range(0, len(rows), batch_size)
    report = Steps(progress, Phase.SCORE, len(starts), items_per_step=batch_size)
    report(0)
    out = []
    try:
        for k, i in enumerate(starts, start=1):
            with accel.autocast():
                mu = vae.encode(accel.layout(to_tensor(images, rows[i:i + batch_size], device)))[0]
            out.append(mu.float().cpu())
            report(k)
    finally:
        vae.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, vae.cfg.latent_dim), np.float32)


@torch.no_grad()
def reconstruct(state: dict, latents: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """What a saved VAAL VAE's decoder draws from each latent mean, on the
    CPU: (N, S, S, 3) uint8, for the Explore page's "why picked" card (the
    image beside what the VAE kept of it). TA-VAAL's decoder also takes the
    loss head's prediction, so only VAAL's is drawn."""
    vae = VAE(VAEConfig(**state["vae_config"]))
    vae.load_state_dict(state["vae"])
    vae.eval()
    out = []
    for i in range(0, len(latents), batch_size):
        img = vae.decode(torch.from_numpy(np.asarray(latents[i:i + batch_size], dtype=np.float32)))
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    size = vae.cfg.image_size
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


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


@dataclass
class Ranking:
    prob: np.ndarray  # (N,) P(labeled): the mean of the members', what ranks the pool
    members: np.ndarray  # (M, N) each member's P(labeled)
    fold: np.ndarray  # (N,) the member that did not learn from the item; -1: every member did
    loss: float  # the members' mean last loss (2 ln 2 = 1.386 is a coin toss)

    def out_of_fold(self) -> np.ndarray:
        """P(labeled) of each item from the member that never saw it (NaN
        where every member did): the held-out figure."""
        out = np.full(self.prob.shape, np.nan)
        held = self.fold >= 0
        out[held] = self.members[self.fold[held], np.flatnonzero(held)]
        return out


def fit_ranker(vae_cfg: VAEConfig, cfg: TrainConfig, latents: np.ndarray, labeled: np.ndarray,
               device: torch.device, seed: int, cond: np.ndarray | None = None) -> Ranking:
    """The discriminator that ranks the pool: `rank_members` small fresh
    discriminators fit to the final VAE's frozen latent means (and, for
    TA-VAAL, the predicted losses `cond`), labeled = 1, unlabeled = 0, each
    without one fold of the items; their mean P(labeled) ranks.

    Why not the game's discriminator: it lags one move behind the VAE, whose
    last updates were made to fool it, so it ends the game at a coin toss
    (loss 2 ln 2, AUC about 0.5, measured) whatever it learnt; VAAL's
    selection assumes a discriminator that tells the final latents apart.
    Why several: one fit's order of the pool changes with its seed (it
    memorises the labeled latents, and where its boundaries fall between
    them is chance); the mean of four changes much less (measured on
    CIFAR-10: 2 to 3 times the top-batch overlap of a single fit between
    seeds). Why folds: the member that never saw an item gives it a
    held-out P(labeled) at no extra cost. Each step takes up to
    `rank_batch` items of each side (all of them in a small project); the
    loss weighs both sides equally, as the game's balanced batches do; the
    inputs are standardised (the KL term keeps latent means small). The
    global RNG is left as it was."""
    labeled = np.asarray(labeled, dtype=bool)
    x = np.asarray(latents, dtype=np.float32)
    if cond is not None:
        x = np.concatenate([x, np.asarray(cond, dtype=np.float32).reshape(len(x), -1)], axis=1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    fold = disc_quality.folds(labeled, cfg.rank_members, seed)
    members, losses = [], []
    for j in range(cfg.rank_members):
        train = fold != j
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * cfg.rank_members + j)
            disc = Discriminator(replace(vae_cfg, latent_dim=x.shape[1], cond_dim=0)).to(device)
        loss = _fit(disc, xt, [np.flatnonzero(labeled & train), np.flatnonzero(~labeled & train)], cfg,
                    device, np.random.default_rng([seed, j]))
        members.append(discriminate(disc, x, device))
        losses.append(loss)
    stacked = np.stack(members)
    return Ranking(stacked.mean(0), stacked, fold, float(np.mean(losses)))


def _fit(disc: Discriminator, x: torch.Tensor, sides: list[np.ndarray], cfg: TrainConfig, device: torch.device,
         rng: np.random.Generator) -> float:
    """`rank_steps` Adam updates of a ranking discriminator: each takes up
    to `rank_batch` of the labeled (sides[0]) and unlabeled (sides[1]) rows
    of `x`. Returns the last loss."""
    opt = torch.optim.Adam(disc.parameters(), lr=cfg.rank_lr)
    loss = torch.full((), float("nan"))
    disc.train()
    with _one_thread(device):
        for step in range(1, cfg.rank_steps + 1):
            pick = [torch.from_numpy(side if len(side) <= cfg.rank_batch
                                     else rng.choice(side, cfg.rank_batch, replace=False)).to(device)
                    for side in sides]
            loss = disc.loss(disc(x[pick[0]]), disc(x[pick[1]]))
            check_finite("ranking discriminator", loss, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return float(loss.detach())


def rank_and_measure(vae_cfg: VAEConfig, cfg: TrainConfig, latents: np.ndarray, labeled: np.ndarray,
                     device: torch.device, seed: int, cond: np.ndarray | None = None,
                     game_prob: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """P(labeled) from the ranking discriminator (`fit_ranker`, seed
    `seed`), and its figures (`disc_quality.summarise`): its AUC, its
    members' held-out AUC, and the top-batch overlap with a twin ranking
    fit the same way with seed+1 (other member seeds, other folds), which
    doubles the cost of ranking (measured: both together take 9-12% of a
    `--fast` round on CIFAR-10 and digits, on 2 CPU cores)."""
    ranking = fit_ranker(vae_cfg, cfg, latents, labeled, device, seed, cond)
    twin = fit_ranker(vae_cfg, cfg, latents, labeled, device, seed + 1, cond)
    figures = disc_quality.summarise(ranking.prob, labeled, twin.prob, ranking.out_of_fold(), game_prob=game_prob,
                                     rank_loss=round(ranking.loss, 4), members=cfg.rank_members)
    return ranking.prob, figures


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """A small MLP on a CPU runs faster on one thread: its operations are
    too small to split, and on a busy machine waiting for the other threads
    made the fit 30 to 100 times slower (measured on 2 shared cores)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
