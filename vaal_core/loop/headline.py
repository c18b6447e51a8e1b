"""A simulation's result in one sentence per sampler, for people who will
act on it (the Demo page's headline, the CLI's `simulate` output).

A difference from random is stated only when it holds across seeds: the
seeds are paired (within a seed every sampler starts from the same initial
labels and is measured on the same test images), so the per-seed
differences are what vary. A sampler is called higher or lower only when
there are at least MIN_SEEDS of them, every one has the same sign and is at
least one test image, and their paired 95% t-interval excludes zero.
Anything less reads "no difference that holds across seeds", with the
per-seed differences shown, so two seeds on an 80-image test set (one
image = 1.25 points) never make a headline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vaal_core.loop.report import BASELINE

MIN_SEEDS = 3


def paired_differences(results: dict[str, dict[str, list[dict]]], name: str, round_: int,
                       key: str = "accuracy") -> list[float]:
    """Per seed that measured both at round `round_`: the sampler's accuracy
    minus random's (fractions), in seed order."""
    out = []
    for seed in sorted(set(results.get(name, {})) & set(results.get(BASELINE, {})), key=int):
        mine = _at(results[name][seed], round_, key)
        base = _at(results[BASELINE][seed], round_, key)
        if mine is not None and base is not None:
            out.append(mine - base)
    return out


def _at(records: list[dict], round_: int, key: str) -> float | None:
    return next((rec[key] for rec in records if rec["round"] == round_ and rec.get(key) is not None), None)


def verdict(diffs: list[float], n_test: int | None) -> tuple[str, bool]:
    """The paired comparison in words, and whether it claims a difference."""
    one_image = 1.0 / n_test if n_test else 0.0
    per_seed = ", ".join(f"{100 * d:+.1f}" for d in diffs)
    if len(diffs) < MIN_SEEDS:
        return (f"no difference can be claimed from {len(diffs)} seed{'s' if len(diffs) != 1 else ''} "
                f"(per seed: {per_seed or 'none'} points; it takes {MIN_SEEDS} or more)", False)
    d = np.asarray(diffs, dtype=np.float64)
    half = _t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    low, high = d.mean() - half, d.mean() + half
    same_sign = bool((d > 0).all() or (d < 0).all())
    interval = f"paired 95% interval {100 * low:+.1f} to {100 * high:+.1f}"
    if not same_sign:
        return f"no difference that holds across seeds (per seed: {per_seed} points)", False
    way = "higher" if d.mean() > 0 else "lower"
    if not (np.abs(d) >= one_image).all():
        return (f"no difference that holds across seeds (per seed: {per_seed} points; a gap under one test "
                f"image, {100 * one_image:.2f} points, is below what this test set can tell apart)", False)
    if not (low > 0 or high < 0):
        # Same sign every time, but so spread that the interval reaches zero: say so, and what would settle it.
        return (f"no difference that holds across seeds yet: {way} in all {len(d)} seeds (per seed: {per_seed} "
                f"points) but too spread to call ({interval} includes zero); more seeds would settle it", False)
    return f"{way} by {100 * abs(d.mean()):.1f} points in every one of {len(d)} seeds ({interval})", True


def _t95(df: int) -> float:
    """Student's t quantile for a two-sided 95% interval."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def resolution(n_test: int | None) -> str:
    """How fine the accuracies are: one test image, in points."""
    if not n_test:
        return ""
    return f"Measured on {n_test:,} test images: one image is {100 / n_test:.2f} points"


def headline(summary: dict[str, list[dict[str, Any]]], results: dict[str, dict[str, list[dict]]],
             n_test: int | None = None, key: str = "accuracy") -> str:
    """Each sampler's latest mean against random's at the same round, with
    the paired verdict; parts joined by " | "."""
    if BASELINE not in summary:
        return "no results yet"
    base_rows = {row["round"]: row for row in summary[BASELINE]}
    parts = []
    for name, rows in summary.items():
        if name == BASELINE:
            continue
        last = rows[-1]
        base = base_rows.get(last["round"], summary[BASELINE][-1])
        words, holds = verdict(paired_differences(results, name, base["round"], key), n_test)
        text = (f"{name} reached {100 * last['mean']:.1f}% at {last['labeled']:,} labels vs random "
                f"{100 * base['mean']:.1f}% (means over {min(last['n_seeds'], base['n_seeds'])} seeds): {words}")
        if holds:  # how many labels it took is only worth saying when the difference is real
            target = ("random's final accuracy" if base is summary[BASELINE][-1]
                      else f"random's accuracy at {base['labeled']:,} labels")
            reached = next((row for row in rows if row["mean"] >= base["mean"]), None)
            if reached is not None:
                text += f"; {name} needed {reached['labeled']:,} labels on average to reach {target}"
        parts.append(text)
    if not parts:
        base = summary[BASELINE][-1]
        return (f"random reached {100 * base['mean']:.1f}% ± {100 * base['std']:.1f} at {base['labeled']:,} "
                "labels (no other sampler ran)" + (f" | {resolution(n_test)}" if n_test else ""))
    return " | ".join(parts + ([resolution(n_test)] if n_test else []))
