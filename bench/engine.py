"""Engine benchmark: prints figures, asserts nothing.

    python bench/engine.py [--device auto] [--cifar DIR] [--skip-ingest]
                           [--default-round] [--default-iters N]
                           [--only-reference] [--ref-iters N] [--repeats R]
                           [--ref-images N] [--only-rounds] [--round-pool N]
                           [--no-write]

Measures, on real CIFAR-10 JPEGs:
  - ingest images/s (the 50,000-image train folder into a fresh project);
  - VAAL training iterations/s and images/s, default and --fast models;
  - scoring (encode + discriminate) images/s, default and --fast;
  - our VAAL loop side by side with the VAAL authors' reference loop
    (bench/reference_vaal.py, re-stated from sinhasam/vaal solver.py and
    model.py): the same architecture (parameter counts printed and checked
    to agree within 1%), batch 128 labeled + 128 unlabeled, 2 VAE steps and
    1 discriminator step per iteration, on a pool of --ref-images decoded
    train JPEGs (the first 1,000 labeled). R interleaved repeats (reference,
    ours with float32 defaults, ours with what a round on the device
    runs with by default (learn/accel.py, every setting "auto")), --ref-iters timed iterations each
    after 2 warm-up ones; images/s = iterations x 2 VAE steps x (labeled +
    unlabeled batch) / seconds for both; the medians and the ratio
    ours / reference. --only-reference runs just this section (no ingest,
    no other section);
  - a full round on a pool of --round-pool train JPEGs (default 10,000;
    1,000 labeled, budget 500, with the task model): --fast always; the
    default configuration with --default-round (meant for a GPU: on a CPU
    it runs for hours, so without the flag its time is estimated from the
    measured iterations/s and said to be an estimate). --only-rounds runs
    just these rounds (issue 17's GPU figure: --only-rounds --default-round
    --round-pool 50000 on one GPU).
Writes bench/results/engine-<device>.json beside the printed table (with
--only-reference or --only-rounds, only their keys are replaced in that
file; --no-write writes nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import reference_vaal
from vaal_core.config import AccelConfig, TrainConfig, VAEConfig, engine_config
from vaal_core.data.cache import open_cache
from vaal_core.data.ingest import ingest
from vaal_core.learn import accel
from vaal_core.learn import vaal as train
from vaal_core.learn.devices import resolve_device
from vaal_core.learn.models import VAE, Discriminator
from vaal_core.loop.round import RoundConfig, run_round
from vaal_core.store import Project

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


# -- side by side with the VAAL authors' loop ---------------------------------

def decode_jpegs(cifar: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` train JPEGs decoded with Pillow, taken class by class in turn
    (file 0 of every class, then file 1, ...), so any prefix is balanced:
    uint8 (n, 32, 32, 3) and the class index of each."""
    from PIL import Image

    classes = [sorted(d.iterdir()) for d in sorted((cifar / "train").iterdir()) if d.is_dir()]
    picked = [(c, files[i]) for i in range(max(len(f) for f in classes))
              for c, files in enumerate(classes) if i < len(files)][:n]
    if len(picked) < n:
        raise SystemExit(f"{cifar / 'train'} holds {len(picked)} images; --ref-images asks for {n}")
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8) for _, f in picked])
    return images, np.array([c for c, _ in picked], np.int64)


def _accel_for(device: torch.device) -> tuple[accel.Accel, dict]:
    """What a round on `device` runs with by default (learn/accel.py, every
    setting "auto"), and its description."""
    chosen = accel.resolve(AccelConfig(), device)
    return chosen, chosen.describe()


