"""What was measured, as tables and sentences: the history of a project's
rounds (`round_sentence`: one round in words for stakeholders), and a
simulation's accuracy summary and sampler overlap (its headline: loop/headline.py).

Pure functions of stored results (round rows, a simulation's JSON), so the
pages, the CLI and the benchmarks all read the same numbers.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from vaal_core.config import TaskConfig
from vaal_core.learn import calibration, disc_quality
from vaal_core.store import Project

BASELINE = "random"


def accel_words(accel: dict | None) -> str | None:
    """How a round's models ran (learn/accel.py), e.g. "bf16 · channels_last ·
    images on the device · compiled"; None for rounds that did not say."""
    if not accel:
        return None
    words = [accel["precision"]]
    words += [w for key, w in (("channels_last", "channels_last"), ("device_cache", "images on the device"),
                               ("compile", "compiled")) if accel.get(key)]
    if accel.get("processes"):
        words.append(f"{accel['processes']} processes")
    return " · ".join(words)


def history(project: Project) -> list[dict[str, Any]]:
    """One flat row per round for tables and charts: what ran, on what, how
    long each step took, how it ended, and the labels it started from. A
    'running' round whose process is gone reads 'interrupted', as in `status`."""
    rows = []
    training = project.is_training()
    for r in project.rounds():
        m, t, s = r["metrics"] or {}, r["timings"] or {}, (r["settings"] or {}).get("round", {})
        made_by = calibration.suggester(m)  # the suggestions' figures: the task model's, or with the probe
        losses = m.get("losses") or {}
        status = "interrupted" if r["status"] == "running" and not training else r["status"]
        rows.append({
            "round": r["id"], "sampler": r["sampler"], "budget": r["budget"], "status": status,
            "labeled": r["n_labeled"], "pool": r["n_pool"], "fast": s.get("fast"), "device": m.get("device"),
            "precision": accel_words(m.get("accel")),
            "iterations": m.get("iterations"), "warm_start": m.get("warm_start"),
            "train_s": t.get("train_s"), "score_s": t.get("score_s"), "select_s": t.get("select_s"),
            "total_s": t.get("total_s"), "vae_loss": losses.get("vae_loss"), "disc_loss": losses.get("disc_loss"),
            "class_counts": m.get("class_counts") or {}, "curve": m.get("curve") or [],
            "cold_start": m.get("cold_start"), "task_accuracy": made_by.get("accuracy"),
            "task_n_val": made_by.get("n_val"), "task_how": made_by.get("how"),
            "suggest_model": made_by.get("model", "task model") if made_by else None,
            "model_accuracy": (m.get("task") or {}).get("accuracy"), "probe_accuracy": made_by.get("probe_accuracy"),
            "task_s": t.get("task_s"), "predict_s": t.get("predict_s"), "features_s": t.get("features_s"),
            "probe_s": t.get("probe_s"),
            "started": r["created_at"], "finished": r["finished_at"],
            "error": r["error"], "policy": (m.get("policy") or {}).get("name"),
            "calibration": made_by.get("calibration"), **_discriminator(m),
        })
    return rows


def _seconds(value: float) -> str:
    """'38 s', '4 min 5 s', '1 h 12 min'."""
    s = round(value)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def row_trust(row: dict[str, Any]) -> calibration.Trust:
    """A history row's calibration, read as the pages read a round's (`calibration.of_round`)."""
    return calibration.of_round({"task": {"calibration": row.get("calibration"), "n_val": row.get("task_n_val"),
                                          "model": row.get("suggest_model") or "task model"}})


def round_sentence(row: dict[str, Any]) -> str:
    """A history row in words for people who do not train models, e.g.
    'Round 3 · typiclust (chosen by auto) picked 50 images · from 412
    labels · suggestions right 71% of the time on 41 held-out labels,
    confidence calibrated · 38 s'. Plain text: the page escapes it."""
    sampler = row["sampler"] + (f" (chosen by {row['policy']})" if row.get("policy") else "")
    head = f"Round {row['round']} · {sampler}"
    if row["status"] == "running":
        return f"{head} · training now"
    if row["status"] == "interrupted":
        return f"{head} · interrupted: its process ended; the previous queue was kept"
    if row["status"] != "done":
        why = f": {row['error']}" if row.get("error") else ""
        return f"{head} · {row['status']}{why}"
    parts = [f"{head} picked {row['budget']:,} images", f"from {row['labeled'] or 0:,} labels"]
    trust = row_trust(row)
    if row.get("task_accuracy") is not None:
        sure = ("confidence calibrated" if trust.calibrated else
                f"confidence not calibrated (it takes {calibration.MIN_HELD_OUT} held-out labels)"
                if row.get("calibration") else "confidence not calibrated")
        parts.append(f"suggestions {_made_by(row)}right {row['task_accuracy']:.0%} of the time on "
                     f"{row['task_n_val']:,} held-out labels{_alone(row)}, {sure}")
    elif row.get("task_how") is not None:  # a task model, but too few labels to hold some out
        parts.append("suggestions not measured yet (too few labels to hold some out), confidence not calibrated")
    elif sum(1 for n in (row.get("class_counts") or {}).values() if n) < 2:
        parts.append("no suggestions yet (they take labels of 2 classes)")
    else:
        parts.append("no suggestions this round")
    if row.get("total_s") is not None:
        parts.append(_seconds(row["total_s"]))
    return " · ".join(parts)


