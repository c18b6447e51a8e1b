"""How a round runs fast on the device it has: mixed precision, memory
layout, where the decoded images live, scoring batch size and
torch.compile. (How a CPU's threads wait is set where the process starts:
vaal_core/__main__.py.)

`resolve(AccelConfig, device)` turns the settings ("auto" by default) into
an `Accel` the training loops read:

    setting        auto on CUDA                     auto on CPU             on MPS
    precision      bf16 where the GPU has it, else  fp32                    fp32
                   fp16 (with a gradient scaler)
    channels_last  on                               on                      off
    device_cache   on when the cache fits in a      off (the memmap is already in host memory)
                   quarter of the free GPU memory
    compile        on (eager if compiling fails)    off                     off
    score_batch    4096                             512                     512

Measured on 2 CPU cores (AVX-512 with BF16), a `--fast` round on a
10,000-image CIFAR-10 pool with the task model, side by side (medians of
2): float32 47.9 s, float32 channels_last 41.4 s, bf16 channels_last 38.3 s.
channels_last is on for CPUs too; bf16 stays a choice there
(`--precision bf16`): its gain over channels_last was small and within
the noise of one run, and CPUs without BF16 instructions run it
slowly. The tests use
bf16 on the CPU to check that autocast keeps the queue quality of float32
where no GPU is at hand.

Every choice is recorded with the round (`Accel.describe`), so a queue says
how it was computed.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import numpy as np
import torch
from torch import nn

from vaal_core.config import AccelConfig
from vaal_core.errors import BadInput
from vaal_core.learn.devices import check_precision
from vaal_core.learn.distributed import SINGLE, Dist

# The decoded cache goes to the GPU only when it takes at most this share
# of the free memory: the models, activations and the allocator's slack
# need the rest (the 50,000-image CIFAR cache is 150 MB).
DEVICE_CACHE_SHARE = 0.25


@dataclass(frozen=True)
class Accel:
    device: torch.device
    precision: str = "fp32"  # fp32 | bf16 | fp16
    channels_last: bool = False
    device_cache: bool = False
    compile: bool = False
    score_batch: int = 512
    dist: Dist = SINGLE  # the round's processes (learn/distributed.py): gradients averaged over them

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> ContextManager:
        """Forward passes run under this, in lower precision where chosen;
        the callers compute their losses outside it, in float32."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> "Scaler":
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return Scaler(self.precision == "fp16" and self.device.type == "cuda", self.dist)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch (B, C, H, W) in the memory layout the models use."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def prepare(self, module: nn.Module) -> nn.Module:
        """The module in the chosen memory layout (in place: its parameters
        stay the ones the optimiser holds)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def compiled(self, fn: Callable, note: list[str] | None = None) -> Callable:
        """`fn` compiled by torch.compile when chosen; the eager `fn` when
        not, or when compiling fails (no compiler, an unsupported op): the
        round goes on, and `note` says why."""
        if not self.compile:
            return fn
        return _compile_or_eager(fn, note)

    def describe(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last,
                "device_cache": self.device_cache, "compile": self.compile, "score_batch": self.score_batch,
                **({"processes": self.dist.world} if self.dist.on else {})}


class Scaler:
    """torch.amp.GradScaler where fp16 needs it; plain backward and step
    otherwise, so every loop has one code path. In a round of several
    processes the gradients are averaged over them between the backward pass
    and the step (learn/distributed.py)."""

    def __init__(self, enabled: bool, dist: Dist = SINGLE):
        self._scaler = torch.amp.GradScaler("cuda") if enabled else None
        self._dist = dist

    def step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        if self._scaler is None:
            loss.backward()
            self._average(opt)
            opt.step()
            return
        self._scaler.scale(loss).backward()
        self._average(opt)  # scaled gradients: averaging is linear, the scaler unscales after
        self._scaler.step(opt)
        self._scaler.update()

    def _average(self, opt: torch.optim.Optimizer) -> None:
        if self._dist.on:
            self._dist.average_gradients(p for group in opt.param_groups for p in group["params"])


def resolve(cfg: AccelConfig, device: torch.device | str, dist: Dist = SINGLE) -> Accel:
    """The concrete settings for this device (see the module docstring)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    precision = check_precision(cfg.precision, device.type)
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BadInput(f"precision fp16 needs a CUDA GPU (this round runs on {device.type}); use bf16 or fp32")
    return Accel(device=device, precision=precision,
                 channels_last=(device.type != "mps") if cfg.channels_last == "auto" else cfg.channels_last == "on",
                 device_cache=cfg.device_cache == "on" or (cfg.device_cache == "auto" and cuda),
                 compile=cuda if cfg.compile == "auto" else cfg.compile == "on",
                 score_batch=cfg.score_batch or (4096 if cuda else 512), dist=dist)


def place_images(images: np.ndarray, accel: Accel) -> np.ndarray | torch.Tensor:
    """The decoded uint8 cache (N, S, S, 3) where batches are gathered from:
    copied to the device once per round when the device cache is chosen and
    fits (batches then never cross the host bus), else the memmap as it is."""
    if not accel.device_cache:
        return images
    if accel.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(accel.device)
        if images.nbytes > DEVICE_CACHE_SHARE * free:
            return images
    # A copy read into memory: the memmap is opened read-only, and PyTorch
    # warns that a tensor over it must never be written to.
    return torch.from_numpy(np.array(images, copy=True)).to(accel.device)


def _compile_or_eager(fn: Callable, note: list[str] | None) -> Callable:
    """torch.compile compiles on the first call, so a failure shows there:
    the first call tries the compiled function and falls back to eager for
    good if it raises."""
    try:
        fast = torch.compile(fn)
    except Exception as err:  # noqa: BLE001 - any compiler failure means: run eager
        _say(note, err)
        return fn
    state = {"fn": fast, "tried": False}

    def call(*args, **kwargs):
        if state["tried"]:
            return state["fn"](*args, **kwargs)
        state["tried"] = True
        try:
            return fast(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            _say(note, err)
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call


def _say(note: list[str] | None, err: Exception) -> None:
    if note is not None:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        note.append(f"torch.compile failed ({type(err).__name__}: {first[:200]}); ran eager")
