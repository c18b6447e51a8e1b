"""Are the suggestions' confidences honest? Raw softmax vs temperature-scaled,
on CIFAR-10, through the app's own round: prints figures, asserts nothing.

    OMP_NUM_THREADS=1 python bench/calibration.py [--cifar DIR] [--pool 5000] [--labels 1500]
                                                  [--test 10000] [--seeds 0,1,2] [--device cpu] [--full] [--sweep]

The protocol: a project of a stratified `--pool`-image subset of the CIFAR-10
train JPEGs plus `--test` images of the test split (unlabeled items of the
same project, so the round suggests a class for each; no label ever comes
from them); per seed, `--labels` random train images labeled from the
folder names, then one `random` round (`--fast` models unless --full, no
audit). The round holds its fixed 10% slice of those labels out of the task
model's training and fits the temperature on it (learn/calibration.py).
Graded against the gold classes: the test split, and the unlabeled train
pool (neither ever trained on): accuracy, and the top-label ECE (15 bins) of
the raw softmax and of the calibrated one; the confidences the round stored
are checked to equal the calibrated ones. The target (issue 12): ECE <= 0.05
on the test split.

--sweep: how many held-out labels a temperature needs. From each seed's
test-split softmax, 300 draws of n images per n: fit T on the n, grade it on
the rest; prints the median and worst-decile ECE and the worst decile of the
share right among the pre-selected suggestions, for the plain fit and the
one floored at T >= 1. learn/calibration.py's docstring reads MIN_HELD_OUT
and the floor off these tables.

Writes bench/results/calibration-cifar<pool>-<labels>-<fast|full>-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402
from vaal_core.learn import calibration  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SWEEP_N = (5, 10, 15, 20, 30, 40, 50, 75, 100, 150)


def build_folder(cifar: Path, dest: Path, pool: int, test: int) -> Path:
    """dest/train/<class>/ (a stratified `pool` subset, seed 0) and
    dest/test/<class>/ (the first `test` / 10 of each class): copies, as a
    user's folder would hold them."""
    rng = np.random.default_rng(0)
    for split, n in (("train", pool), ("test", test)):
        for cls in CLASSES:
            files = sorted((cifar / split / cls).iterdir())
            pick = rng.choice(len(files), n // len(CLASSES), replace=False) if split == "train" else \
                np.arange(n // len(CLASSES))
            (dest / split / cls).mkdir(parents=True, exist_ok=True)
            for k in sorted(pick):
                shutil.copy(files[k], dest / split / cls / files[k].name)
    return dest


def raw_probs(project, item_ids: np.ndarray, device) -> np.ndarray:
    """The round's task model, reloaded from its checkpoint: its raw softmax
    for these items (what the round computed before calibrating)."""
    from vaal_core.config import engine_config
    from vaal_core.data.cache import open_cache
    from vaal_core.learn import task
    from vaal_core.learn.checkpoints import CheckpointDir

    rnd = project.rounds()[-1]
    engine = engine_config(project.image_size, rnd["settings"]["round"]["fast"])
    model = task.new_task_model(len(project.classes()), engine.task, device, 0)
    model.net.load_state_dict(CheckpointDir(project.checkpoint_dir).load("task")["net"])
    rows = {it.id: it.cache_index for it in project.items()}
    return task.predict(model, open_cache(project), np.array([rows[i] for i in item_ids]), device)


def grade(probs: np.ndarray, gold: np.ndarray, temperature: float | None) -> dict:
    cal = calibration.scale(probs, temperature) if temperature else probs
    return {"n": int(len(gold)), "accuracy": float((probs.argmax(1) == gold).mean()),
            "ece_raw": calibration.expected_calibration_error(probs, gold),
            "ece_calibrated": calibration.expected_calibration_error(cal, gold),
            "at_least_80_raw": _over(probs, gold), "at_least_80_calibrated": _over(cal, gold)}


def _over(probs: np.ndarray, gold: np.ndarray, at: float = calibration.PRESELECT) -> dict:
    """The suggestions shown at >= 80% (what the Label page pre-selects): how
    many, and how many of those are right."""
    sure = probs.max(1) >= at
    return {"n": int(sure.sum()), "right": float((probs.argmax(1)[sure] == gold[sure]).mean()) if sure.any() else None}


def _preselected_right(cal: np.ndarray, gold: np.ndarray) -> float:
    """Share right among the suggestions the Label page would pre-select (NaN: none)."""
    sure = cal.max(1) >= calibration.PRESELECT
    return float((cal.argmax(1)[sure] == gold[sure]).mean()) if sure.any() else np.nan


def sweep(probs: np.ndarray, gold: np.ndarray, seed: int, draws: int = 300) -> dict:
    """Per held-out size n: T fitted on n random rows, graded on the rest;
    the plain NLL optimum and the one floored at 1 (calibration.FLOOR)."""
    rng = np.random.default_rng(seed)
    out = {"raw": {"ece": calibration.expected_calibration_error(probs, gold),
                   "preselected_right": _preselected_right(probs, gold)}}
    for n in SWEEP_N:
        got = {"free": ([], []), "floored": ([], [])}
        for _ in range(draws):
            pick = rng.permutation(len(gold))
            fit, rest = pick[:n], pick[n:]
            t = calibration.fit_temperature(probs[fit], gold[fit])
            for kind, temp in (("free", t), ("floored", max(t, calibration.FLOOR))):
                cal = calibration.scale(probs[rest], temp)
                got[kind][0].append(calibration.expected_calibration_error(cal, gold[rest]))
                got[kind][1].append(_preselected_right(cal, gold[rest]))
        out[n] = {kind: {"median_ece": float(np.median(e)), "p90_ece": float(np.quantile(e, 0.9)),
                         "preselected_right_p10": float(np.nanquantile(r, 0.1)) if np.isfinite(r).any() else None}
                  for kind, (e, r) in ((k, (np.array(e), np.array(r))) for k, (e, r) in got.items())}
    return out


def one_seed(template: Path, work: Path, seed: int, args, device) -> dict:
    from vaal_core.loop.round import RoundConfig, run_round
    from vaal_core.store import Project

    root = work / f"seed-{seed}"
    shutil.copytree(template, root)
    project = Project.open(root)
    items = project.items()
    gold_of = {it.id: it.path.split("/")[1] for it in items}
    train = np.array([it.id for it in items if it.path.startswith("train/")])
    chosen = np.random.default_rng(1000 + seed).choice(train, args.labels, replace=False)
    project.set_labels([(int(i), gold_of[int(i)]) for i in chosen], source="import")
    t0 = time.perf_counter()
    result = run_round(project, RoundConfig(sampler="random", budget=50, seed=seed, device=args.device,
                                            fast=not args.full, audit=0.0))
    took = time.perf_counter() - t0
    cal = result.metrics["task"]["calibration"]
    stored = project.suggestions()
    ids = np.array(sorted(stored))
    probs = raw_probs(project, ids, device)
    gold = np.array([CLASSES.index(gold_of[i]) for i in ids])
    shown = np.array([stored[i].confidence for i in ids])
    expect = calibration.scale(probs, cal["temperature"]).max(1) if cal["calibrated"] else probs.max(1)
    test = np.isin(ids, [it.id for it in items if it.path.startswith("test/")])
    out = {"seed": seed, "round_s": round(took, 1), "task_accuracy_held_out": result.metrics["task"]["accuracy"],
           "calibration": {k: v for k, v in cal.items() if not k.startswith("reliability")},
           "stored_equals_calibrated": float(np.abs(shown - expect).max()),
           "test": grade(probs[test], gold[test], cal["temperature"]),
           "pool": grade(probs[~test], gold[~test], cal["temperature"]),
           "reliability_test": {"raw": calibration.reliability(probs[test], gold[test]),
                                "calibrated": calibration.reliability(
                                    calibration.scale(probs[test], cal["temperature"]) if cal["calibrated"]
                                    else probs[test], gold[test])}}
    if args.sweep:
        out["sweep"] = sweep(probs[test], gold[test], seed)
    shutil.rmtree(root)
    return out


def table(runs: list[dict]) -> str:
    def med(get):
        return float(np.median([get(r) for r in runs]))

    rows = [("T (fitted on the held-out slice)", lambda r: r["calibration"]["temperature"] or float("nan"), "{:.2f}"),
            ("held-out labels", lambda r: r["calibration"]["n_held_out"], "{:.0f}"),
            ("held-out ECE raw", lambda r: r["calibration"]["ece_before"], "{:.3f}"),
            ("held-out ECE calibrated (5-fold CV)", lambda r: r["calibration"]["ece_after"] or float("nan"), "{:.3f}")]
    for where in ("test", "pool"):
        rows += [(f"{where}: accuracy", lambda r, w=where: r[w]["accuracy"], "{:.3f}"),
                 (f"{where}: ECE raw", lambda r, w=where: r[w]["ece_raw"], "{:.3f}"),
                 (f"{where}: ECE calibrated", lambda r, w=where: r[w]["ece_calibrated"], "{:.3f}"),
                 (f"{where}: shown >= 80%, raw (n / right)",
                  lambda r, w=where: (r[w]["at_least_80_raw"]["n"], r[w]["at_least_80_raw"]["right"]), None),
                 (f"{where}: shown >= 80%, calibrated (n / right)",
                  lambda r, w=where: (r[w]["at_least_80_calibrated"]["n"], r[w]["at_least_80_calibrated"]["right"]),
                  None)]
    lines = ["| figure | median | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
             "|---|---|" + "---|" * len(runs)]
    for name, get, fmt in rows:
        if fmt is None:
            cells = [f"{n:,} / {'-' if right is None else f'{right:.0%}'}" for n, right in map(get, runs)]
            lines.append(f"| {name} | | " + " | ".join(cells) + " |")
        else:
            lines.append(f"| {name} | {fmt.format(med(get))} | " + " | ".join(fmt.format(get(r)) for r in runs) + " |")
    return "\n".join(lines)


def sweep_table(runs: list[dict]) -> str:
    """Medians over seeds of each seed's median; the worst seed's worst decile."""
    raw = [r["sweep"]["raw"] for r in runs]
    lines = [f"raw softmax on the test split: ECE {np.median([c['ece'] for c in raw]):.3f}, pre-selected (>= 80%) "
             f"right {_pct(float(np.nanmedian([c['preselected_right'] for c in raw])))} (medians over seeds)", "",
             "| held-out n | T free: median ECE | worst decile ECE | pre-selected right, worst decile "
             "| T >= 1: median ECE | worst decile ECE | pre-selected right, worst decile |",
             "|---|---|---|---|---|---|---|"]
    for n in SWEEP_N:
        cells = []
        for kind in ("free", "floored"):
            got = [r["sweep"][n][kind] for r in runs]
            low = [g["preselected_right_p10"] for g in got if g["preselected_right_p10"] is not None]
            cells += [f"{np.median([g['median_ece'] for g in got]):.3f}", f"{max(g['p90_ece'] for g in got):.3f}",
                      _pct(min(low) if low else None)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "none pre-selected" if value is None else f"{value:.0%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar"), ap.add_argument("--device", default="cpu")
    ap.add_argument("--pool", type=int, default=5000), ap.add_argument("--labels", type=int, default=1500)
    ap.add_argument("--test", type=int, default=10000), ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--full", action="store_true"), ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args()
    from vaal_core.data.ingest import init_project
    from vaal_core.learn.devices import resolve_device

    device = resolve_device(args.device)
    runs = []
    with tempfile.TemporaryDirectory(prefix="vaal-calibration-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        images = build_folder(cifar_folder(args.cifar), work / "images", args.pool, args.test)
        init_project(work / "template", images, CLASSES)
        print(f"project of {args.pool:,} train + {args.test:,} test images in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        for seed in (int(s) for s in args.seeds.split(",")):
            runs.append(one_seed(work / "template", work, seed, args, device))
            r = runs[-1]
            print(f"seed {seed}: round {r['round_s']} s, T {r['calibration']['temperature']}, test ECE "
                  f"{r['test']['ece_raw']:.3f} -> {r['test']['ece_calibrated']:.3f}", file=sys.stderr)
    size = "full" if args.full else "fast"
    print(f"\nCalibration of the suggestions: {args.pool:,}-image CIFAR-10 train subset, {args.labels:,} random "
          f"labels, one `random` round ({size} models, {device}); graded on {args.test:,} test images and the "
          f"unlabeled pool\n")
    print(table(runs))
    if args.sweep:
        print("\nHeld-out size needed (T fitted on n random test images, graded on the rest; 300 draws, 3 seeds):\n")
        print(sweep_table(runs))
    out = ROOT / "bench" / "results" / f"calibration-cifar{args.pool // 1000}k-{args.labels}-{size}-{device.type}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1, default=str))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