def _made_by(row: dict[str, Any]) -> str:
    """'(task model + feature probe) ' when the probe had a part, else ''."""
    model = row.get("suggest_model")
    return f"({model}) " if model and model != "task model" else ""


def _alone(row: dict[str, Any]) -> str:
    """' (the task model alone 46%)' beside a combination's accuracy."""
    if not _made_by(row) or row.get("model_accuracy") is None:
        return ""
    return f" (the task model alone {row['model_accuracy']:.0%})"


def round_summary(result: Any) -> str:
    """A finished round (a `loop.round.RoundResult`) in a few lines for the
    terminal (`python -m vaal_core round`): what it picked and trained, the
    task model's and the suggestions' accuracy, where it ran."""
    m, t = result.metrics, result.timings
    trained = (f"{m['iterations']} VAE/discriminator iterations on {m['device']}"
               f"{' (warm start)' if m['warm_start'] else ''}" if "iterations" in m else "no VAE needed")
    text = (f"round {result.round_id} ({result.sampler}, budget {result.budget}): queue of {len(result.queue)} "
            f"items; {trained}, {t.get('total_s', 0):.1f} s")
    policy = m.get("policy")
    if policy:  # `auto`'s choice, or a cold start: the name asked for and what ran instead, as the Train page says
        text += f"\n{policy['name']} used {policy['chose']} this round. Why: {policy['why'].split(': ', 1)[-1]}"
    task = m.get("task")
    if task:
        acc = (f"{100 * task['accuracy']:.1f}% on {task['n_val']} held-out labels" if task["accuracy"] is not None
               else "no accuracy estimate")
        text += (f"\ntask model ({task['arch']}{', warm start' if task['warm_start'] else ''}): {task['steps']} "
                 f"steps on {task['n_train']} labels, {acc}; suggestions stored for the queue")
        made = m.get("suggest")
        if made:  # the suggestions combine it with the linear probe on the feature space (learn/probe.py)
            acc = (f"{100 * made['accuracy']:.1f}% on the same held-out labels (linear probe alone "
                   f"{100 * made['probe_accuracy']:.1f}%)" if made["accuracy"] is not None else "no accuracy estimate")
            text += f"\nsuggestions made by the {made['model']}: {acc}"
    if m.get("cold_start"):
        text += f"\ncold start: {m['cold_start']}"
    if m.get("accel"):
        text += f"\nran on {m['accel']['device']}: {accel_words(m['accel'])}"
        note = (m.get("losses") or {}).get("compile_note")
        if note:
            text += f" ({note})"
    return text


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


def calibration_sentence(row: dict[str, Any]) -> str:
    """How far a round's suggestion confidences can be trusted, in words for
    the Train page's reliability figure, or why the round has none."""
    trust = row_trust(row)
    cal = row.get("calibration") or {}
    if trust.calibrated:
        t = trust.temperature
        how = (f"{trust.raw} was overconfident, so the confidence shown is lowered" if t > 1.05 else
               f"{trust.raw} was about right" if t > 1 else
               f"{trust.raw} was not overconfident, so it is shown as it is (calibration never raises it)")
        noise = cal.get("ece_noise")
        floor = (f"; on {trust.n_held_out:,} labels even a perfectly calibrated model would show about "
                 f"{noise:.2f}, so gaps smaller than that are chance" if noise else "")
        return (f"Round {row['round']}: calibrated on {trust.n_held_out:,} held-out labels. Calibration error "
                f"(the average gap between the confidence shown and how often it is right; 0 is perfect): "
                f"{trust.ece_before:.3f} raw, {trust.ece_after:.3f} calibrated (each held-out label graded by a "
                f"temperature fitted without it){floor}. Temperature {t:.2f}: {how}. Suggestions at "
                f"{trust.threshold:.0%} or more are pre-selected.")
    if not cal:
        return (f"Round {row['round']}: not calibrated: the round is from before calibration; its suggestions "
                "are never pre-selected.")
    share = TaskConfig().val_fraction
    return (f"Round {row['round']}: not calibrated: too few held-out labels ({trust.n_held_out:,}; it takes "
            f"{calibration.MIN_HELD_OUT}, about {round(calibration.MIN_HELD_OUT / share):,} labels in all, as "
            f"{share:.0%} are held out). Its suggestions show {trust.raw} and are never pre-selected.")


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
