"""Rounds across processes (learn/distributed.py): real gloo process groups
on the CPU, real `torchrun` rounds on a small CIFAR-10 project, and a rank
killed mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, make_subset, run_cli
from vaal_core.errors import BadInput
from vaal_core.learn.distributed import Dist, close
from vaal_core.services import worker
from vaal_core.store import Project

CLASSES = ["airplane", "cat", "dog"]


# -- the collectives, in two real processes ------------------------------------------

def _two_ranks(rank: int, init: str, out: str) -> None:
    """One rank of a 2-process gloo group: one optimiser step of a small
    network on its half of a batch (gradients averaged by accel.Scaler), and
    the pool's rows scored in parts and gathered."""
    import torch.distributed as td

    from vaal_core.learn.accel import Scaler

    td.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    dist = Dist(rank, 2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    mine = torch.from_numpy(dist.shard(np.arange(16)))
    loss = torch.nn.functional.cross_entropy(net(x[mine]), y[mine])
    Scaler(False, dist).step(loss, opt)
    rows = np.arange(11) * 10
    gathered = dist.gather_rows(lambda part: {"twice": part * 2, "none": None},
                                rows)
    gathered["mc"] = dist.gather_rows(lambda part: np.stack([part, -part]), rows, axis=1)
    stop_here = dist.agreed(lambda: rank == 1)()  # only rank 1 asks: both stop
    torch.save({"params": [p.detach().clone() for p in net.parameters()], "gathered": gathered,
                "stop": stop_here, "shard": dist.shard(np.arange(16)), "from_0": dist.broadcast(f"rank {rank}")},
               f"{out}.{rank}")
    close()  # as a round's ranks leave their group


def test_two_processes_take_the_step_one_process_takes_with_the_whole_batch(tmp_path):
    torch.multiprocessing.spawn(_two_ranks, args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path / "out")),
                                nprocs=2, join=True)
    got = [torch.load(tmp_path / f"out.{r}", weights_only=False) for r in (0, 1)]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    for rank in got:  # equal halves: the mean of the halves' gradients is the whole batch's
        for mine, whole in zip(rank["params"], net.parameters()):
            assert torch.allclose(mine, whole.detach(), atol=1e-6)
    rows = np.arange(11) * 10
    for rank in got:
        assert np.array_equal(rank["gathered"]["twice"], rows * 2) and rank["gathered"]["none"] is None
        assert np.array_equal(rank["gathered"]["mc"], np.stack([rows, -rows]))
        assert rank["stop"] is True and rank["from_0"] == "rank 0"
    assert np.array_equal(got[0]["shard"], np.arange(0, 16, 2)) and np.array_equal(got[1]["shard"], np.arange(1, 16, 2))


def test_one_process_is_untouched_and_a_tiny_set_is_shared():
    single = Dist()
    rows = np.arange(5)
    assert single.shard(rows) is rows and single.batch(64) == 64 and single.gather_rows(lambda r: r + 1, rows)[0] == 1
    assert np.array_equal(Dist(3, 4).shard(np.arange(2)), np.arange(2))  # fewer rows than ranks: all of them
    assert Dist(1, 2).batch(64) == 32 and Dist(1, 4).batch(2) == 1


def test_a_lost_rank_is_said_in_one_line():
    from vaal_core.learn.distributed import rank_lost

    gloo = RuntimeError("[/build/gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:28566. "
                        "This is typically caused by a remote worker crashing.")
    assert str(rank_lost(gloo, Dist(0, 2))) == ("a process of this 2-process round stopped or stopped answering "
                                                "(Connection closed by peer [127.0.0.1]:28566); the previous queue "
                                                "is kept")
    assert rank_lost(gloo, Dist()) is None and rank_lost(ValueError("a bug"), Dist(0, 2)) is None


def test_processes_are_checked_against_the_gpus():
    worker.check_processes(1, "auto", {"cuda": []})
    worker.check_processes(2, "cpu", {"cuda": []})  # ranks sharing the CPU: allowed (slow, but it works)
    with pytest.raises(BadInput, match="3 processes need 3 GPUs; this machine has 2"):
        worker.check_processes(3, "auto", {"cuda": ["GPU A", "GPU B"]})
    with pytest.raises(BadInput, match="at least 1"):
        worker.check_processes(0, "auto", None)


# -- real torchrun rounds -----------------------------------------------------------------

