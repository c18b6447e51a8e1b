"""What was measured, as tables and sentences: the history of a project's
rounds, and a simulation's accuracy summary, sampler overlap and headline.

Pure functions of stored results (round rows, a simulation's JSON), so the
pages, the CLI and the benchmarks all read the same numbers.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np

from vaal_core.learn import disc_quality
from vaal_core.store import Project

BASELINE = "random"


def history(project: Project) -> list[dict[str, Any]]:
    """One flat row per round for tables and charts: what ran, on what, how
    long each step took, how it ended, and the labels it started from."""
    rows = []
    for r in project.rounds():
        m, t, s = r["metrics"] or {}, r["timings"] or {}, (r["settings"] or {}).get("round", {})
        losses = m.get("losses") or {}
        rows.append({
            "round": r["id"], "sampler": r["sampler"], "budget": r["budget"], "status": r["status"],
            "labeled": r["n_labeled"], "pool": r["n_pool"], "fast": s.get("fast"), "device": m.get("device"),
            "iterations": m.get("iterations"), "warm_start": m.get("warm_start"),
            "train_s": t.get("train_s"), "score_s": t.get("score_s"), "select_s": t.get("select_s"),
            "total_s": t.get("total_s"), "vae_loss": losses.get("vae_loss"), "disc_loss": losses.get("disc_loss"),
            "class_counts": m.get("class_counts") or {}, "curve": m.get("curve") or [],
            "cold_start": m.get("cold_start"), "task_accuracy": (m.get("task") or {}).get("accuracy"),
            "task_n_val": (m.get("task") or {}).get("n_val"), "task_how": (m.get("task") or {}).get("how"),
            "task_s": t.get("task_s"), "predict_s": t.get("predict_s"), "features_s": t.get("features_s"),
            "started": r["created_at"], "finished": r["finished_at"],
            "error": r["error"], **_discriminator(m),
        })
    return rows


def _discriminator(metrics: dict[str, Any]) -> dict[str, Any]:
    """A VAAL or TA-VAAL round's discriminator figures (learn.disc_quality):
    its AUC, its held-out AUC, the top batch's seed-to-seed overlap in
    multiples of chance, whether that is near chance, and the sentence."""
    d = disc_quality.of_round(metrics)
    if d is None:
        return {"disc_auc": None, "disc_heldout_auc": None, "disc_overlap_x": None, "disc_near_chance": None,
                "disc_verdict": None}
    ratio = disc_quality.overlap_ratio(d)
    return {"disc_auc": d.get("auc"), "disc_heldout_auc": d.get("heldout_auc"),
            "disc_overlap_x": None if ratio is None else round(ratio, 1), "disc_near_chance": d.get("near_chance"),
            "disc_verdict": d.get("verdict")}


# -- simulations ------------------------------------------------------------------

CSV_COLUMNS = ("sampler", "labeled", "round", "mean", "std", "min", "max", "n_seeds")


def summarize(results: dict[str, dict[str, list[dict]]], key: str = "accuracy") -> dict[str, list[dict[str, Any]]]:
    """Per sampler and round: mean, sample std (ddof=1; 0 with one seed),
    min and max of the accuracy (`key`) over the seeds that reached that
    round. Rounds with nothing measured (no labels yet) are left out.

    Works on partial results (the JSON is summarised after every round, so a
    seed may be mid-run or not started): each row says in n_seeds how many
    seeds it stands on."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_seed in results.items():
        by_round: dict[int, list[dict]] = {}
        for records in by_seed.values():
            for rec in records:
                if rec.get(key) is not None:
                    by_round.setdefault(rec["round"], []).append(rec)
        if not by_round:
            continue
        rows = []
        for r in sorted(by_round):
            acc = np.array([rec[key] for rec in by_round[r]], dtype=np.float64)
            rows.append({"round": r, "labeled": by_round[r][0]["labeled"], "mean": float(acc.mean()),
                         "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "min": float(acc.min()), "max": float(acc.max()), "n_seeds": int(len(acc)),
                         "select_s": float(np.mean([rec.get("select_s", 0.0) for rec in by_round[r]])),
                         "train_s": float(np.mean([rec.get("train_s", 0.0) for rec in by_round[r]]))})
        out[name] = rows
    return out


