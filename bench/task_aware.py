"""Task-aware active learning on CIFAR-10: prints figures, asserts nothing.

    python bench/task_aware.py [--cifar DIR] [--device auto] [--full]
                               [--samplers auto,vaal,ta_vaal,ll4al,entropy,coreset,random]
    python bench/task_aware.py --from-json RESULT.json   (tables of a finished run)

Runs `simulate` on a stratified 10,000-image subset of the CIFAR-10 train
JPEGs (8,000 pool, 2,000 test): initial 1,000 random labels, +500 per round,
5 rounds, 3 seeds, `--fast` models unless --full, every sampler from the same
initial set per seed. Prints accuracy (mean ± sample std over seeds) per
round per sampler, selection time per round, and the overlap of the samplers'
picks; writes bench/results/task-aware-cifar10k-<fast|full>-<device>.json
(the simulation's JSON without its per-file and per-pick lists) and a .md
beside it; a run of other --samplers writes task-aware-<their names>-cifar10k-...
instead, so it never replaces the default run's files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from vaal_core.loop.simulate import SimConfig, simulate  # noqa: E402

SAMPLERS = "auto,vaal,ta_vaal,ll4al,entropy,coreset,random"


def tables(result: dict) -> str:
    """Markdown: accuracy per round, selection time per round, overlap."""
    summary = result["summary"]
    labeled = [row["labeled"] for row in next(iter(summary.values()))]
    head = "| sampler | " + " | ".join(f"{n:,}" for n in labeled) + " |"
    rule = "|---" * (len(labeled) + 1) + "|"
    acc = [f"Test accuracy, % (mean ± std over {result['config']['seeds']} seeds), by labeled images:", "",
           head, rule]
    for name, rows in summary.items():
        acc.append(f"| {name} | " + " | ".join(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}" for r in rows) + " |")
    sel = ["", "Seconds per round (mean over seeds, rounds 1-N): VAE/discriminator training + selection "
               "(the task model's or VAE's pass over the pool, scoring, ranking); the task model's own "
               "training is in the accuracy run of every sampler alike:", "",
           "| sampler | VAE train s | select s | task model s |", "|---|---|---|---|"]
    for name, by_seed in result["results"].items():
        recs = [rec for records in by_seed.values() for rec in records if rec["round"] > 0]
        if recs:
            mean = lambda k: sum(r[k] for r in recs) / len(recs)  # noqa: E731
            sel.append(f"| {name} | {mean('train_s'):.1f} | {mean('select_s'):.2f} | {mean('task_s'):.1f} |")
    ov = ["", f"Overlap of picks (share in common; two random batches share about "
              f"{100 * result['overlap_by_chance']:.1f}% of round 1):", "",
          "| pair | round 1 batch | all picks |", "|---|---|---|"]
    for o in result.get("overlap", []):
        ov.append(f"| {o['a']} / {o['b']} | {100 * o['first_batch']:.1f}% | {100 * o['all_picks']:.1f}% |")
    return "\n".join(acc + sel + ov)


def slim(result: dict, wall: float) -> dict:
    """The simulation's JSON without the per-file lists and every round's
    picked rows (those are for the Demo page's map; the overlap table sums
    the picks up), with the wall time and machine."""
    out = {k: v for k, v in result.items() if k not in ("paths", "test_rows")}
    out["results"] = {name: {seed: [{k: v for k, v in rec.items() if k != "picked"} for rec in records]
                             for seed, records in by_seed.items()} for name, by_seed in result["results"].items()}
    out["bench"] = {"wall_s": round(wall, 1), "cpu_cores": os.cpu_count(), "machine": platform.machine()}
    return out


def parse_args(doc: str, samplers: str, more: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    """The options every CIFAR-10 simulation benchmark takes (`more` adds a
    benchmark's own)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if more is not None:
        more(ap)
    ap.add_argument("--cifar", help="extracted CIFAR-10 JPEG folder (train/<class>/*.jpg)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--full", action="store_true", help="default-size models instead of --fast (for a GPU)")
    ap.add_argument("--samplers", default=samplers)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--from-json", help="print the tables of an existing simulation JSON instead of running")
    return ap.parse_args()


def main() -> None:
    args = parse_args(__doc__, SAMPLERS)

    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        wall = result["seconds"]
    else:
        cfg = SimConfig(samplers=tuple(args.samplers.split(",")), init=1000, budget=500, rounds=5,
                        seeds=args.seeds, fast=not args.full, device=args.device, subset=10_000)
        out = Path("/tmp") / f"task-aware-{os.getpid()}.json"
        t0 = time.perf_counter()
        result = simulate(cifar_folder(args.cifar) / "train", cfg, out)
        wall = time.perf_counter() - t0
    text = tables(result)
    print(text)
    print(f"\n{result['headline']}\n\nwall time: {wall / 60:.1f} min on {result['device']}, "
          f"{os.cpu_count()} CPU cores ({platform.machine()})")
    kind = "fast" if result["config"]["fast"] else "full"
    # a run of other samplers than the default set gets its own files, beside the default run's
    named = "" if result["config"]["samplers"] == SAMPLERS.split(",") else "-" + "-".join(result["config"]["samplers"])
    dest = ROOT / "bench" / "results" / f"task-aware{named}-cifar10k-{kind}-{result['device'].split(':')[0]}"
    dest.with_suffix(".json").write_text(json.dumps(slim(result, wall), indent=1))
    dest.with_suffix(".md").write_text(text + f"\n\n{result['headline']}\n\nwall time {wall / 60:.1f} min\n")
    print(f"wrote {dest.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
