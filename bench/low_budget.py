"""Low-budget active learning on CIFAR-10: prints figures, asserts nothing.

    python bench/low_budget.py [--cifar DIR] [--device auto] [--full] [--seeds 3]
                               [--samplers auto,typiclust,probcover,vaal,coreset,entropy,random]
                               [--auto-switch 30,50]
    python bench/low_budget.py --from-json RESULT.json   (tables of a finished run)

The budgets people label in the browser: a stratified 10,000-image subset
of the CIFAR-10 train JPEGs (8,000 pool, 2,000 test), no initial labels
(`--init 0`: every sampler picks the first batch too), +100 labels per round
to 1,000, 3 seeds, `--fast` models unless --full, every sampler from the
same start. Accuracy is the common classifier's (`--evaluate common`): one
plain classifier trained fresh on each labeled set, the same for every
sampler, so the table compares what the samplers picked and nothing else.

Prints accuracy (mean ± std over seeds) per round, each sampler's mean gap
to random over the rounds and its worst round, the labels each needs to
reach random's final accuracy, and whether `auto` met the targets (at least
5 points above random on average, never more than 0.5 below).
--auto-switch N,... adds `auto` switching from its early to its late sampler
at N labels a class instead of its own threshold, one sampler per N
(`auto-at-N`), to measure where the switch belongs. Writes
bench/results/low-budget-cifar10k-<fast|full>-<device>.json and a .md (a run
of other --samplers: low-budget-<their names>-cifar10k-...).
"""

from __future__ import annotations

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
from bench.task_aware import parse_args, slim, tables  # noqa: E402
from vaal_core.loop.simulate import SimConfig, simulate  # noqa: E402

SAMPLERS = "auto,probcover,vaal,coreset,entropy,random"


def gaps(result: dict) -> str:
    """Per sampler: mean over rounds of (sampler - random) with its std over
    seeds, and the worst round's gap; then the label efficiency."""
    results = result["results"]
    base = results["random"]
    lines = ["", "Gap to random, points (per seed: mean over the measured rounds of sampler - random at the "
                 "same labeled-set size; then mean ± std over seeds), and the worst round (mean over seeds):", "",
             "| sampler | mean gap over rounds | worst round | labels to reach random's final accuracy |",
             "|---|---|---|---|"]
    eff = result.get("efficiency", {})
    for name, by_seed in results.items():
        per_seed, by_round = [], {}
        for seed, records in by_seed.items():
            ref = {rec["round"]: rec["accuracy"] for rec in base.get(seed, []) if rec["accuracy"] is not None}
            diffs = [(rec["round"], rec["accuracy"] - ref[rec["round"]]) for rec in records
                     if rec["accuracy"] is not None and rec["round"] in ref]
            if diffs:
                per_seed.append(np.mean([d for _, d in diffs]))
                for r, d in diffs:
                    by_round.setdefault(r, []).append(d)
        if not per_seed:
            continue
        worst = min(np.mean(v) for v in by_round.values())
        e = eff.get(name, {})
        need = ("not reached" if e.get("mean") is None else
                f"{e['mean']:,.0f} ± {e['std']:,.0f} ({e['reached']}/{e['seeds']} seeds)")
        std = np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0.0
        lines.append(f"| {name} | {100 * np.mean(per_seed):+.1f} ± {100 * std:.1f} | {100 * worst:+.1f} | {need} |")
    return "\n".join(lines)


def targets(result: dict) -> str:
    results = result["results"]
    if "auto" not in results:
        return ""
    base, auto = results["random"], results["auto"]
    by_round = {}
    for seed, records in auto.items():
        ref = {rec["round"]: rec["accuracy"] for rec in base.get(seed, []) if rec["accuracy"] is not None}
        for rec in records:
            if rec["accuracy"] is not None and rec["round"] in ref:
                by_round.setdefault(rec["round"], []).append(rec["accuracy"] - ref[rec["round"]])
    means = {r: float(np.mean(v)) for r, v in by_round.items()}
    avg, worst = float(np.mean(list(means.values()))), min(means.values())
    used = sorted({rec.get("sampler_used") for records in auto.values() for rec in records if rec.get("sampler_used")})
    return (f"\nTargets: auto {100 * avg:+.1f} points vs random on average over the rounds (target >= +5.0: "
            f"{'met' if avg >= 0.05 else 'NOT met'}); worst round {100 * worst:+.1f} (target >= -0.5: "
            f"{'met' if worst >= -0.005 else 'NOT met'}). auto used: {', '.join(used)}.")


def auto_at(per_class: int) -> str:
    """`auto` with its switch at `per_class` labels a class, registered as
    `auto-at-<per_class>` for this run (the same policy, another threshold)."""
    from vaal_core.samplers import registry
    from vaal_core.samplers.auto import choose_auto

    name = f"auto-at-{per_class}"
    if name not in registry.names():
        settings = {**registry.get("auto").settings, "switch_per_class": per_class}
        registry.register_policy(name, description=f"auto, switching at {per_class} labels a class",
                                 **settings)(choose_auto)
    return name


def main() -> None:
    args = parse_args(__doc__, SAMPLERS, lambda ap: ap.add_argument(
        "--auto-switch", default="", help="also run auto switching at these labels a class (comma-separated)"))
    if args.auto_switch:
        args.samplers = ",".join([*args.samplers.split(","), *(auto_at(int(n)) for n in args.auto_switch.split(","))])

    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        wall = result.get("bench", {}).get("wall_s", result["seconds"])
    else:
        cfg = SimConfig(samplers=tuple(args.samplers.split(",")), init=0, budget=100, rounds=10,
                        seeds=args.seeds, fast=not args.full, device=args.device, subset=10_000, evaluate="common")
        out = Path("/tmp") / f"low-budget-{os.getpid()}.json"
        t0 = time.perf_counter()
        result = simulate(cifar_folder(args.cifar) / "train", cfg, out)
        wall = time.perf_counter() - t0
    features = next((rec.get("notes") for by in result["results"].values() for recs in by.values()
                     for rec in recs if rec.get("sampler_used") == "typiclust"), None)
    text = tables(result) + "\n" + gaps(result) + "\n" + targets(result)
    print(text)
    print(f"\n{result['headline']}\n\nwall time: {wall / 60:.1f} min on {result['device']}, "
          f"{os.cpu_count()} CPU cores ({platform.machine()}); typiclust's notes: {features}")
    if args.from_json:
        return
    kind = "fast" if result["config"]["fast"] else "full"
    # a run of other samplers than the default set gets its own files, beside the default run's
    named = "" if result["config"]["samplers"] == SAMPLERS.split(",") else "-" + "-".join(result["config"]["samplers"])
    dest = ROOT / "bench" / "results" / f"low-budget{named}-cifar10k-{kind}-{result['device'].split(':')[0]}"
    small = slim(result, wall)
    dest.with_suffix(".json").write_text(json.dumps(small, indent=1))
    dest.with_suffix(".md").write_text(text + f"\n\n{result['headline']}\n\nwall time {wall / 60:.1f} min\n")
    print(f"wrote {dest.with_suffix('.json')} and .md")


if __name__ == "__main__":
    main()
