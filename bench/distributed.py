"""Rounds across processes: prints figures, asserts nothing.

    python bench/distributed.py [--cifar DIR] [--pool 4000] [--iters 20] [--repeats 3]
                                [--processes 1,2] [--device cpu] [--full]
    python bench/distributed.py --quality [--pool 3000] [--seeds 3]

For each process count N, `torchrun --standalone --nproc_per_node N` runs
this script's worker (learn/distributed.py, the code a round runs): on a
pool of decoded CIFAR-10 train JPEGs (10% labeled) it times the VAAL game
(--iters iterations after 2 warm-up ones, the whole batch split over the
ranks), the task model's training (the same), and scoring the pool with
the VAE (each rank its part, gathered). Images/s count every rank's images:
iterations x VAE steps x (labeled + unlabeled batch) for the game, steps x
batch for the task model, pool size for scoring. Repeats interleave the
process counts; medians are printed with the ratio to one process.

On a CPU, N processes share its cores (torchrun gives each one thread), so
this measures the overhead of the collectives more than a speed-up; on a
machine with N GPUs each rank has its own. Writes
bench/results/distributed-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(args: argparse.Namespace) -> None:
    import torch

    from bench.engine import cifar_folder
    from bench.features import load_pool
    from vaal_core.config import AccelConfig, engine_config
    from vaal_core.learn import accel as accel_mod
    from vaal_core.learn import distributed, task, vaal

    dist = distributed.from_env(args.device)
    device = dist.device(torch.device(args.device))
    images, y = load_pool(cifar_folder(args.cifar) / "train", args.pool // 10)
    rows = np.arange(len(images))
    labeled = rows[:: 10]
    unlabeled = np.setdiff1d(rows, labeled)
    eng = engine_config(32, fast=not args.full)
    acc = accel_mod.resolve(AccelConfig(), device, dist)
    pixels = accel_mod.place_images(images, acc)
    out = {"processes": dist.world, "threads": torch.get_num_threads(), "device": str(device)}

    m = vaal.build_vaal(eng.vae, eng.train, device, seed=0, accel=acc)
    vaal.train_vaal(m, pixels, labeled, unlabeled, eng.train, 2, device, 0, accel=acc)  # warm-up
    t0 = time.perf_counter()
    vaal.train_vaal(m, pixels, labeled, unlabeled, eng.train, args.iters, device, 0, accel=acc)
    game_s = time.perf_counter() - t0
    per_iter = eng.train.vae_steps * 2 * eng.train.batch_size  # labeled + unlabeled batch, all ranks together
    out["vaal_train_images_per_s"] = args.iters * per_iter / game_s

    dist.sync(m.vae)
    t0 = time.perf_counter()
    latents = dist.gather_rows(lambda part: vaal.encode(m.vae, pixels, part, device, accel=acc), rows)
    out["score_images_per_s"] = len(rows) / (time.perf_counter() - t0)
    assert latents.shape[0] == len(rows)

    cfg = eng.task
    steps = 2 + args.iters
    cfg = replace(cfg, epochs=steps * cfg.batch_size / len(rows), min_steps=steps)
    model = task.new_task_model(10, cfg, device, 0, accel=acc)
    t0 = time.perf_counter()
    task.train_task(model, pixels, rows, y, cfg, device, 0, accel=acc)
    out["task_train_images_per_s"] = steps * cfg.batch_size / (time.perf_counter() - t0)
    if dist.main:
        print("RESULT " + json.dumps(out), flush=True)
    distributed.close()


def quality(args: argparse.Namespace) -> None:
    """A VAAL round on the ranks (the pipeline a round runs), then, on rank 0
    alone, a plain classifier trained fresh on the labeled set plus the
    round's batch and measured on held-out images: the queue's worth, the
    same measure for every process count."""
    import torch

    from bench.engine import cifar_folder
    from bench.features import load_pool
    from vaal_core import samplers
    from vaal_core.config import engine_config
    from vaal_core.learn import distributed, pipeline
    from vaal_core.learn.checkpoints import InMemory

    dist = distributed.from_env(args.device)
    device = dist.device(torch.device(args.device))
    images, y = load_pool(cifar_folder(args.cifar) / "train", (args.pool + 1000) // 10)
    order = np.random.default_rng(0).permutation(len(y))
    pool, test = np.sort(order[:args.pool]), np.sort(order[args.pool:])
    eng = engine_config(32, fast=not args.full)
    classes = [str(c) for c in range(10)]
    out = {}
    for seed in range(args.seeds):
        labeled = np.isin(pool, np.random.default_rng(seed).choice(pool, args.pool // 10, replace=False))
        data = pipeline.RoundData(images, pool, pool, labeled, np.where(labeled, y[pool], -1), classes,
                                  task_train=labeled, eval_rows=test, eval_targets=y[test])
        made = pipeline.produce({"latents", "disc_prob"}, pipeline.Job(data, eng, device, seed, InMemory(),
                                                                     dist=dist))
        if not dist.main:
            continue
        sel = samplers.select("vaal", pool, made.values, pool[~labeled], pool[labeled], args.pool // 10,
                              np.random.default_rng(seed))
        after = labeled | np.isin(pool, sel.ids)
        fresh = pipeline.RoundData(images, pool, pool, after, np.where(after, y[pool], -1), classes,
                                   task_train=after, eval_rows=test, eval_targets=y[test])
        measured = pipeline.produce({"task_model"}, pipeline.Job(fresh, eng, device, seed, InMemory()))
        out[seed] = {"accuracy": measured.metrics["task"]["accuracy"], "queue": [int(i) for i in sel.ids],
                     "auc": made.metrics["discriminator"]["auc"]}
    if dist.main:
        print("RESULT " + json.dumps({"processes": dist.world, "seeds": out}), flush=True)
    distributed.close()


def run(n: int, args: argparse.Namespace, mode: str = "--worker") -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", __file__,
           mode, "--pool", str(args.pool), "--iters", str(args.iters), "--device", args.device,
           "--seeds", str(args.seeds)]
    cmd += ["--cifar", args.cifar] if args.cifar else []
    cmd += ["--full"] if args.full else []
    # as `python -m vaal_core` runs a round: threads sleep rather than spin when they wait
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{n} processes failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar")
    ap.add_argument("--pool", type=int, default=4000)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="reference-size models (for GPUs)")
    ap.add_argument("--quality", action="store_true",
                    help="instead of speed: each process count's VAAL queue, graded by a fresh classifier "
                         "trained on the labels plus the queue (--seeds seeds)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quality-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.quality_worker:
        quality(args)
        return
    counts = [int(n) for n in args.processes.split(",")]
    if args.quality:
        graded = {n: run(n, args, "--quality-worker")["seeds"] for n in counts}
        print(f"\nVAAL queue of {args.pool // 10:,} from {args.pool:,} images ({args.pool // 10:,} labeled at "
              f"random), graded by a fresh classifier on 1,000 held-out images; per seed:\n")
        print("| processes | " + " | ".join(f"seed {s}" for s in graded[counts[0]]) + " | mean | queue overlap "
              f"with {counts[0]} process(es) |")
        print("|---|" + "---|" * (len(graded[counts[0]]) + 2))
        for n in counts:
            accs = [v["accuracy"] for v in graded[n].values()]
            overlap = np.mean([len(set(graded[n][s]["queue"]) & set(graded[counts[0]][s]["queue"]))
                               / len(graded[n][s]["queue"]) for s in graded[n]])
            print(f"| {n} | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + f" | {100 * np.mean(accs):.1f}% | "
                  f"{100 * overlap:.0f}% |")
        dest = ROOT / "bench" / "results" / f"distributed-quality-{args.device}.json"
        dest.write_text(json.dumps({"pool": args.pool, "graded": graded}, indent=1))
        print(f"wrote {dest}")
        return
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for r in range(args.repeats):
        for n in counts:
            runs[n].append(run(n, args))
            print(f"repeat {r + 1}, {n} process(es): " + ", ".join(
                f"{k} {v:,.0f}" for k, v in runs[n][-1].items() if k.endswith("per_s")), flush=True)
    keys = ["vaal_train_images_per_s", "task_train_images_per_s", "score_images_per_s"]
    med = {n: {k: statistics.median(x[k] for x in runs[n]) for k in keys} for n in counts}
    base = med[counts[0]]
    print(f"\n{'--full' if args.full else '--fast'} models, pool {args.pool:,}, {args.device}, "
          f"{os.cpu_count()} CPU cores ({platform.machine()}); medians of {args.repeats} interleaved repeats\n")
    print("| processes | VAAL game images/s | task model images/s | scoring images/s |")
    print("|---|---|---|---|")
    for n in counts:
        print(f"| {n} | " + " | ".join(f"{med[n][k]:,.0f} ({med[n][k] / base[k]:.2f}x)" for k in keys) + " |")
    dest = ROOT / "bench" / "results" / f"distributed-{args.device}.json"
    dest.write_text(json.dumps({"pool": args.pool, "iters": args.iters, "full": args.full, "medians": med,
                                "runs": runs, "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})"},
                               indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
