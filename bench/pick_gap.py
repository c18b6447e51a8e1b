"""Whether the low-budget samplers' lead over random depends on the
classifier that learns from their picks: prints figures, asserts nothing.

    python bench/pick_gap.py [--cifar DIR] [--seeds 3] [--samplers random,typiclust]
                             [--classifiers logreg,knn,spreading]

`bench/low_budget.py` measures the samplers with a small CNN trained from
scratch on each labeled set (80 minutes for every sampler). This asks the
same question in minutes, with classifiers that learn from the k-means
patch features instead (the `--fast` feature space, learn/patch_features.py,
built once on pool and test images, no label read):

- `logreg`: logistic regression on the pooled patch features (1,600 of
  them, standardised; C = 0.01), the usual linear probe;
- `knn`: a 10-nearest-neighbour vote in the feature space the samplers pick in;
- `spreading`: label spreading over the 10-nearest-neighbour graph of pool
  and test images (Zhou et al. 2004; scikit-learn's LabelSpreading,
  alpha 0.9): semi-supervised, the setting where TypiClust's paper reports
  its largest gains.

The data: 1,000 seeded images of each CIFAR-10 train class, 800 of them in
the pool and 200 in the test set. Each sampler picks 100 images a round from
no labels to 1,000, seeded per seed and round, exactly as the registry's
sampler would in a round (same code, same feature space). Prints accuracy
per round (mean over seeds) and each sampler's mean gap to random; writes
bench/results/pick-gap-cifar10k-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from bench.features import load_pool  # noqa: E402

ROUNDS, BUDGET = 10, 100


def split(y: np.ndarray, per_class_pool: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        pool.append(rows[:per_class_pool])
        test.append(rows[per_class_pool:])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(test))


def spaces(images: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the samplers' space: the product's --fast feature space, the pooled
    patch features the linear probe reads), dictionary fit on pool images."""
    import torch

    from vaal_core.config import feature_config
    from vaal_core.learn import patch_features

    cfg, cpu = feature_config(fast=True), torch.device("cpu")
    dictionary = patch_features.fit_dictionary(images, pool, cfg, cpu)
    pooled = patch_features.encode(images, np.arange(len(images)), dictionary, cfg, cpu)
    return patch_features.whiten(pooled, cfg.patch_dims), pooled


def picks(name: str, space: np.ndarray, pool: np.ndarray, labeled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The next batch, through the registry's own selector (random included)."""
    from vaal_core import samplers

    unlabeled = np.setdiff1d(pool, labeled)
    return samplers.select(name, pool, {"features": space[pool]}, unlabeled, labeled, BUDGET, rng, n_classes=10).ids


def accuracy(kind: str, labeled: np.ndarray, y: np.ndarray, test: np.ndarray, pool: np.ndarray,
             space: np.ndarray, probe: np.ndarray) -> float:
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=0.01, max_iter=2000).fit(probe[labeled], y[labeled])
        return float((model.predict(probe[test]) == y[test]).mean())
    if kind == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        model = KNeighborsClassifier(n_neighbors=min(10, len(labeled))).fit(space[labeled], y[labeled])
        return float((model.predict(space[test]) == y[test]).mean())
    if kind == "spreading":
        from sklearn.semi_supervised import LabelSpreading

        rows = np.concatenate([pool, test])
        known = np.full(len(y), -1)
        known[labeled] = y[labeled]
        model = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.9, max_iter=60).fit(space[rows], known[rows])
        return float((model.transduction_[len(pool):] == y[test]).mean())
    raise SystemExit(f"unknown classifier {kind!r}: use logreg, knn or spreading")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", default=None, help="the extracted CIFAR-10 JPEG folder (default: extract the shared one)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samplers", default="random,typiclust")
    ap.add_argument("--classifiers", default="logreg,knn,spreading")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # LabelSpreading's convergence notes
    samplers, kinds = args.samplers.split(","), args.classifiers.split(",")
    if "random" not in samplers:
        samplers.insert(0, "random")

    t0 = time.perf_counter()
    images, y = load_pool(cifar_folder(args.cifar) / "train", 1000)
    pool, test = split(y, 800)
    space, pooled = spaces(images, pool)
    probe = (pooled - pooled[pool].mean(0)) / (pooled[pool].std(0) + 1e-6)
    built = time.perf_counter() - t0
    print(f"feature space built in {built:.0f} s", flush=True)

    acc = {k: {s: np.zeros((args.seeds, ROUNDS)) for s in samplers} for k in kinds}
    for name in samplers:
        for seed in range(args.seeds):
            labeled = np.zeros(0, dtype=np.int64)
            for r in range(ROUNDS):
                rng = np.random.default_rng([seed, r])
                labeled = np.sort(np.concatenate([labeled, picks(name, space, pool, labeled, rng)]))
                for kind in kinds:
                    acc[kind][name][seed, r] = accuracy(kind, labeled, y, test, pool, space, probe)
        print(f"{name} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    out = {"classifiers": {}, "seeds": args.seeds, "rounds": ROUNDS, "budget": BUDGET,
           "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", "features_s": round(built, 1)}
    for kind in kinds:
        print(f"\n{kind}: test accuracy, % (mean over {args.seeds} seeds), by labeled images\n")
        print("| sampler | " + " | ".join(f"{BUDGET * (r + 1):,}" for r in range(ROUNDS)) + " | gap to random |")
        print("|---|" + "---|" * (ROUNDS + 1))
        base = acc[kind]["random"]
        for name in samplers:
            a = acc[kind][name]
            per_seed = 100 * (a - base).mean(1)
            gap = (f"{per_seed.mean():+.1f} ± {per_seed.std(ddof=1):.1f}" if args.seeds > 1
                   else f"{per_seed.mean():+.1f}") if name != "random" else "–"
            print(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in a.mean(0)) + f" | {gap} |")
        out["classifiers"][kind] = {name: a.round(4).tolist() for name, a in acc[kind].items()}
    wall = time.perf_counter() - t0
    out["wall_s"] = round(wall, 1)
    print(f"\nwall time {wall / 60:.1f} min; gap: per seed, mean over rounds of sampler - random, then mean ± std "
          f"over seeds")
    dest = ROOT / "bench" / "results" / "pick-gap-cifar10k-cpu.json"
    dest.write_text(json.dumps(out, indent=1))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
