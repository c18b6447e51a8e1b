"""One frozen dataclass per concern, plain types only, so `asdict(cfg)` can be
saved with every round and checkpoint and a model rebuilt from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

IMAGE_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class VAEConfig:
    image_size: int = 32
    latent_dim: int = 32  # VAAL reference
    width: int = 128  # first conv's channels; doubles per stage (128..1024 = reference)
    disc_width: int = 512  # discriminator hidden units (reference: 512)
    cond_dim: int = 0  # extra inputs to decoder and discriminator (TA-VAAL's ranker output)


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128  # reference code (the paper text says 64)
    lr_vae: float = 5e-4
    lr_disc: float = 5e-4
    beta: float = 1.0  # weight of KL; see VAE.loss for the scale chosen
    adversary_weight: float = 1.0
    vae_steps: int = 2  # per iteration, as the reference
    disc_steps: int = 1
    # The iteration budget follows the pool instead of the reference's fixed
    # ~39k iterations per round: passes over the unlabeled pool, clamped.
    epochs_fresh: float = 20.0
    epochs_warm: float = 5.0
    min_iters: int = 200
    max_iters: int = 20000
    progress_every: int = 10  # iterations between progress callbacks

    def iterations(self, pool_size: int, warm: bool) -> int:
        epochs = self.epochs_warm if warm else self.epochs_fresh
        n = math.ceil(epochs * max(pool_size, 1) / self.batch_size)
        return int(min(max(n, self.min_iters), self.max_iters))


@dataclass(frozen=True)
class TaskConfig:
    """The task classifier used by simulation (and, later, label suggestions)."""

    width: int = 64
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    min_steps: int = 200


@dataclass(frozen=True)
class EngineConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    fast: bool = False


def engine_config(image_size: int = 32, fast: bool = False) -> EngineConfig:
    """The default (reference-sized, for a GPU) or `--fast` (seconds on 2 CPU
    cores, for tests and demos) configuration for one image size."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image size {image_size} is not one of {IMAGE_SIZES}")
    cfg = EngineConfig(vae=VAEConfig(image_size=image_size))
    if not fast:
        return cfg
    return EngineConfig(
        vae=replace(cfg.vae, width=16, disc_width=64),
        train=replace(cfg.train, batch_size=64, epochs_fresh=2.0, epochs_warm=1.0,
                      min_iters=30, max_iters=150, progress_every=5),
        task=TaskConfig(width=16, epochs=15, batch_size=64, min_steps=60),
        fast=True,
    )
