"""Engine benchmark: prints figures, asserts nothing.

    python bench/engine.py [--device auto] [--cifar DIR] [--skip-ingest]
                           [--default-round]

Measures, on real CIFAR-10 JPEGs:
  - ingest images/s (the 50,000-image train folder into a fresh project);
  - VAAL training iterations/s and images/s, default and --fast models;
  - scoring (encode + discriminate) images/s, default and --fast;
  - a full round on a 10,000-image pool (1,000 labeled, budget 500): --fast
    always; the default configuration with --default-round (meant for a
    GPU: on a CPU it runs for hours, so without the flag its time is
    estimated from the measured iterations/s and said to be an estimate).
Writes bench/results/engine-<device>.json beside the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaal_core.learn import vaal as train  # noqa: E402
from vaal_core.learn.devices import resolve_device  # noqa: E402
from vaal_core.config import engine_config  # noqa: E402
from vaal_core.data.cache import open_cache
from vaal_core.data.ingest import ingest  # noqa: E402
from vaal_core.store import Project  # noqa: E402
from vaal_core.loop.round import RoundConfig, run_round  # noqa: E402

CIFAR_TAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"


def cifar_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    out = Path(tempfile.gettempdir()) / "cifar10"
    if not (out / "train").is_dir():
        print(f"extracting {CIFAR_TAR} to {out} ...", file=sys.stderr)
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(out, filter="data")
    return out


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (1 GPU), {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU"


def bench_training(fast: bool, device: torch.device, images: np.ndarray, iterations: int) -> dict:
    engine = engine_config(32, fast)
    m = train.build_vaal(engine.vae, engine.train, device, seed=0)
    labeled, unlabeled = np.arange(1000), np.arange(1000, len(images))
    train.train_vaal(m, images, labeled, unlabeled, engine.train, 2, device, 0)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    train.train_vaal(m, images, labeled, unlabeled, engine.train, iterations, device, 0)
    _sync(device)
    dt = time.perf_counter() - t0
    per_it = engine.train.batch_size * 2 * engine.train.vae_steps  # labeled + unlabeled batch per VAE step
    t0 = time.perf_counter()
    rows = np.arange(len(images))
    lat = train.encode(m.vae, images, rows, device)
    train.discriminate(m.disc, lat, device)
    _sync(device)
    score_dt = time.perf_counter() - t0
    return {"iterations": iterations, "iter_per_s": iterations / dt, "train_images_per_s": iterations * per_it / dt,
            "score_images_per_s": len(rows) / score_dt,
            "round_iterations_10k": engine.train.iterations(9000, warm=False)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_subset(cifar: Path, dest: Path, per_class: int) -> Path:
    """The first `per_class` train images of each class, copied."""
    for cls_dir in sorted((cifar / "train").iterdir()):
        (dest / cls_dir.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls_dir.iterdir())[:per_class]:
            shutil.copy(f, dest / cls_dir.name / f.name)
    return dest


def full_round(cifar: Path, work: Path, fast: bool, device: str) -> dict:
    folder = make_subset(cifar, work / "pool10k", 1000)
    project = Project.create(work / f"round-{'fast' if fast else 'default'}", folder, 32)
    ingest(project, gold_from_folders=True)
    items = project.items()
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(items), 1000, replace=False)
    project.set_labels([(items[i].id, items[i].gold) for i in chosen])
    t0 = time.perf_counter()
    result = run_round(project, RoundConfig(sampler="vaal", budget=500, fast=fast, device=device))
    return {"seconds": time.perf_counter() - t0, "iterations": result.metrics["iterations"],
            "timings": result.timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cifar", help="extracted CIFAR-10 folder (default: extract to the temp folder)")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--default-round", action="store_true", help="also time a default-config round")
    ap.add_argument("--default-iters", type=int, default=None, help="iterations timed for the default model")
    args = ap.parse_args()

    device = resolve_device(args.device)
    cifar = cifar_folder(args.cifar)
    results: dict = {"machine": machine(device), "device": str(device), "torch": torch.__version__,
                     "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = Project.create(work / "ingest", cifar / "train", 32)
        if not args.skip_ingest:
            report = ingest(project, gold_from_folders=True)
            results["ingest"] = {"images": report.added, "seconds": report.seconds,
                                 "images_per_s": report.images_per_s}
            print(f"ingest: {report.added} images in {report.seconds:.1f} s = {report.images_per_s:.0f} images/s",
                  flush=True)
            images = np.asarray(open_cache(project)[:10000])
        else:
            images = np.random.default_rng(0).integers(0, 256, (10000, 32, 32, 3), dtype=np.uint8)
        default_iters = args.default_iters or (200 if device.type == "cuda" else 4)
        for name, fast, iters in (("fast", True, 200 if device.type == "cuda" else 60),
                                  ("default", False, default_iters)):
            r = bench_training(fast, device, images, iters)
            r["round_seconds_10k_estimate"] = r["round_iterations_10k"] / r["iter_per_s"]
            results[f"train_{name}"] = r
            print(f"{name:>7}: {r['iter_per_s']:.2f} it/s, {r['train_images_per_s']:.0f} train images/s, "
                  f"{r['score_images_per_s']:.0f} scoring images/s; a fresh round on a 10k pool = "
                  f"{r['round_iterations_10k']} iterations, about {r['round_seconds_10k_estimate']:.0f} s",
                  flush=True)
        rounds = [("fast", True)] + ([("default", False)] if args.default_round else [])
        for name, fast in rounds:
            r = full_round(cifar, work / name, fast, str(device))
            results[f"round_{name}_10k"] = r
            print(f"{name:>7} round, 10k pool (1,000 labeled, budget 500): {r['seconds']:.1f} s "
                  f"({r['iterations']} iterations; {r['timings']})", flush=True)
    out = ROOT / "bench" / "results" / f"engine-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']}; wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
