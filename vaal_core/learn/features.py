"""A feature space with class meaning, per project: what the typicality and
coverage samplers (TypiClust, ProbCover) and `auto` pick in.

Three sources, the best one the user has:
- a pretrained torchvision ResNet-18/50 (ImageNet) when its weights are on
  this machine: a file the user names (`--pretrained FILE`) or torchvision's
  own download in the torch hub cache. Nothing is downloaded here.
- otherwise self-supervised features trained on the project's own images:
  SimCLR (Chen et al. 2020), two augmented views of every image, a small
  backbone and projection head trained with the NT-Xent loss. Warm-started
  from the last training when images were added; reused as they are when
  the images did not change. This is the full size (for a GPU).
- with `--fast`, instead of SimCLR: k-means patch features of the
  project's own images (learn/patch_features.py): better neighbourhoods
  than a SimCLR small enough for a CPU round, in less time.

Embeddings are the backbone's pooled features (before the projection head,
as SimCLR evaluates them), L2-normalised, so Euclidean distances are
monotone in cosine similarity.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vaal_core.config import FeatureConfig, TaskConfig
from vaal_core.errors import BadInput, RoundCancelled
from vaal_core.learn.accel import Accel
from vaal_core.learn.batches import BatchStream, check_finite, to_tensor
from vaal_core.learn.checkpoints import read_user_weights
from vaal_core.learn.models import TaskNet, build_task_net
from vaal_core.progress import Phase, Progress, Steps

# torchvision's ImageNet weight files, as its weights enums name them in the hub cache
HUB_FILES = {"resnet50": "resnet50-11ad3fa6.pth", "resnet18": "resnet18-f37072fd.pth"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# -- SimCLR ------------------------------------------------------------------------

def two_views(x: torch.Tensor, gen: torch.Generator, crop_scale: float) -> torch.Tensor:
    """One SimCLR view per image of a [-1, 1] batch: random resized crop
    (area `crop_scale`..1, aspect 3/4..4/3) with a random horizontal flip,
    colour jitter (brightness, contrast, saturation 0.4, with p 0.8) and
    grayscale (p 0.2). Each image gets its own parameters in one batched
    pass (torchvision's transforms draw one set per call, which on CPU
    means a Python loop over images: slower than the training step).
    Hue jitter is left out: it costs a colour-space round trip per image
    and SimCLR's ablations rank it the least useful of the colour changes."""
    b, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=gen) * (hi - lo) + lo).to(dev)

    area = u(crop_scale, 1.0)
    log_ratio = u(math.log(3 / 4), math.log(4 / 3))
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    cx, cy = (u(-1, 1) * (1 - w)), (u(-1, 1) * (1 - h))
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = (F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False) + 1) / 2
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=dev)[None, :, None, None]
    jitter = (u(0, 1) < 0.8)[:, None, None, None]
    j = v * u(0.6, 1.4)[:, None, None, None]  # brightness
    mean = (j * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    j = ((j - mean) * u(0.6, 1.4)[:, None, None, None] + mean).clamp(0, 1)  # contrast
    gray = (j * gray_w).sum(1, keepdim=True)
    j = ((j - gray) * u(0.6, 1.4)[:, None, None, None] + gray).clamp(0, 1)  # saturation
    v = torch.where(jitter, j, v)
    to_gray = (u(0, 1) < 0.2)[:, None, None, None]
    v = torch.where(to_gray, (v * gray_w).sum(1, keepdim=True).expand_as(v), v)
    return v * 2 - 1


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the 2B - 1 other
    views of the batch (cross-entropy over cosine similarities / T)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(nn.Module):
    """A backbone (the task models' small CNN or CIFAR ResNet-18, without
    their classifier) and SimCLR's projection head."""

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.backbone: TaskNet = build_task_net(2, TaskConfig(arch=cfg.arch, width=cfg.width, dropout=0.0))
        dim = self.backbone.stage_channels[-1]
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, cfg.proj_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.pooled(self.backbone.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def train_simclr(model: SimCLR, images: np.ndarray | torch.Tensor, rows: np.ndarray, cfg: FeatureConfig,
                 epochs: float, device: torch.device, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, accel: Accel | None = None) -> dict[str, Any]:
    """Train in place for `epochs` passes over `rows` (at least
    `cfg.min_steps` steps). Returns the last loss and the step count.
    `accel`: the forward passes under its autocast and memory layout, the
    loss (similarities over the batch) in float32."""
    accel = accel or Accel(torch.device(device))
    scaler = accel.scaler()
    torch.manual_seed(cfg.seed)
    dist = accel.dist  # several processes: each its share of the rows, 1/N of each batch (learn/distributed.py)
    gen = torch.Generator().manual_seed(cfg.seed + dist.rank)
    batch = min(cfg.batch_size, len(rows))
    steps = max(cfg.min_steps, math.ceil(epochs * len(rows) / batch))  # the same on every rank
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.05)
    # Each rank's NT-Xent sees its own part of the batch as negatives (SimCLR's
    # multi-GPU runs gather them; a smaller set of negatives is the cost here).
    stream = BatchStream(dist.shard(rows), dist.batch(batch), np.random.default_rng(cfg.seed))
    report = Steps(progress, Phase.FEATURES, steps, items_per_step=batch)
    report(0)
    model.train()
    loss = torch.zeros(())
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled while training the feature space (step {step} of {steps}); "
                                 "the previous queue is kept")
        x = to_tensor(images, stream.next(), device)
        views = [accel.layout(two_views(x, gen, cfg.crop_scale)) for _ in range(2)]
        with accel.autocast():
            z1, z2 = model(views[0]), model(views[1])
        loss = nt_xent(z1.float(), z2.float(), cfg.temperature)
        check_finite("feature (SimCLR)", loss, step)
        scaler.step(loss, opt)
        sched.step()
        report(step, feature_loss=loss.item())
    model.eval()
    return {"steps": steps, "last_loss": round(float(loss.item()), 4)}


