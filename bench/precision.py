"""A `--fast` round's time by precision and memory layout: prints figures, asserts nothing.

    python bench/precision.py [--pool 10000] [--repeats 2] [--cifar DIR]

The same round as bench/threads.py (a VAAL round with the task model on a
pool of real CIFAR-10 JPEGs, 1,000 labeled, budget 500, `--fresh`), run in
this process with float32 contiguous, float32 channels_last and bf16
channels_last, interleaved; prints each round's wall time and timings, then
the medians. On a CPU, bf16 needs AVX-512 BF16 or AMX to be fast.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from bench.threads import make_project  # noqa: E402
from vaal_core.config import AccelConfig  # noqa: E402
from vaal_core.loop.round import RoundConfig, run_round  # noqa: E402
from vaal_core.store import Project  # noqa: E402

SETTINGS = (("float32, contiguous", AccelConfig(precision="fp32", channels_last="off")),
            ("float32, channels_last", AccelConfig(precision="fp32", channels_last="on")),
            ("bf16, channels_last", AccelConfig(precision="bf16", channels_last="on")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cifar")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    walls: dict[str, list[float]] = {name: [] for name, _ in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(cifar_folder(args.cifar), args.pool, Path(tmp))
        for r in range(args.repeats):
            for name, accel in SETTINGS:
                t0 = time.perf_counter()
                out = run_round(Project.open(root), RoundConfig(sampler="vaal", budget=500, fast=True, fresh=True,
                                                                device=args.device, accel=accel))
                walls[name].append(time.perf_counter() - t0)
                print(f"repeat {r + 1}: {name:24s} {walls[name][-1]:6.1f} s  {out.timings}", flush=True)
    base = statistics.median(walls[SETTINGS[0][0]])
    for name, w in walls.items():
        print(f"{name:24s} median {statistics.median(w):6.1f} s  ({base / statistics.median(w):.2f}x)")


if __name__ == "__main__":
    main()
