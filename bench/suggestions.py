"""How often the label suggestions are right: the task model alone against
the task model combined with a linear probe on the feature space (what a
round suggests when it has one, learn/probe.py). Prints figures, asserts
nothing.

    python bench/suggestions.py [--cifar DIR] [--seeds 3] [--picks random,typiclust]
                                [--sizes 100,200,300,500,700,1000,1500,2000]

The data: 1,000 seeded images of each CIFAR-10 train class (10,000), as
`bench/pick_gap.py` takes them: 800 of each class in the pool, 200 in the
test set. For each seed, labels grow through `--sizes`, picked by `random`
or by `typiclust` (auto's sampler while labels are few) through the
registry's own selector. At each size the round's own learning runs
(`pipeline.produce`, `--fast`, CPU): the task model trained on the labels
less the round's held-out slice (the fixed 10% a project holds out), warm
from the previous size's model as a project's rounds are (from scratch at
the first size),
the feature space (built once: it reads no label) and the combination,
each calibrated on that held-out slice as a round does. Every test image
is an unlabeled item of the round, so its suggestion is exactly what the
Label page would show for it.

Prints, per picking rule and size (mean over seeds): test accuracy of the
task model's suggestions, of the linear probe alone and of the
combination, and the calibration error (ECE, 15 bins) of the confidence a
round shows (after its temperature) for the task model and the
combination; then the combination's gain over the task model, per seed
paired. Writes bench/results/suggestions-cifar10k-fast-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from bench.features import load_pool  # noqa: E402
from bench.pick_gap import split  # noqa: E402


def round_data(images: np.ndarray, y: np.ndarray, labeled: np.ndarray):
    """Every image an item of the round; `labeled` known, with the fixed
    10% slice of them held out as a project's round holds it out."""
    from vaal_core.config import engine_config
    from vaal_core.learn import pipeline
    from vaal_core.loop.round import held_out

    engine = engine_config(32, fast=True)
    ids = np.arange(len(images), dtype=np.int64)
    is_labeled = np.zeros(len(ids), bool)
    is_labeled[labeled] = True
    val = is_labeled & held_out(ids, engine.task.val_fraction)
    targets = np.where(is_labeled, y, -1)
    data = pipeline.RoundData(images, ids, ids, is_labeled, targets, [str(c) for c in range(10)],
                              task_train=is_labeled & ~val, eval_rows=ids[val], eval_targets=y[val])
    return data, engine


def produce(needs: set[str], data, engine, seed: int, shared: dict, models=None):
    """The round's own learning; `models`: where the last round's models are
    (an InMemory the caller keeps: warm-started as a project's rounds are;
    None: from scratch)."""
    import torch

    from vaal_core.learn import pipeline
    from vaal_core.learn.checkpoints import InMemory

    return pipeline.produce(needs, pipeline.Job(data, engine, torch.device("cpu"), seed,
                                                InMemory() if models is None else models, shared=shared))


def feature_space(images: np.ndarray, y: np.ndarray, shared: dict) -> np.ndarray:
    data, engine = round_data(images, y, np.zeros(0, dtype=np.int64))
    return produce({"features"}, data, engine, 0, shared).values["features"]


def measure(images: np.ndarray, y: np.ndarray, labeled: np.ndarray, seed: int, shared: dict, models) -> dict:
    """One round's learning on these labels, warm from the last round's
    models in `models`; the suggestions of the images left unlabeled (the
    test split and the rest of the pool)."""
    from vaal_core.learn import calibration, probe

    data, engine = round_data(images, y, labeled)
    made = produce({"suggest_probs"}, data, engine, seed, shared, models)
    targets, test = data.targets, ~data.labeled
    alone = probe.probe_probs(probe.fit_probe(made.values["feature_probe"][data.task_train],
                                              targets[data.task_train], seed), made.values["feature_probe"], 10)
    shown = {}
    for name, probs, fitted in (("task", made.values["task_probs"], made.metrics["task"]["calibration"]),
                                ("combined", made.values["suggest_probs"], made.metrics["suggest"]["calibration"])):
        p = calibration.scale(probs, fitted["temperature"]) if fitted["calibrated"] else probs
        shown[name] = p
    out = {name: float((p[test].argmax(1) == y[test]).mean()) for name, p in shown.items()}
    out["probe"] = float((alone[test].argmax(1) == y[test]).mean())
    for name, p in shown.items():
        out[f"ece_{name}"] = calibration.expected_calibration_error(p[test], y[test])
    out["n_val"] = int(len(data.eval_rows))
    out["probe_s"] = made.timings.get("probe_s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", default=None, help="the extracted CIFAR-10 JPEG folder (default: extract the shared one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--picks", default="random,typiclust")
    ap.add_argument("--sizes", default="100,200,300,500,700,1000,1500,2000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    import torch

    from vaal_core import samplers
    from vaal_core.learn.checkpoints import InMemory

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.perf_counter()
    images, y = load_pool(cifar_folder(args.cifar) / "train", 1000)
    pool, test = split(y, 800)
    shared: dict = {}  # the pipeline's memo: the feature space is built once for every round here
    results: dict = {}
    space = feature_space(images, y, shared)[pool]  # what typiclust picks in: reads no label, made once
    for rule in args.picks.split(","):
        for seed in range(args.seeds):
            labeled, models = np.zeros(0, dtype=np.int64), InMemory()  # one project: its rounds warm-start
            for n in sizes:
                unlabeled = np.setdiff1d(pool, labeled)
                picked = samplers.select(rule, pool, {"features": space}, unlabeled, labeled, n - len(labeled),
                                         np.random.default_rng([seed, n]), n_classes=10).ids
                labeled = np.sort(np.concatenate([labeled, picked]))
                got = measure(images, y, labeled, seed, shared, models)
                results.setdefault(rule, {}).setdefault(n, []).append(got)
                print(f"{rule} seed {seed} {n:>5} labels: task {100 * got['task']:.1f}  probe "
                      f"{100 * got['probe']:.1f}  combined {100 * got['combined']:.1f}  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)

    print(f"\nTest accuracy of the suggestions, % (mean over {args.seeds} seeds), and the calibration error of "
          "the confidence shown (ECE after the round's temperature)\n")
    print("| picks | labels | task model | linear probe | combined | gain (paired, ± std) | ECE task | "
          "ECE combined |")
    print("|---|---|---|---|---|---|---|---|")
    for rule, by_size in results.items():
        for n, runs in by_size.items():
            mean = {k: 100 * np.mean([r[k] for r in runs]) for k in ("task", "probe", "combined")}
            gain = [100 * (r["combined"] - r["task"]) for r in runs]
            spread = f" ± {np.std(gain, ddof=1):.1f}" if len(gain) > 1 else ""
            print(f"| {rule} | {n:,} | {mean['task']:.1f} | {mean['probe']:.1f} | {mean['combined']:.1f} | "
                  f"{np.mean(gain):+.1f}{spread} | {np.mean([r['ece_task'] for r in runs]):.3f} | "
                  f"{np.mean([r['ece_combined'] for r in runs]):.3f} |")
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall / 60:.1f} min on {os.cpu_count()} CPU cores")
    out = {"seeds": args.seeds, "sizes": sizes, "results": results, "wall_s": round(wall, 1),
           "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})"}
    dest = ROOT / "bench" / "results" / "suggestions-cifar10k-fast-cpu.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