@pytest.fixture
def labeled_project(cifar_root, tmp_path) -> Path:
    """60 real CIFAR JPEGs of 3 classes, 4 of each labeled."""
    images = make_subset(cifar_root, tmp_path / "images", per_class=20, classes=CLASSES)
    root = tmp_path / "project"
    run_cli("init", root, "--images", images, "--gold-from-folders")
    p = Project.open(root)
    first = {c: [it.id for it in p.items() if it.gold == c][:4] for c in CLASSES}
    p.set_labels([(i, c) for c, ids in first.items() for i in ids])
    return root


def _torchrun(*args: str, processes: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={processes}", "-m", "vaal_core", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_a_two_process_round_from_the_app_and_again_from_torchrun(labeled_project):
    """The Train page's path (worker.start_round with 2 processes) trains a
    VAAL round as 2 gloo ranks: one round row, one queue, rank 0's
    checkpoints; the same round seed on a re-run (torchrun, --fresh) gives
    the same queue."""
    p = Project.open(labeled_project)
    started = worker.start_round(p, "vaal", 10, device="cpu", fast=True, audit=0.0, processes=2)
    assert started.command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    deadline = time.monotonic() + 300
    while worker.round_worker(p).running and time.monotonic() < deadline:
        time.sleep(0.5)
    state = worker.round_worker(p)
    assert not state.running and state.error is None, state.log_tail()
    rounds = p.rounds()
    assert [r["status"] for r in rounds] == ["done"], rounds  # rank 1 wrote no round of its own
    metrics = rounds[0]["metrics"]
    assert metrics["accel"]["processes"] == 2 and metrics["discriminator"]["auc"] >= 0.75
    queue = [q["item_id"] for q in p.queue()]
    assert len(queue) == 10 and not set(queue) & p.labeled_ids()
    assert (p.checkpoint_dir / "vaal.pt").is_file() and (p.checkpoint_dir / "task.pt").is_file()
    assert not list(p.checkpoint_dir.glob(".round-*"))

    # the first round started from nothing, as --fresh does: the same seed gives the same queue
    proc = _torchrun("round", labeled_project, "--sampler", "vaal", "--budget", "10", "--fast", "--device", "cpu",
                     "--audit", "0", "--fresh", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    again = json.loads(out)  # one JSON object: only rank 0 prints
    assert again["metrics"]["accel"]["processes"] == 2 and not again["metrics"]["warm_start"]
    assert [q["item_id"] for q in again["queue"]] == queue
    assert [r["status"] for r in p.rounds()] == ["done"] * 2


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and _descends(int(stat[1]), parent):
            return int(proc.name)
    return None


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(5):
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


@pytest.mark.slow
def test_a_killed_rank_fails_the_round_cleanly_and_keeps_the_queue(labeled_project):
    """kill -9 of rank 1 while the round trains: rank 0 fails the round in
    words (no hang), its staged models are dropped, the old queue stays and
    the next round runs."""
    # random rounds with no suggestions train nothing: the queue before, and a round after, in seconds
    run_cli("round", labeled_project, "--sampler", "random", "--budget", "10", "--no-suggest", "--device", "cpu")
    p = Project.open(labeled_project)
    before = p.queue()
    t0 = time.monotonic()
    proc = _torchrun("round", labeled_project, "--sampler", "vaal", "--budget", "10", "--fast", "--device", "cpu")
    victim = None
    while victim is None and time.monotonic() - t0 < 240:
        last = p.rounds()[-1]
        if last["status"] == "running" and (last.get("progress") or {}).get("phase") in ("task", "train"):
            victim = _rank_pid(proc.pid, 1)
        time.sleep(0.1)
    assert victim is not None, "the round never reached training"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)  # never a hang
    assert proc.returncode != 0
    last = p.rounds()[-1]
    assert last["status"] == "failed", last
    assert "a process of this 2-process round stopped" in last["error"], last  # ranks ignore torchrun's SIGTERM
    assert "previous queue is kept" in last["error"]
    assert p.queue() == before and not list(p.checkpoint_dir.glob(".round-*"))
    assert "error: " in err and "previous queue is kept" in err
    assert not p.is_training()
    run_cli("round", labeled_project, "--sampler", "random", "--budget", "5", "--no-suggest", "--device", "cpu")
    assert p.rounds()[-1]["status"] == "done"