@torch.no_grad()
def embed_rows(net: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray | torch.Tensor, rows: np.ndarray,
               device: torch.device, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
               batch_size: int | None = None, progress: Progress | None = None,
               accel: Accel | None = None) -> np.ndarray:
    """L2-normalised embeddings (len(rows), D) of `net` (eval mode, no
    augmentation), in batches (of `accel.score_batch` unless given)."""
    accel = accel or Accel(torch.device(device))
    batch_size = batch_size or accel.score_batch
    out = []
    starts = range(0, len(rows), batch_size)
    report = Steps(progress, Phase.EMBED, len(starts), items_per_step=batch_size)
    report(0)
    for k, i in enumerate(starts, start=1):
        x = to_tensor(images, rows[i:i + batch_size], device)
        with accel.autocast():
            y = net(accel.layout(prepare(x) if prepare else x))
        out.append(F.normalize(y.float(), dim=1).cpu())
        report(k)
    return torch.cat(out).numpy() if out else np.zeros((0, 1), np.float32)


# -- pretrained ImageNet backbones ---------------------------------------------

def hub_weights() -> Path | None:
    """torchvision's ImageNet ResNet weights if a download is in the torch hub
    cache (ResNet-50 preferred: better features)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return next((folder / f for f in HUB_FILES.values() if (folder / f).is_file()), None)


def load_imagenet_backbone(path: Path) -> tuple[nn.Module, str]:
    """A torchvision ResNet-18 or -50 with the weights in `path` (which one is
    read from the tensors' shapes), its classifier replaced by the identity:
    the module maps an ImageNet-normalised batch to its pooled features."""
    from torchvision.models import resnet18, resnet50

    state = read_user_weights(path, "a torchvision ResNet-18 or ResNet-50")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    fc = state.get("fc.weight")
    arch = "resnet50" if fc is not None and fc.shape[-1] == 2048 else "resnet18"
    net = (resnet50 if arch == "resnet50" else resnet18)()
    own = net.state_dict()
    body = {k for k in own if not k.startswith("fc.")}
    missing = sorted(k for k in body if k not in state or tuple(state[k].shape) != tuple(own[k].shape))
    if missing:
        raise BadInput(f"{path} does not hold a torchvision {arch} backbone ({len(missing)} tensors missing or of "
                       f"another shape, e.g. {missing[0]}); pass the weights of torchvision's resnet18 or resnet50")
    net.load_state_dict({k: state[k] for k in body}, strict=False)
    net.fc = nn.Identity()
    return net.eval(), arch


def imagenet_input(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """[-1, 1] batch -> resized to `size` and normalised as ImageNet models expect."""
    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate((x + 1) / 2, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD, device=x.device)[None, :, None, None]
        return (x - mean) / std
    return prepare


# -- the producer's work: the project's feature space, kept between rounds -----------

@dataclass
class FeatureSpace:
    embed: np.ndarray  # (N, D) aligned with the rows asked for
    info: dict[str, Any]  # what it is, for the round's record and the Train page
    state: dict[str, Any]  # what to keep for the next round
    probe: np.ndarray | None = None  # what the suggestions' linear probe reads, when not `embed` (learn/probe.py)

    @property
    def probe_input(self) -> np.ndarray:
        """What the linear probe reads, scaled as it should read it: the patch
        space's principal components as they are (their spread says how much
        each direction matters); an embedding's features each standardised
        over the images, as linear probes on SimCLR or ImageNet features are."""
        if self.probe is not None:
            return self.probe
        return ((self.embed - self.embed.mean(0)) / (self.embed.std(0) + 1e-6)).astype(np.float32)


def feature_space(images: np.ndarray | torch.Tensor, rows: np.ndarray, item_ids: np.ndarray, cfg: FeatureConfig,
                  device: torch.device, previous: dict[str, Any] | None, pretrained: Path | None = None,
                  progress: Progress | None = None,
                  should_stop: Callable[[], bool] | None = None, accel: Accel | None = None) -> FeatureSpace:
    """The embeddings of `rows` (items `item_ids`): from an ImageNet backbone
    when weights are given or cached, else SimCLR on these images, trained
    fresh, warm (images were added since `previous`) or not at all (the
    same images: `previous`'s embeddings are reused)."""
    accel = accel or Accel(torch.device(device))
    t0 = time.perf_counter()
    weights = pretrained or hub_weights()
    if weights is not None:
        source = {"source": "pretrained", "file": str(weights), "input_size": cfg.pretrained_size}
        if previous is not None and previous.get("source") == source and _same_items(previous, item_ids):
            return _reused(previous, item_ids)
        net, arch = load_imagenet_backbone(Path(weights))
        net = accel.prepare(net.to(device))
        embed = accel.dist.gather_rows(lambda part: embed_rows(net, images, part, device,
                                                               imagenet_input(cfg.pretrained_size), batch_size=128,
                                                               progress=progress, accel=accel), rows)
        info = {**source, "arch": arch, "dim": int(embed.shape[1]), "trained": "no (ImageNet weights)",
                "seconds": round(time.perf_counter() - t0, 2)}
        return FeatureSpace(embed, info, _state(source, None, item_ids, embed, info))

    if cfg.method == "patches":
        return _patch_space(images, rows, item_ids, cfg, device, previous, progress, should_stop, t0, accel)

    source = {"source": "simclr", "config": asdict(cfg), "image_size": int(images.shape[1])}
    model = accel.prepare(SimCLR(cfg).to(device))
    warm = previous is not None and previous.get("source") == source
    if warm and _same_items(previous, item_ids):
        return _reused(previous, item_ids)
    if warm:
        model.load_state_dict(previous["net"])
    epochs = cfg.epochs_warm if warm else cfg.epochs_fresh
    trained = train_simclr(model, images, rows, cfg, epochs, device, progress, should_stop, accel)
    accel.dist.sync(model)  # every rank embeds with rank 0's BatchNorm statistics
    embed = accel.dist.gather_rows(lambda part: embed_rows(model.embed, images, part, device, progress=progress,
                                                           accel=accel), rows)
    info = {"source": "simclr", "arch": cfg.arch, "dim": int(embed.shape[1]), "images": int(len(rows)),
            "epochs": epochs, "warm_start": warm, **trained, "seconds": round(time.perf_counter() - t0, 2)}
    return FeatureSpace(embed, info, _state(source, model.state_dict(), item_ids, embed, info))


def _patch_space(images: np.ndarray | torch.Tensor, rows: np.ndarray, item_ids: np.ndarray, cfg: FeatureConfig,
                 device: torch.device, previous: dict[str, Any] | None, progress: Progress | None,
                 should_stop: Callable[[], bool] | None, t0: float, accel: Accel) -> FeatureSpace:
    """k-means patch features (learn/patch_features.py): the same images reuse
    the last embeddings; added images keep the centroids (`net` holds them)."""
    from vaal_core.learn.patch_features import patch_space

    source = {"source": "patches", "config": asdict(cfg), "image_size": int(images.shape[1])}
    same = previous is not None and previous.get("source") == source
    if same and _same_items(previous, item_ids) and previous.get("probe") is not None:
        return _reused(previous, item_ids)  # (a space kept before the probe existed is encoded again)
    embed, probe, dictionary, warm = patch_space(images, rows, cfg, device, previous["net"] if same else None,
                                                 progress, should_stop, accel.dist)
    probe = probe.astype(np.float16).astype(np.float32)  # as kept: a round reusing it suggests the same
    info = {"source": "patches", "dim": int(embed.shape[1]), "images": int(len(rows)),
            "centroids": int(dictionary["centroids"].shape[0]), "warm_start": warm,
            "seconds": round(time.perf_counter() - t0, 2)}
    return FeatureSpace(embed, info, _state(source, dictionary, item_ids, embed, info, probe), probe)


def _state(source: dict, net: dict | None, item_ids: np.ndarray, embed: np.ndarray, info: dict,
           probe: np.ndarray | None = None) -> dict[str, Any]:
    """What a checkpoint keeps: tensors, not numpy arrays, so a project's
    checkpoint loads with torch.load(weights_only=True). The probe's input in
    half precision (a linear probe needs no more; 50,000 images x 256 is 26 MB)."""
    return {"source": source, "net": net, "item_ids": torch.from_numpy(np.asarray(item_ids, dtype=np.int64).copy()),
            "embed": torch.from_numpy(np.ascontiguousarray(embed, dtype=np.float32)), "info": info,
            "probe": None if probe is None else torch.from_numpy(np.ascontiguousarray(probe, dtype=np.float16))}


def _same_items(previous: dict[str, Any], item_ids: np.ndarray) -> bool:
    saved = previous.get("item_ids")
    return saved is not None and np.array_equal(torch.as_tensor(saved).numpy(), item_ids)


def _reused(previous: dict[str, Any], item_ids: np.ndarray) -> FeatureSpace:
    info = {**previous["info"], "reused": True, "seconds": 0.0}
    probe = previous.get("probe")
    return FeatureSpace(torch.as_tensor(previous["embed"]).numpy(), info, previous,
                        None if probe is None else torch.as_tensor(probe).float().numpy())
