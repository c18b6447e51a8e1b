"""Batches from the decoded image cache: uint8 rows to normalised tensors on
the device, per-image augmentation, endless shuffled streams of rows, and
the check that stops a round when a loss diverges."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vaal_core.errors import TrainingDiverged


def to_tensor(images: np.ndarray | torch.Tensor, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, S, S, 3) cache rows -> float (B, 3, S, S) in [-1, 1] on device.
    `images` is the memmap, or the cache already on the device
    (`accel.place_images`): then the batch is gathered there, with no copy
    through the host."""
    if isinstance(images, torch.Tensor):
        batch = images.index_select(0, torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(images.device))
        return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
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


def check_finite(name: str, value: torch.Tensor, iteration: int) -> None:
    if not torch.isfinite(value):
        raise TrainingDiverged(
            f"the {name} loss became {value.item()} at iteration {iteration}; the round stopped and the "
            "previous queue is kept. Try a lower learning rate or start fresh (--fresh)")
