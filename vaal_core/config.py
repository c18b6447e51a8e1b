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
    # The discriminator that ranks the pool (`vaal.fit_ranker`): the mean of
    # rank_members fresh ones fit to the final latent means, each without
    # one fold of the items, with batches of up to rank_batch items a side.
    rank_members: int = 4
    rank_steps: int = 100
    rank_lr: float = 5e-3
    rank_batch: int = 4096
    # The iteration budget follows the pool instead of the reference's fixed
    # ~39k iterations per round: passes over the unlabeled pool, clamped.
    epochs_fresh: float = 20.0
    epochs_warm: float = 5.0
    min_iters: int = 200
    max_iters: int = 20000

    def iterations(self, pool_size: int, warm: bool) -> int:
        epochs = self.epochs_warm if warm else self.epochs_fresh
        n = math.ceil(epochs * max(pool_size, 1) / self.batch_size)
        return int(min(max(n, self.min_iters), self.max_iters))


@dataclass(frozen=True)
class TaskConfig:
    """The task classifier: label suggestions, task-aware samplers and the
    accuracy of simulations. The default is the CIFAR-style ResNet-18 of the
    LL4AL paper (SGD, peak lr 0.1, weight decay 5e-4); `--fast` is a small
    CNN with AdamW."""

    arch: str = "resnet18"  # "resnet18" (torchvision's, 3x3 stem, no max-pool) or "cnn"
    width: int = 64  # cnn only: first stage's channels
    epochs: int = 100  # passes over the labeled set in a round that starts from scratch
    # ... and in a round warm-started from the last round's model (None: as many). A warm
    # model has already had the earlier rounds' passes: with `--fast`, 15 warm passes a
    # round reach what 30 fresh ones do, and 15 fresh ones leave a model 4-6 points short
    # (README, "How long the task model trains").
    epochs_warm: int | None = None
    batch_size: int = 128  # LL4AL paper
    optimizer: str = "sgd"  # "sgd" (momentum 0.9) or "adamw"
    lr: float = 0.1  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    min_steps: int = 200  # a 100-image labeled set still gets trained
    dropout: float = 0.3  # before the last layer; BALD samples it (MC dropout)
    mc_samples: int = 20  # BALD's dropout samples
    # Validation: a fixed slice of the labels, chosen by item id so an image
    # held out once is held out every round (a warm-started model never saw it).
    val_fraction: float = 0.1
    min_labels_for_val: int = 20
    # LL4AL (Yoo & Kweon 2019): margin ranking loss on pairs, weight 1,
    # margin 1, no gradient from the loss head into the backbone after 60% of
    # the steps. (The size of the pool subset it ranks is the ll4al
    # sampler's setting.)
    loss_margin: float = 1.0
    loss_weight: float = 1.0
    loss_stop_fraction: float = 0.6


@dataclass(frozen=True)
class FeatureConfig:
    """The feature space the typicality and coverage samplers (and `auto`)
    work in: self-supervised on the project's own images (SimCLR, Chen et
    al. 2020: two augmented views of each image must find each other in the
    batch), unless the user has pretrained ImageNet weights. VAE latents
    carry little class meaning; these features do (see README, "Samplers").

    Default: SimCLR on the CIFAR-style ResNet-18 (for a GPU). `--fast`:
    single-layer k-means patch features (learn/patch_features.py), which
    gave better neighbourhoods on CIFAR-10 than a SimCLR small enough for 2
    CPU cores, in a third of its time (README, "The feature space")."""

    method: str = "simclr"  # "simclr" (a trained backbone) or "patches" (k-means patch features)
    arch: str = "resnet18"  # backbone: "resnet18" (CIFAR-style) or "cnn" (the task model's small CNN)
    width: int = 64  # cnn only
    proj_dim: int = 128  # SimCLR's projection head output
    temperature: float = 0.5  # NT-Xent; SimCLR's CIFAR setting
    batch_size: int = 512
    lr: float = 1e-3  # AdamW with cosine decay: stable at small batch sizes, unlike LARS
    weight_decay: float = 1e-6
    epochs_fresh: float = 200.0  # passes over the images on a first training
    epochs_warm: float = 20.0  # when images were added since the last one
    min_steps: int = 100  # a 300-image folder still gets trained
    crop_scale: float = 0.2  # RandomResizedCrop's smallest area (CIFAR SimCLR setting)
    seed: int = 0  # the space belongs to the images, not to a round: one seed for every round
    pretrained_size: int = 224  # images are resized to this for an ImageNet backbone
    patch_input: int = 32  # "patches": images are resized to this (the recipe's CIFAR scale)
    patch_size: int = 6  # "patches": the paper's best receptive field at 32 px
    patch_clusters: int = 400  # "patches": k-means centroids (4 x this pooled features)
    patch_dims: int = 64  # "patches": whitened principal components kept
    probe_dims: int = 256  # "patches": principal components the suggestions' linear probe reads (learn/probe.py)


def feature_config(fast: bool = False) -> FeatureConfig:
    if not fast:
        return FeatureConfig()
    return FeatureConfig(method="patches", arch="cnn", width=16, batch_size=256, lr=2e-3, epochs_fresh=20.0, epochs_warm=3.0,
                         min_steps=60, pretrained_size=112)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class AccelConfig:
    """How the models run on the device (learn/accel.py resolves "auto"):
    none of it changes what a round learns beyond float rounding, so it is
    not part of a model's signature."""

    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16/fp16 on CUDA, fp32 on CPU and MPS)
    channels_last: str = "auto"  # auto | on | off (auto: on, except on MPS)
    device_cache: str = "auto"  # auto | on | off: the decoded images on the device (auto: on CUDA, when they fit)
    compile: str = "auto"  # auto | on | off: torch.compile, eager where it fails (auto: on CUDA)
    score_batch: int = 0  # images per scoring batch; 0: 4096 on a GPU, 512 on a CPU


@dataclass(frozen=True)
class EngineConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    accel: AccelConfig = field(default_factory=AccelConfig)
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
                      min_iters=30, max_iters=150),
        task=TaskConfig(arch="cnn", width=16, epochs=30, epochs_warm=15, batch_size=64, optimizer="adamw", lr=3e-3,
                        min_steps=60),
        features=feature_config(fast=True),
        fast=True,
    )

