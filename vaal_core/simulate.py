"""Simulation: play active-learning rounds with an oracle (the class folder
names) and measure test accuracy per labeled-set size, for every sampler,
over several seeds.

This is the honest measure of whether VAAL saves labels (DESIGN.md):
independent reproductions found VAAL close to random on CIFAR-10, so random
is always run beside the others and every figure comes with its spread over
seeds. Within a seed every sampler starts from the same initial set, and the
task classifier's seed depends only on (seed, round), so two samplers that
hold the same labeled set get the same model and the curves differ only by
what the samplers chose.

The loop mirrors `rounds.run_round` in memory: the per-round sampler context
is built in one place (`_build_context`) from `sampler.needs`, and the VAAL
models live per (seed, sampler), warm-started across rounds.

The JSON is a live document: the Demo page runs `simulate` in a background
process and polls the file, so it is rewritten (atomically) after every round
and at every change of phase, with a "progress" object saying where the run
is. The latent means behind the page's map go beside it as `.latents.npz`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import posixpath
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from vaal_core import samplers
from vaal_core.config import IMAGE_SIZES, EngineConfig, engine_config
from vaal_core.errors import BadImageFolder, BadInput, BudgetTooLarge

if TYPE_CHECKING:  # plotly is imported only when a chart is drawn
    import plotly.graph_objects as go

Progress = Callable[[dict[str, Any]], None]
BASELINE = "random"
# What this module can compute for a sampler; a sampler needing anything else
# is refused before any work starts.
SUPPORTED_NEEDS = frozenset({"latents", "disc", "task_probs", "task_mc", "pred_loss"})


@dataclass(frozen=True)
class SimConfig:
    samplers: tuple[str, ...]
    init: int
    budget: int
    rounds: int
    seeds: int
    fast: bool = False
    device: str = "auto"
    image_size: int = 32
    test_fraction: float = 0.2
    subset: int | None = None  # stratified subset of the folder (seeded, fixed) before the split
    map: bool = False  # also compute the 2-D UMAP map of the saved latents (the Demo page's picks map)


def _seed(seed: int, round_: int) -> int:
    """Seed of everything random in one round: depends on the seed and the
    round only, never on the sampler."""
    return seed * 1000 + round_


# -- checking and splitting ---------------------------------------------------

def _sampler_list(names: tuple[str, ...]) -> tuple[list[str], bool]:
    """Validated names in the given order, duplicates dropped, random added
    (first) when missing. Returns (names, whether random was added)."""
    out: list[str] = []
    for name in names:
        sampler = samplers.get(name)  # UnknownSampler lists the valid names
        missing = sampler.needs - SUPPORTED_NEEDS
        if missing:
            raise BadInput(f"sampler {name!r} needs {', '.join(sorted(missing))}, which simulation cannot "
                           f"compute yet; choose another sampler")
        if name not in out:
            out.append(name)
    added = BASELINE not in out
    return ([BASELINE] + out if added else out), added


def _check_config(cfg: SimConfig) -> None:
    for name in ("init", "budget", "rounds", "seeds"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise BadInput(f"--{name} must be a whole number of at least 1, got {value!r}")
    if cfg.image_size not in IMAGE_SIZES:
        raise BadInput(f"--image-size {cfg.image_size} is not supported; use one of {IMAGE_SIZES}")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise BadInput(f"--test-fraction must be between 0 and 1 (exclusive), got {cfg.test_fraction}")
    if cfg.subset is not None and cfg.subset < 2:
        raise BadInput(f"--subset must be at least 2 images, got {cfg.subset}")


def _classes(golds: list[str | None], image_root: Path) -> tuple[list[str], int]:
    """Sorted class names among the files in class folders, and the number of
    images at the root (no class folder: ignored)."""
    at_root = sum(g is None for g in golds)
    classes = sorted({g for g in golds if g is not None})
    if not golds:
        raise BadImageFolder(f"no image files (jpg, jpeg, png, bmp, gif, webp, tif, tiff) in {image_root}")
    if len(classes) < 2:
        found = f"only the class folder {classes[0]!r}" if classes else "no class folders"
        raise BadImageFolder(f"{image_root} has {found}; simulation needs at least 2 class subfolders "
                             f"(one per class, images inside)")
    return classes, at_root


def _stratified(rows: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`k` of `rows`, each class in proportion to its count (largest
    remainder), random within a class. Sorted."""
    classes, counts = np.unique(y, return_counts=True)
    exact = k * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[:k - quota.sum()]] += 1
    picks = [rng.permutation(rows[y == c])[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def _split(y: np.ndarray, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, test rows) of the rows with a class (y >= 0): an optional
    stratified subset, then a stratified test split, both seeded with 0 so
    they are the same for every seed and sampler. Checks the sizes."""
    rows = np.flatnonzero(y >= 0)
    if cfg.subset is not None:
        if cfg.subset > len(rows):
            raise BadInput(f"--subset {cfg.subset} is larger than the {len(rows):,} usable images in class "
                           f"folders; use --subset {len(rows)} or less")
        rows = _stratified(rows, y[rows], cfg.subset, np.random.default_rng(0))
    n_test = int(round(cfg.test_fraction * len(rows)))
    if n_test < 1:
        raise BadInput(f"a test fraction of {cfg.test_fraction} of {len(rows)} images leaves no test images; "
                       "use more images or a larger --test-fraction")
    test = _stratified(rows, y[rows], n_test, np.random.default_rng(0))
    pool = np.setdiff1d(rows, test)
    need = cfg.init + cfg.budget * cfg.rounds
    if need > len(pool):
        raise BudgetTooLarge(f"--init {cfg.init} + --budget {cfg.budget} x --rounds {cfg.rounds} = {need:,} labels "
                             f"is more than the pool of {len(pool):,} images ({len(test):,} held out for test); "
                             f"lower --init, --budget or --rounds")
    return pool, test


def _targets(golds: list[str | None], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, -1) if g is not None else -1 for g in golds], dtype=np.int64)


# -- one run: a sampler on a seed ---------------------------------------------

@dataclass
class _Data:
    images: np.ndarray  # (N, S, S, 3) uint8, row = item id
    y: np.ndarray  # (N,) class index, -1 for images outside the experiment
    pool: np.ndarray  # rows the samplers pick from (labeled or not)
    test: np.ndarray  # rows held out for accuracy
    classes: list[str]


@dataclass
class _Run:
    """State of one (seed, sampler) run that carries across rounds."""

    seed: int
    sampler: samplers.Sampler
    vaal: Any = None  # train.VAALModels, warm-started across rounds
    classifier: Any = None  # the last round's train.TaskModel, warm-started across rounds
    latents: np.ndarray | None = None  # the last round's latent means of the pool rows


@dataclass
class _SeedCache:
    """Work that is the same for every sampler of a seed, done once: the
    round-0 classifier (same initial set, same seed) and the first VAAL round
    (same fresh models, same labeled set, same seeds). Identical to recomputing
    it, since every random draw is seeded from (seed, round)."""

    task0: dict[bool, tuple] = field(default_factory=dict)  # with loss head? -> (classifier, accuracy, task_s)
    vaal1: dict[tuple, tuple] = field(default_factory=dict)  # (TA-VAAL?, labeled rows) -> (models, latents, disc, timings)


def _train_task(data: _Data, labeled: np.ndarray, engine: EngineConfig, device, seed: int,
                progress: Progress | None, init: Any = None, loss_head: bool = False) -> tuple[Any, float]:
    """Train the run's task model on the labeled rows, warm from `init` (a
    copy: the caller's model, maybe shared through the seed cache, stays as
    it was), and measure it on the test rows."""
    from vaal_core import train
    from vaal_core.models import LossHead

    if init is None:
        model = train.new_task_model(len(data.classes), engine.task, device, seed, loss_head)
    else:
        model = copy.deepcopy(init)
        if loss_head and model.head is None:
            model.head = LossHead(model.net.stage_channels).to(device)
    train.train_task(model, data.images, labeled, data.y[labeled], engine.task, device, seed, progress)
    pred = train.predict(model, data.images, data.test, device).argmax(1)
    return model, float((pred == data.y[data.test]).mean())


def _train_vaal(run: _Run, data: _Data, labeled: np.ndarray, unlabeled: np.ndarray, engine: EngineConfig,
                device, round_: int, cache: _SeedCache, progress: Progress | None,
                ranker: np.ndarray | None = None):
    """Train (or warm-train) this run's VAAL models on labeled vs unlabeled
    pool rows (TA-VAAL's, conditioned on `ranker`, when given); return
    (latents, disc P(labeled)) of the pool rows and {"train_s", "score_s"}
    (as first measured when taken from the cache)."""
    import torch

    from vaal_core import train

    key = (ranker is not None, labeled.tobytes())
    if run.vaal is None and key in cache.vaal1:
        models, latents, disc_prob, timings = cache.vaal1[key]
        run.vaal = copy.deepcopy(models)
        return latents, disc_prob, dict(timings)
    fresh = run.vaal is None
    if fresh:
        vae_cfg = engine.vae if ranker is None else replace(engine.vae, cond_dim=1)
        run.vaal = train.build_vaal(vae_cfg, engine.train, device, run.seed)
    iterations = engine.train.iterations(len(unlabeled), warm=not fresh)
    t0 = time.perf_counter()
    torch.manual_seed(_seed(run.seed, round_))  # the VAE's reparameterisation noise
    train.train_vaal(run.vaal, data.images, labeled, unlabeled, engine.train, iterations, device,
                     _seed(run.seed, round_), progress, ranker=ranker)
    t1 = time.perf_counter()
    latents = train.encode(run.vaal.vae, data.images, data.pool, device)
    disc_prob = train.discriminate(run.vaal.disc, latents, device, None if ranker is None else ranker[data.pool])
    timings = {"train_s": t1 - t0, "score_s": time.perf_counter() - t1}
    if fresh:
        cache.vaal1[key] = (copy.deepcopy(run.vaal), latents, disc_prob, dict(timings))
    return latents, disc_prob, timings


def _build_context(run: _Run, data: _Data, labeled: np.ndarray, unlabeled: np.ndarray, engine: EngineConfig,
                   device, round_: int, cache: _SeedCache,
                   progress: Progress | None) -> tuple[samplers.Context, dict[str, float]]:
    """Everything the sampler declares it needs, for the pool rows (item id =
    row of the decoded array). Returns (context, {"train_s", "score_s"}).
    Task-model outputs come from the classifier trained on the current
    labeled set (at the end of the previous round)."""
    from vaal_core import train

    needs = run.sampler.needs
    ctx = samplers.Context(item_ids=data.pool, rng=np.random.default_rng(_seed(run.seed, round_)))
    timings = {"train_s": 0.0, "score_s": 0.0}
    ranker = None
    if needs & samplers.TASK_NEEDS:
        t0 = time.perf_counter()
        mc = engine.task.mc_samples if "task_mc" in needs else 0
        out = train.run_task(run.classifier, data.images, data.pool, device, mc_samples=mc,
                             seed=_seed(run.seed, round_))
        ctx.extras.update({"task_probs": out.probs, "ll4al_subset": engine.task.loss_subset})
        if out.mc_probs is not None:
            ctx.extras["task_mc"] = out.mc_probs
        if out.pred_loss is not None:
            ctx.extras["pred_loss"] = out.pred_loss
            ranker = np.zeros(len(data.images), dtype=np.float32)
            ranker[data.pool] = out.pred_loss
        timings["score_s"] += time.perf_counter() - t0
    if needs & {"latents", "disc"}:
        latents, disc_prob, vaal_timings = _train_vaal(run, data, labeled, unlabeled, engine, device, round_,
                                                       cache, progress, ranker if "disc" in needs else None)
        ctx.latents = run.latents = latents
        ctx.disc_prob = disc_prob if "disc" in needs else None
        timings = {k: timings[k] + vaal_timings[k] for k in timings}
    return ctx, timings


def _play(run: _Run, data: _Data, initial: np.ndarray, cfg: SimConfig, engine: EngineConfig, device,
          cache: _SeedCache, progress: Progress | None,
          on_round: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Round 0 on the initial set, then `cfg.rounds` rounds of select ->
    reveal -> retrain. Returns one record per round; `on_round` gets each
    record as soon as it exists (before the round's final progress event), so
    the caller can save it while later rounds play."""
    tag = {"seed": run.seed, "sampler": run.sampler.name}
    labeled = np.sort(initial)
    records = []
    for r in range(cfg.rounds + 1):
        def forward(info: dict[str, Any], r=r) -> None:
            if progress is not None:
                progress({**info, **tag, "round": r})

        picked, train_s, select_s = labeled, 0.0, 0.0
        if r > 0:
            unlabeled = np.setdiff1d(data.pool, labeled)
            ctx, timings = _build_context(run, data, labeled, unlabeled, engine, device, r, cache, forward)
            forward({"phase": "select"})
            t0 = time.perf_counter()
            sel = samplers.select(run.sampler.name, ctx, unlabeled, labeled, cfg.budget)
            train_s, select_s = timings["train_s"], timings["score_s"] + time.perf_counter() - t0
            picked = sel.ids  # best first
            labeled = np.sort(np.concatenate([labeled, picked]))  # the oracle reveals data.y[picked]
        t0 = time.perf_counter()
        head = "pred_loss" in run.sampler.needs  # LL4AL's loss head trains with the classifier
        if r == 0 and head in cache.task0:
            run.classifier, acc, task_s = cache.task0[head]
        else:
            run.classifier, acc = _train_task(data, labeled, engine, device, _seed(run.seed, r), forward,
                                              init=run.classifier, loss_head=head)
            task_s = time.perf_counter() - t0
            if r == 0:
                cache.task0[head] = (run.classifier, acc, task_s)
        counts = np.bincount(data.y[labeled], minlength=len(data.classes))
        record = {"round": r, "labeled": int(len(labeled)), "accuracy": acc, "train_s": round(train_s, 3),
                  "select_s": round(select_s, 3), "task_s": round(task_s, 3),
                  "class_counts": dict(zip(data.classes, counts.tolist())),
                  "picked": [int(i) for i in picked]}
        records.append(record)
        if on_round is not None:
            on_round(record)
        forward({"phase": "task", "labeled": record["labeled"], "accuracy": acc, "done": True})
    return records


# -- summary, headline, output ------------------------------------------------

CSV_COLUMNS = ("sampler", "labeled", "round", "mean", "std", "min", "max", "n_seeds")


def summarize(results: dict[str, dict[str, list[dict]]]) -> dict[str, list[dict[str, Any]]]:
    """Per sampler and round: mean, sample std (ddof=1; 0 with one seed),
    min and max of the accuracy over the seeds that reached that round.

    Works on partial results (the JSON is summarised after every round, so a
    seed may be mid-run or not started): each row says in n_seeds how many
    seeds it stands on."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_seed in results.items():
        by_round: dict[int, list[dict]] = {}
        for records in by_seed.values():
            for rec in records:
                by_round.setdefault(rec["round"], []).append(rec)
        if not by_round:
            continue
        rows = []
        for r in sorted(by_round):
            acc = np.array([rec["accuracy"] for rec in by_round[r]])
            rows.append({"round": r, "labeled": by_round[r][0]["labeled"], "mean": float(acc.mean()),
                         "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "min": float(acc.min()), "max": float(acc.max()), "n_seeds": int(len(acc)),
                         "select_s": float(np.mean([rec.get("select_s", 0.0) for rec in by_round[r]])),
                         "train_s": float(np.mean([rec.get("train_s", 0.0) for rec in by_round[r]]))})
        out[name] = rows
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


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)  # readers never see half a file


def _write_latents(path: Path, rows: np.ndarray, latents: np.ndarray, y: np.ndarray) -> None:
    """np.savez through a file handle (a path would get ".npz" appended to
    the temporary name), then an atomic rename like the JSON."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, rows=rows.astype(np.int64), latents=latents.astype(np.float32), y=y.astype(np.int64))
    os.replace(tmp, path)


def chart_figure(result: dict[str, Any]) -> "go.Figure":
    """Accuracy (%) against labels, one line per sampler: the mean over seeds
    and a band of ± std (min-max where a round has one seed so far). The one
    place the chart is built, for the HTML file and the Demo page alike;
    works on a partial result (any rounds so far, even none)."""
    import plotly.graph_objects as go
    from plotly.colors import hex_to_rgb, qualitative

    palette = list(qualitative.Plotly)
    fig = go.Figure()
    for i, (name, rows) in enumerate(result.get("summary", {}).items()):
        color = "#7f7f7f" if name == BASELINE else palette[i % len(palette)]
        r, g, b = hex_to_rgb(color)
        x = [row["labeled"] for row in rows]
        mean = [100 * row["mean"] for row in rows]
        lo = [100 * (row["mean"] - row["std"] if row["n_seeds"] > 1 else row["min"]) for row in rows]
        hi = [100 * (row["mean"] + row["std"] if row["n_seeds"] > 1 else row["max"]) for row in rows]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=f"rgba({r},{g},{b},0.15)",
                                 line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name))
        hover = [f"{row['labeled']:,} labels: {100 * row['mean']:.1f}% ± {100 * row['std']:.1f} "
                 f"(min {100 * row['min']:.1f}, max {100 * row['max']:.1f}, {row['n_seeds']} seeds)" for row in rows]
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": color, "dash": "dash" if name == BASELINE else "solid"},
                                 text=hover, hovertemplate="%{text}<extra>" + name + "</extra>"))
    band = "± 1 std over seeds" if result["config"]["seeds"] > 1 else "min-max (one seed)"
    title = (result.get("headline") or "no results yet").replace(" | ", "<br>")
    progress = result.get("progress")
    if not result.get("complete") and progress:
        title = f"in progress ({progress['rounds_done']} of {progress['rounds_total']} rounds): {title}"
    fig.update_layout(title={"text": f"<span style='font-size:13px'>{title}</span>", "x": 0.01},
                      xaxis_title="labeled images", yaxis_title=f"test accuracy, % (band: {band})",
                      template="plotly_white", hovermode="closest", margin={"t": 110})
    return fig