def label_efficiency(results: dict[str, dict[str, list[dict]]], key: str = "accuracy") -> dict[str, dict[str, Any]]:
    """Labels each sampler needed to reach random's final mean accuracy:
    per seed, the first labeled-set size whose accuracy reaches it (None
    when no round did), and the mean and sample std over the seeds that
    reached it. The target is random's mean over its seeds at its last
    round, so random itself needs about its final size."""
    base = summarize({BASELINE: results.get(BASELINE, {})}, key).get(BASELINE)
    if not base:
        return {}
    target = base[-1]["mean"]
    out = {}
    for name, by_seed in results.items():
        per_seed = {seed: next((rec["labeled"] for rec in records if rec.get(key) is not None
                                and rec[key] >= target), None) for seed, records in by_seed.items()}
        reached = np.array([v for v in per_seed.values() if v is not None], dtype=np.float64)
        out[name] = {"target": target, "target_labeled": base[-1]["labeled"], "per_seed": per_seed,
                     "mean": float(reached.mean()) if len(reached) else None,
                     "std": float(reached.std(ddof=1)) if len(reached) > 1 else 0.0 if len(reached) else None,
                     "reached": int(len(reached)), "seeds": len(per_seed)}
    return out


def overlap(results: dict[str, dict[str, list[dict]]]) -> list[dict[str, Any]]:
    """For every pair of samplers, averaged over the seeds both reached:
    `first_batch`, the share of round 1's batch they both picked (same
    labeled set, so this compares the strategies head on), and `all_picks`,
    the share of everything picked after the initial set that both picked
    by the last round both finished. Works on partial results."""
    names = list(results)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            first, every, rounds = [], [], []
            for seed in sorted(set(results[a]) & set(results[b])):
                ra, rb = results[a][seed], results[b][seed]
                n = min(len(ra), len(rb))
                if n < 2:
                    continue
                pa, pb = set(ra[1]["picked"]), set(rb[1]["picked"])
                first.append(len(pa & pb) / max(len(pa), 1))
                all_a = set().union(*(set(rec["picked"]) for rec in ra[1:n]))
                all_b = set().union(*(set(rec["picked"]) for rec in rb[1:n]))
                every.append(len(all_a & all_b) / max(len(all_a), 1))
                rounds.append(n - 1)
            if first:
                out.append({"a": a, "b": b, "first_batch": float(np.mean(first)), "all_picks": float(np.mean(every)),
                            "n_seeds": len(first), "rounds": int(min(rounds))})
    return out


def headline(summary: dict[str, list[dict[str, Any]]]) -> str:
    """The measured result in words: each sampler's latest mean against
    random's at the same round, a difference called only when it exceeds the
    pooled std. Random plays first within each seed, so it always has the
    round another sampler reached; when finished, that is random's final
    round."""
    if BASELINE not in summary:
        return "no results yet"
    base_rows = {row["round"]: row for row in summary[BASELINE]}
    parts = []
    for name, rows in summary.items():
        if name == BASELINE:
            continue
        last = rows[-1]
        base = base_rows.get(last["round"], summary[BASELINE][-1])
        target = ("random's final accuracy" if base is summary[BASELINE][-1]
                  else f"random's accuracy at {base['labeled']:,} labels")
        gap = last["mean"] - base["mean"]
        pooled = math.sqrt((last["std"] ** 2 + base["std"] ** 2) / 2)
        if min(last["n_seeds"], base["n_seeds"]) < 2:
            verdict = f"{100 * gap:+.1f} points with one seed (no spread measured; run more seeds)"
        elif abs(gap) <= pooled:
            verdict = "no clear difference (within one std)"
        else:
            verdict = (f"{'higher' if gap > 0 else 'lower'} by {100 * abs(gap):.1f} points (more than the pooled "
                       f"std of {100 * pooled:.1f} over {base['n_seeds']} seeds)")
        text = (f"{name} reached {100 * last['mean']:.1f}% ± {100 * last['std']:.1f} at {last['labeled']:,} labels "
                f"vs random {100 * base['mean']:.1f}% ± {100 * base['std']:.1f}: {verdict}")
        reached = next((row for row in rows if row["mean"] >= base["mean"]), None)
        if reached is not None:
            text += f"; {name} needed {reached['labeled']:,} labels to reach {target}"
        else:
            text += f"; {name} did not reach {target} within {last['labeled']:,} labels"
        parts.append(text)
    if not parts:
        base = summary[BASELINE][-1]
        return (f"random reached {100 * base['mean']:.1f}% ± {100 * base['std']:.1f} at {base['labeled']:,} "
                "labels (no other sampler ran)")
    return "; ".join(parts) if len(parts) == 1 else " | ".join(parts)


def summary_csv(result: dict[str, Any]) -> str:
    """The summary as CSV text (accuracy as fractions, as in the JSON), one
    row per sampler and round: the table a user takes to a spreadsheet.
    Floats are written at full precision so the CSV matches the JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, rows in result["summary"].items():
        for row in rows:
            writer.writerow([name, *(row[k] for k in CSV_COLUMNS[1:])])
    return buf.getvalue()
