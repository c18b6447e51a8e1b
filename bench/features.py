"""How much class meaning each feature space holds: prints figures, asserts nothing.

    python bench/features.py [--cifar DIR] [--pool 8000] [--spaces pixels,patches,simclr-fast]

The typicality and coverage samplers (typiclust, probcover, and `auto` at
low budgets) pick well only where an image's neighbours share its class.
This measures exactly that, with no sampler in the way: on a stratified
pool of CIFAR-10 train JPEGs, the leave-one-out accuracy of a 20-nearest-
neighbour vote (cosine similarity) in each space, and the wall time to
build it on this machine. The labels are read only to score.

Spaces: `pixels` (raw pixels, centred: the floor), `patches` (k-means patch
features: `--fast`'s space), `simclr-fast` (the small SimCLR that `--fast`
used before), `simclr` (the full-size one; hours on a CPU).
Writes bench/results/features-cifar<pool>-<device>.json.
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


def load_pool(train: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of each class folder (seeded), as the decoded cache holds them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images, y = [], []
    for c, folder in enumerate(sorted(p for p in train.iterdir() if p.is_dir())):
        files = sorted(folder.iterdir())
        for i in np.sort(rng.choice(len(files), per_class, replace=False)):
            with Image.open(files[i]) as im:
                images.append(np.asarray(im.convert("RGB").resize((32, 32))))
            y.append(c)
    return np.stack(images), np.asarray(y)


def knn_accuracy(embed: np.ndarray, y: np.ndarray, k: int = 20) -> float:
    """Leave-one-out k-NN vote accuracy under cosine similarity."""
    import torch

    f = torch.nn.functional.normalize(torch.as_tensor(embed, dtype=torch.float32), dim=1)
    hits = 0
    for i in range(0, len(f), 2000):
        s = f[i:i + 2000] @ f.T
        s[torch.arange(len(s)), torch.arange(i, i + len(s))] = -2.0  # not itself
        nn_y = y[s.topk(k, dim=1).indices.numpy()]
        votes = np.stack([np.bincount(r, minlength=y.max() + 1) for r in nn_y])
        hits += int((votes.argmax(1) == y[i:i + 2000]).sum())
    return hits / len(y)


def space(name: str, images: np.ndarray, device) -> tuple[np.ndarray, dict]:
    from vaal_core.config import feature_config
    from vaal_core.learn import features

    rows, ids = np.arange(len(images)), np.arange(len(images))
    if name == "pixels":
        x = images.reshape(len(images), -1).astype(np.float32)
        return x - x.mean(0), {}
    cfg = {"patches": feature_config(fast=True), "simclr": feature_config(fast=False),
           "simclr-fast": replace(feature_config(fast=True), method="simclr")}[name]
    made = features.feature_space(images, rows, ids, cfg, device, previous=None)
    return made.embed, made.info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", default=None, help="the extracted CIFAR-10 JPEG folder (default: extract the shared one)")
    ap.add_argument("--pool", type=int, default=8000)
    ap.add_argument("--spaces", default="pixels,patches,simclr-fast")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from vaal_core.learn.devices import resolve_device

    device = resolve_device(args.device)
    images, y = load_pool(cifar_folder(args.cifar) / "train", args.pool // 10)
    rows = []
    for name in args.spaces.split(","):
        t0 = time.perf_counter()
        embed, info = space(name, images, device)
        wall = time.perf_counter() - t0
        acc = knn_accuracy(embed, y)
        rows.append({"space": name, "knn20_accuracy": round(acc, 4), "dim": int(embed.shape[1]),
                     "seconds": round(wall, 1), "info": info})
        print(f"{name:12s} 20-NN accuracy {acc:6.1%}   dim {embed.shape[1]:5d}   {wall:7.1f} s", flush=True)
    out = ROOT / "bench" / "results" / f"features-cifar{args.pool}-{str(device).split(':')[0]}.json"
    out.write_text(json.dumps({"pool": args.pool, "device": str(device), "threads": os.environ.get("OMP_NUM_THREADS"),
                               "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", "spaces": rows},
                              indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