def write_chart(result: dict[str, Any], path: Path) -> Path:
    """`chart_figure` as a self-contained HTML file (plotly.js inlined, no
    CDN), so it opens offline."""
    fig = chart_figure(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    os.replace(tmp, path)
    return path


def _progress_state(names: list[str], cfg: SimConfig, rounds_done: int, phase: str) -> dict[str, Any]:
    """Where the run stands, from the number of rounds recorded: runs play in
    a fixed order (seeds, then samplers, then rounds), so the round now
    playing follows from the count."""
    per_run = cfg.rounds + 1
    runs_total = cfg.seeds * len(names)
    current = None
    if rounds_done < runs_total * per_run:
        run_index, round_ = divmod(rounds_done, per_run)
        seed, i = divmod(run_index, len(names))
        current = {"seed": seed, "sampler": names[i], "round": round_}
    return {"runs_done": rounds_done // per_run, "runs_total": runs_total, "rounds_done": rounds_done,
            "rounds_total": runs_total * per_run, "current": current, "phase": phase}


# -- the entry point ----------------------------------------------------------

def simulate(image_root: Path, cfg: SimConfig, out: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Run the simulation and write `out` (JSON), `out.with_suffix('.html')`
    (chart) and, when a sampler uses latents, `out.with_suffix('.latents.npz')`.
    The JSON first appears once the images are decoded, then is rewritten
    after every round (and at each change of phase) with "complete": false
    and a "progress" object, so a page polling it draws the curves as they
    grow, and a run that stops leaves what it finished (and "error" when it
    failed inside Python).
    Raises BadInput, BudgetTooLarge, UnknownSampler or BadImageFolder before
    any decoding or training when the request cannot work."""
    from vaal_core import train
    from vaal_core.ingest import load_folder, scan

    t_start = time.perf_counter()
    image_root, out = Path(image_root), Path(out)
    # 1. Check everything that can be checked before decoding.
    names, random_added = _sampler_list(tuple(cfg.samplers))
    _check_config(cfg)
    device = train.resolve_device(cfg.device)
    scanned = [posixpath.basename(posixpath.dirname(rel)) or None for rel, _ in scan(image_root).files]
    classes, _ = _classes(scanned, image_root)
    _split(_targets(scanned, classes), cfg)  # sizes, with every scanned file counted
    latents_path = out.with_suffix(".latents.npz")
    # An earlier run's files must not pass for this one's while it decodes
    # (a poller reads "no JSON yet" as "starting").
    for stale in (out, out.with_suffix(".html"), latents_path):
        stale.unlink(missing_ok=True)

    # 2. Decode, then split for real (files may have been skipped).
    def decode_progress(done: int, total: int) -> None:
        if progress is not None:
            progress({"phase": "decode", "done": done, "total": total})

    images, paths, golds, skipped = load_folder(image_root, cfg.image_size, progress=decode_progress)
    classes, at_root = _classes(golds, image_root)
    y = _targets(golds, classes)
    pool, test = _split(y, cfg)
    data = _Data(images, y, pool, test, classes)
    engine = engine_config(cfg.image_size, cfg.fast)
    # The map's latents: seed 0 of the first sampler that trains a VAE, at its last round.
    map_sampler = next((n for n in names if "latents" in samplers.get(n).needs), None)

    result: dict[str, Any] = {
        "complete": False, "error": None, "progress": _progress_state(names, cfg, 0, "start"),
        "config": {**asdict(cfg), "samplers": names, "samplers_requested": list(cfg.samplers),
                   "random_added": random_added,
                   "seed_list": list(range(cfg.seeds)), "engine": asdict(engine)},
        "device": str(device), "image_root": str(image_root.resolve()),
        "n_images": len(paths), "n_pool": int(len(pool)), "n_test": int(len(test)), "classes": classes,
        "test_class_counts": dict(zip(classes, np.bincount(y[test], minlength=len(classes)).tolist())),
        "ignored_root_images": at_root, "skipped": len(skipped),
        "notes": {"ids": "picked/test_rows are rows of the decoded folder: its image files in sorted path "
                         "order, minus skipped files; paths[row] is the file of a row",
                  "std": "sample standard deviation over seeds (ddof=1)",
                  "round_0": "picked = the random initial set (same for every sampler of a seed)",
                  "overlap": "share of picks two samplers have in common (first_batch: round 1, from the "
                             "same labeled set; all_picks: everything after the initial set); two random "
                             "batches share about overlap_by_chance of round 1",
                  "timings": "train_s: VAE/discriminator training; select_s: the task model's or the VAE's "
                             "pass over the pool, scoring and selection; task_s: classifier training (with "
                             "LL4AL's loss head for the samplers that use it, warm-started from the run's "
                             "previous round) and test evaluation",
                  "progress": "current = the round playing now (null when all are done); phase: start, "
                              "train, select, task, map, chart, done, stopped or failed",
                  "latents": "latents_file (beside this file, null until written): rows = pool rows, "
                             "latents = VAE latent means (float32), y = class index, from latents_from"},
        "paths": paths, "test_rows": test.tolist(),
        "latents_file": None,
        "latents_from": ({"seed": 0, "sampler": map_sampler, "round": cfg.rounds} if map_sampler else None),
        "results": {name: {} for name in names}, "summary": {}, "overlap": [],
        "overlap_by_chance": cfg.budget / max(len(pool) - cfg.init, 1),
        "headline": "", "seconds": 0.0,
    }
    rounds_done = 0

    def save(phase: str) -> None:
        result["progress"] = _progress_state(names, cfg, rounds_done, phase)
        result["seconds"] = round(time.perf_counter() - t_start, 2)
        _write_json(out, result)

    def tracked(info: dict[str, Any]) -> None:
        # A new phase of the round playing now is worth a write (a poller
        # shows "seed 1, vaal, round 3: training"); iteration ticks are not.
        now = result["progress"]["current"]
        key = (info.get("seed"), info.get("sampler"), info.get("round"))
        if (now and not info.get("done") and key == (now["seed"], now["sampler"], now["round"])
                and info.get("phase") not in (None, result["progress"]["phase"])):
            save(info["phase"])
        if progress is not None:
            progress(info)

    save("start")
    # 3. Every seed: one initial set, then every sampler from it.
    try:
        for seed in range(cfg.seeds):
            initial = np.random.default_rng(seed).choice(pool, cfg.init, replace=False)
            cache = _SeedCache()
            for name in names:
                run = _Run(seed, samplers.get(name))

                def on_round(record: dict[str, Any], run: _Run = run) -> None:
                    nonlocal rounds_done
                    result["results"][run.sampler.name].setdefault(str(run.seed), []).append(record)
                    rounds_done += 1
                    if (run.seed, run.sampler.name, record["round"]) == (0, map_sampler, cfg.rounds):
                        _write_latents(latents_path, data.pool, run.latents, data.y[data.pool])
                        result["latents_file"] = latents_path.name  # only once the file is there
                    result["summary"] = summarize(result["results"])
                    result["overlap"] = overlap(result["results"])
                    result["headline"] = headline(result["summary"])
                    save("start" if rounds_done < result["progress"]["rounds_total"] else "chart")

                _play(run, data, initial, cfg, engine, device, cache, tracked, on_round)
    except KeyboardInterrupt:  # stopped by the user (Ctrl-C, or the app's Stop: SIGTERM): not a failure
        result["stopped"] = True
        with contextlib.suppress(OSError):
            save("stopped")
        raise
    except BaseException as e:  # noqa: BLE001 - recorded for the poller, then re-raised
        result["error"] = str(e) or type(e).__name__
        with contextlib.suppress(OSError):  # a full disk must not hide the real error
            save("failed")
        raise

    # 4. The map of the picks (in this worker, so the page never waits on
    # UMAP), then the final write and chart.
    if cfg.map and result["latents_file"]:
        from vaal_core.embed import cached_projection_of

        save("map")
        cached_projection_of(latents_path, seed=0)
        result["map_ready"] = True
    result["complete"] = True
    write_chart(result, out.with_suffix(".html"))
    save("done")
    return result


def read_result(out: Path) -> dict[str, Any] | None:
    """The JSON a (possibly still running) simulation wrote, or None before
    its first write. Writes are atomic, so a read never sees half a file."""
    try:
        return json.loads(Path(out).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot read simulation results {out}: {err}") from None
