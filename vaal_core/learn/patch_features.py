"""The `--fast` feature space: single-layer k-means patch features (Coates,
Lee & Ng, AISTATS 2011), learned from the project's own images, no label
read.

Why this and not a small SimCLR on a CPU: measured on a stratified
8,000-image CIFAR-10 pool (bench/features.py, one CPU thread), a
20-nearest-neighbour vote scores 54% in this space (400 centroids, 64
whitened components; 3 minutes) against 44% in the `--fast` SimCLR space
(9 minutes) and 36% on raw pixels. TypiClust and ProbCover
pick well only where neighbours share a class, so the better neighbourhoods
are what the low-budget samplers need.

The recipe, as the paper's best single-layer setting: 6x6 patches, each
brightness- and contrast-normalised, ZCA-whitened; k-means centroids on a
sample of them; every patch of an image (stride 1) encoded as the
"triangle" activation max(0, mean_k(d) - d_k) of its distances d to the
centroids; sums over the image's four quadrants. Then the pooled features
are standardised, reduced by PCA and whitened (the neighbourhoods measured
best with 64 whitened components), and L2-normalised as every feature
space is.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vaal_core.config import FeatureConfig
from vaal_core.errors import RoundCancelled
from vaal_core.learn.batches import to_tensor
from vaal_core.learn.distributed import SINGLE, Dist
from vaal_core.progress import Phase, Progress, Steps

PATCH_SAMPLE = 200_000  # patches the centroids are fit on (Coates et al. use 400,000 for 1,600 centroids)
BATCH = 250  # images encoded at once: 250 x 729 patches x 400 distances is about 300 MB of float32


def _small(x: torch.Tensor, size: int) -> torch.Tensor:
    """A [-1, 1] batch in [0, 1] at `size` px (the recipe's scale: CIFAR's 32)."""
    x = (x + 1) / 2
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * L, C * p * p): every p x p patch, each with its own
    mean removed and divided by its spread (the paper's normalisation;
    10 / 255**2 keeps flat patches from being blown up into noise)."""
    u = F.unfold(x, p).transpose(1, 2).reshape(-1, x.shape[1] * p * p)
    u = u - u.mean(1, keepdim=True)
    return u / torch.sqrt(u.var(1, keepdim=True) + 10 / 255 ** 2)


def fit_dictionary(images: np.ndarray | torch.Tensor, rows: np.ndarray, cfg: FeatureConfig,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Whitening and centroids from a seeded sample of patches of `rows`."""
    from sklearn.cluster import MiniBatchKMeans

    gen = torch.Generator().manual_seed(cfg.seed)
    pick = rows[torch.randperm(len(rows), generator=gen)[:4000].numpy()]
    sample = torch.cat([_patches(_small(to_tensor(images, np.sort(pick[i:i + BATCH]), device), cfg.patch_input),
                                 cfg.patch_size).cpu() for i in range(0, len(pick), BATCH)])
    sample = sample[torch.randperm(len(sample), generator=gen)[:PATCH_SAMPLE]].double()
    mu = sample.mean(0)
    e, v = torch.linalg.eigh(torch.cov((sample - mu).T))
    zca = v @ torch.diag(1 / torch.sqrt(e.clamp(min=0) + 0.1)) @ v.T  # 0.1: the paper's ZCA epsilon
    white = ((sample - mu) @ zca).float().numpy()
    k = min(cfg.patch_clusters, len(white))
    km = MiniBatchKMeans(k, batch_size=4096, n_init=1, max_iter=50, random_state=cfg.seed).fit(white)
    return {"mu": mu.float(), "zca": zca.float(), "centroids": torch.as_tensor(km.cluster_centers_, dtype=torch.float32)}


@torch.no_grad()
def encode(images: np.ndarray | torch.Tensor, rows: np.ndarray, dictionary: dict[str, torch.Tensor],
           cfg: FeatureConfig, device: torch.device, progress: Progress | None = None,
           should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """(len(rows), 4 K) quadrant sums of the triangle activations."""
    mu, zca, c = (dictionary[k].to(device) for k in ("mu", "zca", "centroids"))
    c2 = (c * c).sum(1)
    side = cfg.patch_input - cfg.patch_size + 1
    half = side // 2
    starts = range(0, len(rows), BATCH)
    report = Steps(progress, Phase.FEATURES, len(starts), items_per_step=BATCH)
    report(0)
    out = []
    for step, i in enumerate(starts, start=1):
        if should_stop is not None and should_stop():
            raise RoundCancelled(f"round cancelled while computing the feature space (batch {step} of "
                                 f"{len(starts)}); the previous queue is kept")
        x = _small(to_tensor(images, rows[i:i + BATCH], device), cfg.patch_input)
        p = (_patches(x, cfg.patch_size) - mu) @ zca
        d = torch.sqrt(((p * p).sum(1, keepdim=True) - 2 * p @ c.T + c2).clamp(min=0))
        f = (d.mean(1, keepdim=True) - d).clamp(min=0).reshape(len(x), side, side, -1)
        quads = [f[:, :half, :half], f[:, :half, half:], f[:, half:, :half], f[:, half:, half:]]
        out.append(torch.cat([q.sum((1, 2)) for q in quads], 1).cpu())
        report(step)
    return torch.cat(out).numpy() if out else np.zeros((0, 4 * len(c)), np.float32)


def whiten(pooled: np.ndarray, dims: int) -> np.ndarray:
    """Standardise, keep the `dims` leading principal components, each
    scaled to unit variance, and L2-normalise: (N, dims) float32."""
    return reduce(pooled, dims, 0)[0]


def reduce(pooled: np.ndarray, dims: int, probe_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """From one PCA of the standardised pooled features: the samplers' space
    (`whiten`) and the linear probe's input, the `probe_dims` leading
    principal components as they are (not whitened: a regularised linear
    model then leans on the directions that vary most, as it would on all
    1,600 features; 256 of them scored within a point of all 1,600 on
    CIFAR-10, README "Suggestions"), (N, probe_dims) float32."""
    x = torch.as_tensor(pooled, dtype=torch.float64)
    x = (x - x.mean(0)) / (x.std(0, correction=0) + 1e-6)
    u, s, _ = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    keep = u[:, :min(dims, u.shape[1])]
    scores = u[:, :probe_dims] * s[:probe_dims]
    return F.normalize(keep, dim=1).float().numpy(), scores.float().numpy()


def patch_space(images: np.ndarray | torch.Tensor, rows: np.ndarray, cfg: FeatureConfig, device: torch.device,
                dictionary: dict[str, torch.Tensor] | None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None,
                dist: Dist = SINGLE) -> tuple[np.ndarray, np.ndarray, dict[str, Any], bool]:
    """The embeddings of `rows` and the linear probe's input (`reduce`), with
    the dictionary they used and whether it was kept from before (images were added: the centroids still describe
    them, so only the encoding and the PCA are redone). Several processes:
    rank 0 fits the dictionary, each rank encodes its part of the rows (with
    no stop check: the ranks' parts take different numbers of batches)."""
    warm = dictionary is not None
    if dictionary is None:
        dictionary = dist.broadcast(fit_dictionary(images, rows, cfg, device) if dist.main else None)
    stop = None if dist.on else should_stop
    pooled = dist.gather_rows(lambda part: encode(images, part, dictionary, cfg, device, progress, stop), rows)
    embed, probe = reduce(pooled, cfg.patch_dims, cfg.probe_dims)
    return embed, probe, dictionary, warm
