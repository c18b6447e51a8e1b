"""How long the `--fast` task model should train: test accuracy against
passes over the labels, from scratch and warm-started as a project's rounds
are. Prints figures, asserts nothing.

    python bench/task_epochs.py [--cifar DIR] [--seeds 3] [--sizes 300,1000,3500]
                                [--epochs 15,30,60]

The data: 1,000 seeded images of each CIFAR-10 train class, 800 of them in
the pool and 200 in the test set (as `bench/suggestions.py`). For each seed
a random order of the pool; the labels are its first N images, less the
fixed 10% a round holds out. The round's own learning trains the task model
(`pipeline.produce`, `--fast` but for its passes, CPU):

- from scratch, for each of `--epochs` passes, at each of `--sizes`: what a
  project's first round (or a `--fresh` one) and every fresh classifier of
  a simulation (`--evaluate common`) train;
- warm-started, as a project's rounds: from scratch at 1,000 labels with the
  `--fast` setting, then 500 more labels a round to 3,500, each round warm
  from the last one's model with the `--fast` warm passes (`TaskConfig.epochs_warm`).

Prints test accuracy (mean ± std over seeds) and seconds of training per
setting; writes bench/results/task-epochs-cifar10k-fast-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from bench.features import load_pool  # noqa: E402
from bench.pick_gap import split  # noqa: E402
from bench.suggestions import produce, round_data  # noqa: E402

CHAIN = (1000, 1500, 2000, 2500, 3000, 3500)


def train(images: np.ndarray, y: np.ndarray, test: np.ndarray, labeled: np.ndarray, seed: int,
          epochs: int | None, models) -> dict:
    """The task model trained on `labeled` (less the held-out slice) for
    `epochs` passes (None: the `--fast` setting, fresh or warm as `models`
    holds a model or not); its accuracy on the test rows."""
    data, engine = round_data(images, y, labeled)
    if epochs is not None:
        engine = replace(engine, task=replace(engine.task, epochs=epochs))
    made = produce({"task_probs"}, data, engine, seed, {}, models)
    task = made.metrics["task"]
    return {"accuracy": float((made.values["task_probs"][test].argmax(1) == y[test]).mean()),
            "seconds": made.timings["task_s"], "steps": task["steps"], "epochs": task["epochs"],
            "warm": task["warm_start"]}


def row(label: str, runs: list[dict]) -> str:
    acc = 100 * np.array([r["accuracy"] for r in runs])
    return (f"| {label} | {acc.mean():.1f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.1f} | "
            f"{runs[0]['steps']:,} | {np.median([r['seconds'] for r in runs]):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", default=None, help="the extracted CIFAR-10 JPEG folder (default: extract the shared one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sizes", default="300,1000,3500")
    ap.add_argument("--epochs", default="15,30,60")
    args = ap.parse_args()
    import torch

    from vaal_core.config import engine_config
    from vaal_core.learn.checkpoints import InMemory

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.perf_counter()
    images, y = load_pool(cifar_folder(args.cifar) / "train", 1000)
    pool, test = split(y, 800)
    fresh: dict = {}
    chain: dict = {}
    for seed in range(args.seeds):
        order = np.random.default_rng(100 + seed).permutation(pool)
        for n in (int(s) for s in args.sizes.split(",")):
            for epochs in (int(e) for e in args.epochs.split(",")):
                got = train(images, y, test, np.sort(order[:n]), seed, epochs, InMemory())
                fresh.setdefault(n, {}).setdefault(epochs, []).append(got)
                print(f"seed {seed} {n:>5} labels, from scratch, {epochs} passes: {100 * got['accuracy']:.1f}% "
                      f"({got['seconds']:.0f} s; {time.perf_counter() - t0:.0f} s in all)", flush=True)
        models = InMemory()  # one project: its rounds warm-start
        for n in CHAIN:
            got = train(images, y, test, np.sort(order[:n]), seed, None, models)
            chain.setdefault(n, []).append(got)
            print(f"seed {seed} {n:>5} labels, rounds warm-started: {100 * got['accuracy']:.1f}% "
                  f"({got['epochs']} passes, {got['seconds']:.0f} s)", flush=True)

    task = engine_config(32, fast=True).task
    print(f"\nTest accuracy of the task model, % (mean ± std over {args.seeds} seeds), the steps of training "
          f"(batch {task.batch_size}, at least {task.min_steps}) and their seconds (median):\n")
    print("| labels | passes over the labels | accuracy | steps | seconds |\n|---|---|---|---|---|")
    for n, by_epochs in fresh.items():
        for epochs, runs in by_epochs.items():
            print(row(f"{n:,} | {epochs}, from scratch", runs))
    for n, runs in chain.items():
        how = f"{runs[0]['epochs']}, from scratch" if not runs[0]["warm"] else f"{runs[0]['epochs']}, warm"
        print(row(f"{n:,} | {how} (rounds of +500)", runs))
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall / 60:.1f} min, {os.cpu_count()} CPU cores ({platform.machine()})")
    dest = ROOT / "bench" / "results" / "task-epochs-cifar10k-fast-cpu.json"
    dest.write_text(json.dumps({"fresh": {str(n): {str(e): r for e, r in by.items()} for n, by in fresh.items()},
                                "warm_chain": {str(n): r for n, r in chain.items()},
                                "task_config": {"epochs": task.epochs, "epochs_warm": task.epochs_warm,
                                                "batch_size": task.batch_size, "min_steps": task.min_steps},
                                "seeds": args.seeds, "wall_s": round(wall, 1), "cpu_cores": os.cpu_count(),
                                "machine": platform.machine()}, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
