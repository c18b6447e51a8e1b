"""One round as several processes: `torchrun --nproc_per_node N -m vaal_core
round PROJECT ...` (gloo on CPUs, nccl on GPUs).

What each process does (`Dist` is the only place that knows there are
several):
- training: every rank draws its batches from its own share of the rows
  (`shard`) at 1/N of the batch size, and the gradients are averaged over
  the ranks before every optimiser step (`average_gradients`, called by
  `accel.Scaler`), so N processes take the steps one process would take with
  the whole batch. This is what DistributedDataParallel does; it is done
  here by hand because VAAL's game runs several forward passes of two models
  per step (and the task model and SimCLR call their networks' parts), which
  DDP's one-forward-one-backward reducer does not allow. Models start equal
  (same seed, same checkpoint) and stay equal; `sync` copies rank 0's
  buffers (BatchNorm's running statistics) to the others after training.
- scoring and embedding the pool: each rank scores every N-th row
  (`gather_rows`), the parts are gathered and put back in order;
- the store, checkpoints and the queue: rank 0 only (`loop/round.py`).
- cancelling: a stop asked on any rank stops every rank at the same step
  (`agreed`), so no rank waits for one that left.

Every collective operation times out (`VAAL_DIST_TIMEOUT`, default 600 s), so
a rank that dies or hangs fails the round instead of hanging it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable

import numpy as np

DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- the data each rank works on ---------------------------------------------------

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows to train on: every world-th, from its rank (all of
        them when there are fewer rows than ranks: a tiny labeled set)."""
        if not self.on:
            return rows
        mine = rows[self.rank::self.world]
        return mine if len(mine) else rows

    def batch(self, size: int) -> int:
        """Each rank's batch, so the ranks together take `size` per step."""
        return max(1, size // self.world) if self.on else size

    def gather_rows(self, fn: Callable[[np.ndarray], Any], rows: np.ndarray, axis: int = 0) -> Any:
        """`fn(rows)` computed as every rank's part (rows[rank::world]) and put
        back together in the order of `rows`. `fn` returns an array (rows on
        `axis`) or a dict of them (None values stay None)."""
        if not self.on:
            return fn(rows)
        parts = self._all_gather(fn(rows[self.rank::self.world]))
        if isinstance(parts[0], dict):
            return {k: None if parts[0][k] is None else self._interleave([p[k] for p in parts], len(rows), axis)
                    for k in parts[0]}
        return self._interleave(parts, len(rows), axis)

    def _interleave(self, parts: list[np.ndarray], n: int, axis: int) -> np.ndarray:
        first = np.asarray(parts[0])
        shape = list(first.shape)
        shape[axis] = n
        out = np.empty(shape, dtype=first.dtype)
        for r, part in enumerate(parts):
            index = [slice(None)] * len(shape)
            index[axis] = slice(r, None, self.world)
            out[tuple(index)] = part
        return out

    # -- collectives ----------------------------------------------------------------------

    def average_gradients(self, params: Iterable[Any]) -> None:
        """Average the gradients of `params` over the ranks (one all-reduce of
        them flattened together). Which parameters have a gradient follows
        from the code path, the same on every rank; those without keep none
        (the optimiser skips them, as it would in one process)."""
        if not self.on:
            return
        import torch
        import torch.distributed as td

        params = [p for p in params if p.grad is not None]
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1).float() for p in params])
        td.all_reduce(flat)
        flat /= self.world
        at = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[at:at + n].view_as(p.grad))
            at += n

    def agreed(self, stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """A stop check every rank answers alike: true once any rank's is.
        Each rank must call it at the same points (once per training step)."""
        if not self.on:
            return stop

        def check() -> bool:
            import torch
            import torch.distributed as td

            flag = torch.tensor([1 if stop is not None and stop() else 0], device=self._tensor_device())
            td.all_reduce(flag, op=td.ReduceOp.MAX)
            return bool(flag.item())

        return check

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        if not self.on:
            return obj
        import torch.distributed as td

        box = [obj if self.main else None]
        td.broadcast_object_list(box, src=0, device=self._tensor_device())
        return box[0]

    def sync(self, *modules: Any) -> None:
        """Rank 0's parameters and buffers (BatchNorm's running statistics,
        which each rank gathered from its own batches) on every rank."""
        if not self.on:
            return
        import torch.distributed as td

        for module in modules:
            if module is None:
                continue
            for t in [*module.parameters(), *module.buffers()]:
                td.broadcast(t.data, src=0)

    def _all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def _tensor_device(self):
        import torch
        import torch.distributed as td

        return torch.device("cuda", self.local_rank) if td.get_backend() == "nccl" else torch.device("cpu")

    def device(self, device):
        """The device this rank trains on: its own GPU under nccl."""
        import torch

        device = torch.device(device)
        if self.on and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


SINGLE = Dist()


def launched() -> bool:
    """Whether this process was started by torchrun with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def from_env(device_name: str | None = "auto") -> Dist:
    """The process group torchrun describes in the environment (RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), joined with a timeout on every
    collective: nccl when the round trains on CUDA GPUs, gloo otherwise.
    One process (no torchrun): SINGLE, and nothing is initialised."""
    if not launched():
        return SINGLE
    import torch
    import torch.distributed as td

    from vaal_core.learn.devices import resolve_device

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = resolve_device(device_name).type == "cuda"
    if cuda:
        torch.cuda.set_device(local)
    if not td.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("VAAL_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
        td.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    if cuda:
        return Dist(rank, world, local)
    # Two processes on one CPU share its cores: each takes its share of the threads.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    return Dist(rank, world, local)


def rank_lost(err: BaseException, dist: Dist) -> Exception | None:
    """A RankFailed naming what happened, when `err` came from a collective
    operation of a round on several processes (a rank died, or one did not
    answer within the timeout); None for any other error."""
    if not dist.on:
        return None
    import torch.distributed as td

    from vaal_core.errors import RankFailed

    import re

    # gloo's messages start with its source file's path: keep its first sentence
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(err).strip().splitlines()[0] if str(err).strip() else "")
    text = text.split(". ")[0].rstrip(".")[:160]
    if isinstance(err, td.DistError) or any(w in str(err) for w in ("Gloo", "gloo", "NCCL", "Connection")):
        return RankFailed(f"a process of this {dist.world}-process round stopped or stopped answering "
                          f"({text or type(err).__name__}); the previous queue is kept")
    return None


def close() -> None:
    """Wait until every rank is done; the caller then leaves with `leave`."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        # Every rank waits here until all are done: rank 0 still writes the
        # round after the last collective, and a rank that tore its group
        # down and exited meanwhile aborted at exit now and then ("terminate
        # called without an active exception", 2 of 23 CLI rounds on 2 CPU
        # cores; with this barrier, 1 of about 40 still did, in the group's
        # teardown or the interpreter's: see `leave`).
        td.barrier()


def leave(code: int = 0) -> None:
    """End a rank's process once its round is done and said: output flushed,
    then out without tearing down the process group or the interpreter,
    whose C++ threads (gloo's) could abort the process on the way out and
    fail a round that was already written. Nothing is left to write: the
    store committed every transaction."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