@contextlib.contextmanager
def _backends_restored():
    """Global switches a loop may flip (cuDNN autotuning, TF32, matmul
    precision, CPU threads) are put back after each run, so one loop's
    settings never speed up or slow down the next one in the interleave."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision(), torch.get_num_threads())
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved[:3]
        torch.set_float32_matmul_precision(saved[3])
        torch.set_num_threads(saved[4])


def _ours_once(images: np.ndarray, labeled: np.ndarray, unlabeled: np.ndarray, iterations: int,
               device: torch.device, seed: int, accel_obj: accel.Accel | None = None) -> dict:
    """Fresh models of the project's default (reference-sized) configuration,
    2 warm-up iterations of train_vaal, then `iterations` timed ones. With
    `accel_obj`, the images are first placed as a round places them
    (once, untimed, like the reference's dataset set-up)."""
    vae_cfg, cfg = VAEConfig(image_size=images.shape[1]), TrainConfig()
    if accel_obj is not None:
        images = accel.place_images(images, accel_obj)
    m = train.build_vaal(vae_cfg, cfg, device, seed, accel_obj)
    train.train_vaal(m, images, labeled, unlabeled, cfg, 2, device, seed, accel=accel_obj)
    _sync(device)
    t0 = time.perf_counter()
    train.train_vaal(m, images, labeled, unlabeled, cfg, iterations, device, seed, accel=accel_obj)
    _sync(device)
    seconds = time.perf_counter() - t0
    per_it = cfg.vae_steps * (min(cfg.batch_size, len(labeled)) + min(cfg.batch_size, len(unlabeled)))
    return {"seconds": seconds, "iterations": iterations, "images": iterations * per_it}


def versus_reference(device: torch.device, cifar: Path, iterations: int, repeats: int, n_images: int,
                     n_labeled: int = 1000) -> dict:
    """Interleaved runs of the reference loop and ours; medians and ratios."""
    ours_params = reference_vaal.parameter_count(VAE(VAEConfig()), Discriminator(VAEConfig()))
    ref_params = reference_vaal.reference_parameter_count()
    if abs(ours_params - ref_params) > 0.01 * ref_params:
        raise SystemExit(f"not the same architecture: ours {ours_params:,} parameters, "
                         f"the reference {ref_params:,}")
    images, targets = decode_jpegs(cifar, n_images)
    labeled, unlabeled = np.arange(n_labeled), np.arange(n_labeled, n_images)
    accel_obj, accel_note = _accel_for(device)
    loops: list[tuple[str, object]] = [("reference (sinhasam/vaal)", None), ("ours (float32)", None),
                                       ("ours (accel auto)", accel_obj)]
    runs: dict[str, list[dict]] = {name: [] for name, _ in loops}
    print(f"versus the reference loop: {len(images)} CIFAR-10 train images ({n_labeled} labeled), batch "
          f"{TrainConfig().batch_size}+{TrainConfig().batch_size}, {iterations} timed iterations x {repeats} "
          f"interleaved repeats on {device}; accel: {accel_note}", flush=True)
    for r in range(repeats):
        for name, acc in loops:
            with _backends_restored():
                if name.startswith("reference"):
                    out = reference_vaal.reference_train(images, labeled, unlabeled, iterations, device,
                                                         seed=r, targets=targets)
                    out.pop("last_losses", None)
                else:
                    out = _ours_once(images, labeled, unlabeled, iterations, device, r, acc)
            out["images_per_s"] = out["images"] / out["seconds"]
            runs[name].append(out)
            print(f"  repeat {r + 1}/{repeats} {name}: {out['images_per_s']:.1f} images/s "
                  f"({out['iterations']} it in {out['seconds']:.2f} s)", flush=True)
    ref_name = loops[0][0]
    medians = {name: statistics.median(x["images_per_s"] for x in rs) for name, rs in runs.items()}
    result = {"parameters": {"reference": ref_params, "ours": ours_params},
              "pool": {"images": len(images), "labeled": n_labeled, "unlabeled": len(unlabeled)},
              "batch": TrainConfig().batch_size, "vae_steps": TrainConfig().vae_steps,
              "disc_steps": TrainConfig().disc_steps, "iterations": iterations, "warmup": 2, "repeats": repeats,
              "threads": torch.get_num_threads(), "accel": accel_note,
              "loops": {name: {"median_images_per_s": medians[name],
                               "runs_images_per_s": [x["images_per_s"] for x in rs],
                               "ratio_to_reference": medians[name] / medians[ref_name]}
                        for name, rs in runs.items()}}
    print(f"  parameters: reference {ref_params:,}, ours {ours_params:,}")
    print(f"  {'loop':<28}{'median images/s':>16}{'ours / reference':>18}   runs")
    for name, rs in runs.items():
        ratio = "" if name == ref_name else f"{medians[name] / medians[ref_name]:.2f}"
        print(f"  {name:<28}{medians[name]:>16.1f}{ratio:>18}   "
              + ", ".join(f"{x['images_per_s']:.1f}" for x in rs), flush=True)
    return result


def make_subset(cifar: Path, dest: Path, per_class: int) -> Path:
    """The first `per_class` train images of each class, copied (the whole
    train folder as it is when that is all of it)."""
    class_dirs = sorted(d for d in (cifar / "train").iterdir() if d.is_dir())
    if all(per_class >= len(list(d.iterdir())) for d in class_dirs):
        return cifar / "train"
    for cls_dir in class_dirs:
        (dest / cls_dir.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls_dir.iterdir())[:per_class]:
            shutil.copy(f, dest / cls_dir.name / f.name)
    return dest


def full_round(cifar: Path, work: Path, fast: bool, device: str, pool: int = 10000) -> dict:
    """One `vaal` round with the task model, as `vaal_core round` runs it,
    on `pool` train JPEGs (1,000 of them labeled, budget 500), timed from
    the round's start to its queue and suggestions written."""
    folder = make_subset(cifar, work / f"pool{pool}", pool // 10)
    project = Project.create(work / f"round-{'fast' if fast else 'default'}", folder, 32)
    ingest(project, gold_from_folders=True)
    items = project.items()
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(items), 1000, replace=False)
    project.set_labels([(items[i].id, items[i].gold) for i in chosen])
    t0 = time.perf_counter()
    result = run_round(project, RoundConfig(sampler="vaal", budget=500, fast=fast, device=device))
    return {"seconds": time.perf_counter() - t0, "pool": len(items), "iterations": result.metrics["iterations"],
            "timings": result.timings, "accel": result.metrics.get("accel")}


def timed_rounds(cifar: Path, work: Path, default: bool, device: str, pool: int) -> dict:
    """The --fast round, and with `default` the reference-size one, on a
    pool of `pool` images: {"round_fast_10k": {...}, ...}."""
    out = {}
    for name, fast in [("fast", True)] + ([("default", False)] if default else []):
        r = full_round(cifar, work / name, fast, device, pool)
        out[f"round_{name}_{pool // 1000}k"] = r
        print(f"{name:>7} round, {r['pool']:,}-image pool (1,000 labeled, budget 500): {r['seconds']:.1f} s "
              f"({r['iterations']} iterations; {r['timings']})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cifar", help="extracted CIFAR-10 folder (default: extract to the temp folder)")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--default-round", action="store_true", help="also time a default-config round")
    ap.add_argument("--default-iters", type=int, default=None, help="iterations timed for the default model")
    ap.add_argument("--only-reference", action="store_true",
                    help="run only the side by side with the reference loop")
    ap.add_argument("--ref-iters", type=int, default=None,
                    help="timed iterations per run of the side by side (default 10 on a CPU, 200 on CUDA)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the side by side")
    ap.add_argument("--ref-images", type=int, default=2024,
                    help="train JPEGs decoded for the side by side; the first 1,000 are labeled (default 2024: "
                         "1,024 unlabeled, whole batches of 128 for the reference's loader)")
    ap.add_argument("--only-rounds", action="store_true", help="run only the timed full rounds")
    ap.add_argument("--round-pool", type=int, default=10000,
                    help="train JPEGs in the timed rounds' pool (default 10,000; 50,000: all of CIFAR-10's)")
    ap.add_argument("--no-write", action="store_true", help="print only; write no results file")
    args = ap.parse_args()

    device = resolve_device(args.device)
    cifar = cifar_folder(args.cifar)
    results: dict = {"machine": machine(device), "device": str(device), "torch": torch.__version__,
                     "threads": torch.get_num_threads()}
    ref_iters = args.ref_iters or (200 if device.type == "cuda" else 10)
    out = ROOT / "bench" / "results" / f"engine-{device.type}.json"
    if args.only_reference or args.only_rounds:
        part = {}
        if args.only_reference:
            part["versus_reference"] = versus_reference(device, cifar, ref_iters, args.repeats, args.ref_images)
        if args.only_rounds:
            with tempfile.TemporaryDirectory() as tmp:
                part.update(timed_rounds(cifar, Path(tmp), args.default_round, str(device), args.round_pool))
        if not args.no_write:
            merged = json.loads(out.read_text()) if out.exists() else dict(results)
            merged.update(part, machine=results["machine"], torch=results["torch"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(merged, indent=1))
            print(f"machine: {results['machine']}; wrote the {', '.join(part)} keys of {out.relative_to(ROOT)}")
        return
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
        results["versus_reference"] = versus_reference(device, cifar, ref_iters, args.repeats, args.ref_images)
        results.update(timed_rounds(cifar, work, args.default_round, str(device), args.round_pool))
    if args.no_write:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']}; wrote {out.relative_to(ROOT)}")

if __name__ == "__main__":
    main()
