"""Simulation: play active-learning rounds with an oracle (the class folder
names) and measure test accuracy per labeled-set size, for every sampler,
over several seeds.

This is the honest measure of whether a sampler saves labels: independent
reproductions found VAAL close to random on CIFAR-10, so random is always
run beside the others and every figure comes with its spread over seeds.
Within a seed every sampler starts from the same initial set, and
everything random in a round is seeded from (seed, round) only, so two
samplers that hold the same labeled set get the same models and the curves
differ only by what the samplers chose.

Each round goes through the same pipeline as a project's round
(`learn.pipeline`), with its models kept in memory per (seed, sampler) and
warm-started across rounds. Producer runs that start fresh on the same
labels (round 0 of every sampler of a seed) are shared, not repeated.

The JSON is a live document: the Demo page runs `simulate` in a background
process and polls the file, so it is rewritten (atomically) after every round
and at every change of phase, with a "progress" object saying where the run
is. The latent means behind the page's map go beside it as `.latents.npz`.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaal_core import samplers
from vaal_core.config import IMAGE_SIZES, AccelConfig, EngineConfig, engine_config
from vaal_core.learn.devices import check_precision
from vaal_core.errors import BadInput
from vaal_core.files import save_arrays_atomic, write_json_atomic
from vaal_core.learn import pipeline
from vaal_core.learn.checkpoints import InMemory
from vaal_core.loop.chart import write_chart
from vaal_core.loop.split import class_names, class_targets, split_rows
from vaal_core.loop.headline import headline
from vaal_core.loop.report import BASELINE, label_efficiency, overlap, summarize
from vaal_core.progress import Event, Phase, Progress, announce


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
    # Whose classifier is measured: "own" (the sampler's, warm across rounds, LL4AL's with its loss
    # head), "common" (one plain classifier trained fresh on each labeled set, the same for every
    # sampler: pick quality apart from a sampler's training objective) or "both".
    evaluate: str = "own"
    pretrained: str | None = None  # ImageNet ResNet weights for the feature space (else SimCLR or the hub cache)
    accel: AccelConfig = field(default_factory=AccelConfig)  # precision, memory layout, ... (learn/accel.py)


EVALUATIONS = ("own", "common", "both")


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
        try:
            pipeline.plan(sampler.needs)  # a policy needs nothing itself; what it chooses is checked here too
        except ValueError as err:
            raise BadInput(f"sampler {name!r} cannot be simulated: {err}") from None
        if name not in out:
            out.append(name)
    added = BASELINE not in out
    return ([BASELINE] + out if added else out), added


def rounds_total(cfg: SimConfig) -> int:
    """How many rounds the run plays (and reports as done): every seed plays
    every sampler, random included, from round 0 to `rounds`."""
    names, _ = _sampler_list(tuple(cfg.samplers))
    return cfg.seeds * len(names) * (cfg.rounds + 1)


def round_line(event: Event) -> str | None:
    """'seed 0 vaal round 2: 40 labels, accuracy 61.3%' for the event that
    ends a round which measured an accuracy; None for any other event."""
    v = event.values
    if not v.get("done") or v.get("accuracy") is None:
        return None
    return (f"seed {v.get('seed')} {v.get('sampler')} round {v.get('round')}: "
            f"{v.get('labeled')} labels, accuracy {100 * v['accuracy']:.1f}%")


def print_round(event: Event) -> None:
    """Progress for a terminal: a line on stderr per round measured."""
    line = round_line(event)
    if line:
        print(line, file=sys.stderr, flush=True)


def _check_config(cfg: SimConfig) -> None:
    for name in ("init", "budget", "rounds", "seeds"):
        value, least = getattr(cfg, name), 0 if name == "init" else 1  # --init 0: the sampler picks the first batch
        if not isinstance(value, int) or value < least:
            raise BadInput(f"--{name} must be a whole number of at least {least}, got {value!r}")
    if cfg.evaluate not in EVALUATIONS:
        raise BadInput(f"--evaluate must be one of {', '.join(EVALUATIONS)}, got {cfg.evaluate!r}")
    if cfg.pretrained is not None and not Path(cfg.pretrained).expanduser().is_file():
        raise BadInput(f"pretrained weights file {cfg.pretrained} does not exist; give the path of a torchvision "
                       "ResNet-18 or ResNet-50 state dict")
    check_precision(cfg.accel.precision, cfg.device)
    if cfg.image_size not in IMAGE_SIZES:
        raise BadInput(f"--image-size {cfg.image_size} is not supported; use one of {IMAGE_SIZES}")
    if not 0.0 < cfg.test_fraction < 1.0:
        raise BadInput(f"--test-fraction must be between 0 and 1 (exclusive), got {cfg.test_fraction}")
    if cfg.subset is not None and cfg.subset < 2:
        raise BadInput(f"--subset must be at least 2 images, got {cfg.subset}")


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
    """One (seed, sampler) run: its models live in memory across rounds."""

    seed: int
    sampler: samplers.Sampler
    models: InMemory = field(default_factory=InMemory)
    latents: np.ndarray | None = None  # the latent means its last VAE gave the pool rows


def _round_data(data: _Data, labeled: np.ndarray) -> pipeline.RoundData:
    """The pool as a round sees it: item id = row of the decoded folder; the
    task model trains on every label and is measured on the test split."""
    is_labeled = np.isin(data.pool, labeled)
    return pipeline.RoundData(data.images, data.pool, data.pool, is_labeled,
                              np.where(is_labeled, data.y[data.pool], -1), data.classes, task_train=is_labeled,
                              eval_rows=data.test, eval_targets=data.y[data.test])


def _play(run: _Run, data: _Data, initial: np.ndarray, cfg: SimConfig, engine: EngineConfig, device,
          shared: dict, progress: Progress | None,
          on_round: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Round r trains what the sampler needs on the labeled set, measures a
    classifier's test accuracy (the sampler's own, a common fresh one, or
    both: `cfg.evaluate`), then, before the last round, picks the next batch
    and the oracle reveals its classes. A policy (`auto`) is resolved every
    round; the record says which sampler ran and why. With no labels
    (`--init 0`) round 0 measures nothing and the sampler picks the first
    batch; a sampler that needs a classifier picks it at random then.
    Returns one record per round; `on_round` gets each as soon as it exists,
    so the caller can save it while later rounds play. A record's timings
    are those of the round's own picks (train_s, select_s) and of its
    classifiers (task_s)."""
    labeled, picked = np.sort(initial), np.sort(initial)
    picking: dict[str, Any] = {"train_s": 0.0, "select_s": 0.0}  # round 0's picks: the random initial set
    own, common = cfg.evaluate in ("own", "both"), cfg.evaluate in ("common", "both")
    records = []
    for r in range(cfg.rounds + 1):
        def forward(event: Event, r: int = r) -> None:
            if progress is not None:
                progress(event.with_values(seed=run.seed, sampler=run.sampler.name, round=r))

        rd = _round_data(data, labeled)
        classes_labeled = int(len(np.unique(data.y[labeled])))
        chosen = samplers.resolve(run.sampler.name, len(labeled), len(data.classes), classes_labeled)
        sampler = chosen.sampler
        picks_now = r < cfg.rounds
        # The last round only measures: its classifier trains as the sampler's own would (LL4AL's
        # with its loss head), and nothing more is picked.
        needs = set(sampler.needs) if picks_now else set(pipeline.task_needs(sampler.needs))
        if own and len(labeled):
            needs |= {"task_model"}
        job = pipeline.Job(rd, engine, device, _seed(run.seed, r), run.models, forward, shared=shared,
                           feature_weights=Path(cfg.pretrained).expanduser() if cfg.pretrained else None)
        made = pipeline.produce(needs, job)
        task = made.metrics.get("task", {})
        counts = np.bincount(data.y[labeled], minlength=len(data.classes))
        record = {"round": r, "labeled": int(len(labeled)), "accuracy": task.get("accuracy") if own else None,
                  "train_s": round(picking["train_s"], 3), "select_s": round(picking["select_s"], 3),
                  "task_s": round(made.timings.get("task_s", 0.0) + made.timings.get("predict_s", 0.0), 3),
                  "loss_head": task.get("loss_head", False),
                  "class_counts": dict(zip(data.classes, counts.tolist())), "picked": [int(i) for i in picked],
                  **{k: v for k, v in picking.items() if k in ("sampler_used", "why", "notes", "discriminator")}}
        if common and len(labeled):
            # Not shared: the memo keeps a run's every output, and this one is asked only for its accuracy.
            fresh = pipeline.Job(rd, engine, device, _seed(run.seed, r), InMemory(), forward)
            measured = pipeline.produce({"task_model"}, fresh)
            record["common_accuracy"] = measured.metrics["task"]["accuracy"]
            record["task_s"] = round(record["task_s"] + measured.timings["task_s"] + measured.timings["predict_s"], 3)
            if not own:
                record["accuracy"] = record["common_accuracy"]
        if picks_now:  # pick the next round's batch
            announce(forward, Phase.SELECT)
            t0 = time.perf_counter()
            sel = samplers.select(sampler.name, rd.item_ids, made.values, rd.item_ids[~rd.labeled], labeled,
                                  cfg.budget, np.random.default_rng(_seed(run.seed, r)), n_classes=len(data.classes))
            picking = {"train_s": made.timings.get("train_s", 0.0) + made.timings.get("features_s", 0.0),
                       "select_s": made.timings.get("score_s", 0.0) + time.perf_counter() - t0,
                       "sampler_used": sampler.name, "why": chosen.why,
                       "notes": _plain(sel.notes)}
            if made.metrics.get("discriminator") and {"disc_prob", "ta_disc_prob"} & set(sampler.needs):
                # Is the ranking worth anything (learn.disc_quality); its timing stays out, as every timing
                # but the round's own does, so that a record is the same on every run.
                picking["discriminator"] = _plain({k: v for k, v in made.metrics["discriminator"].items()
                                                   if k != "seconds"})
            picked = sel.ids  # best first
            labeled = np.sort(np.concatenate([labeled, picked]))  # the oracle reveals data.y[picked]
            space = made.latent_space()
            if space is not None:
                run.latents = space[0]
        records.append(record)
        if on_round is not None:
            on_round(record)
        forward(Event(Phase.TASK, values={"labeled": record["labeled"], "accuracy": record["accuracy"],
                                          "done": True}))
    return records


def _plain(notes: dict[str, Any]) -> dict[str, Any]:
    """A sampler's notes as JSON-ready values."""
    return json.loads(json.dumps(notes, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _write_latents(path: Path, rows: np.ndarray, latents: np.ndarray, y: np.ndarray) -> None:
    save_arrays_atomic(path, rows=rows.astype(np.int64), latents=latents.astype(np.float32), y=y.astype(np.int64))


def _progress_state(names: list[str], cfg: SimConfig, rounds_done: int, phase: Phase) -> dict[str, Any]:
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
    from vaal_core.data.ingest import load_folder
    from vaal_core.data.scan import scan
    from vaal_core.learn.devices import resolve_device

    t_start = time.perf_counter()
    image_root, out = Path(image_root), Path(out)
    # 1. Check everything that can be checked before decoding.
    names, random_added = _sampler_list(tuple(cfg.samplers))
    _check_config(cfg)
    device = resolve_device(cfg.device)
    scanned = [posixpath.basename(posixpath.dirname(rel)) or None for rel, _ in scan(image_root).files]
    classes, _ = class_names(scanned, image_root)
    split_rows(class_targets(scanned, classes), cfg)  # sizes, with every scanned file counted
    if out.is_dir():  # refused before any work, not after the rounds at the write
        raise BadInput(f"{out} is a folder; give a file for the results, e.g. {out / 'results.json'}")
    latents_path = out.with_suffix(".latents.npz")
    # An earlier run's files must not pass for this one's while it decodes
    # (a poller reads "no JSON yet" as "starting").
    for stale in (out, out.with_suffix(".html"), latents_path):
        stale.unlink(missing_ok=True)

    # 2. Decode, then split for real (files may have been skipped).
    images, paths, golds, skipped = load_folder(image_root, cfg.image_size, progress=progress)
    classes, at_root = class_names(golds, image_root)
    y = class_targets(golds, classes)
    pool, test = split_rows(y, cfg)
    data = _Data(images, y, pool, test, classes)
    engine = replace(engine_config(cfg.image_size, cfg.fast), accel=cfg.accel)
    # The map's latents: seed 0 of the first sampler that trains a VAE, at its last round.
    map_sampler = next((n for n in names if pipeline.trains_vae(samplers.get(n).needs)), None)

    result: dict[str, Any] = {
        "complete": False, "error": None, "progress": _progress_state(names, cfg, 0, Phase.START),
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
                  "round_0": "picked = the random initial set (same for every sampler of a seed); with init 0 it is "
                             "empty, accuracy is null, and the sampler picks round 1's labels",
                  "accuracy": "accuracy = the classifier config.evaluate names: own (the sampler's own, warm "
                              "across rounds) or common (a plain classifier trained fresh on the labeled set, "
                              "the same for every sampler); with 'both', accuracy is own and common_accuracy "
                              "the common one, summarised in summary_common",
                  "efficiency": "labels each sampler needed to reach random's final mean accuracy, per seed "
                                "(null: not reached), with mean and std over the seeds that reached it",
                  "sampler_used": "the sampler that picked this round's batch (a policy such as auto names "
                                  "another each round, and a sampler that cannot use the labels yet hands the round to "
                                  "its cold start: why says which and why)",
                  "overlap": "share of picks two samplers have in common (first_batch: round 1, from the "
                             "same labeled set; all_picks: everything after the initial set); two random "
                             "batches share about overlap_by_chance of round 1",
                  "timings": "train_s: VAE/discriminator training for the round's picks; select_s: the "
                             "VAE's pass over the pool, scoring and selection of them; task_s: the round's "
                             "classifier training (with LL4AL's loss head for the samplers that use it, "
                             "warm-started from the run's previous round), its pass over the pool and its "
                             "test evaluation",
                  "progress": "current = the round playing now (null when all are done); phase: one of "
                              "vaal_core.progress.Phase (start, task, predict, train, score, select, map, "
                              "chart, done, stopped, failed)",
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

    def save(phase: Phase) -> None:
        result["progress"] = _progress_state(names, cfg, rounds_done, phase)
        result["seconds"] = round(time.perf_counter() - t_start, 2)
        write_json_atomic(out, result, indent=1)

    def tracked(event: Event) -> None:
        # A new phase of the round playing now is worth a write (a poller
        # shows "seed 1, vaal, round 3: training"); iteration ticks are not.
        now, v = result["progress"]["current"], event.values
        if (now and not v.get("done") and (v.get("seed"), v.get("sampler"), v.get("round"))
                == (now["seed"], now["sampler"], now["round"]) and event.phase != result["progress"]["phase"]):
            save(event.phase)
        if progress is not None:
            progress(event)

    save(Phase.START)
    # Fresh producer runs on the same inputs, shared by every sampler (and, for the feature
    # space, which reads no label, by every seed).
    shared: dict = {}
    # 3. Every seed: one initial set, then every sampler from it.
    try:
        for seed in range(cfg.seeds):
            initial = np.random.default_rng(seed).choice(pool, cfg.init, replace=False)
            for name in names:
                run = _Run(seed, samplers.get(name))

                def on_round(record: dict[str, Any], run: _Run = run) -> None:
                    nonlocal rounds_done
                    result["results"][run.sampler.name].setdefault(str(run.seed), []).append(record)
                    rounds_done += 1
                    if ((run.seed, run.sampler.name, record["round"]) == (0, map_sampler, cfg.rounds)
                            and run.latents is not None):  # none when every pick came from a cold start
                        _write_latents(latents_path, data.pool, run.latents, data.y[data.pool])
                        result["latents_file"] = latents_path.name  # only once the file is there
                    result["summary"] = summarize(result["results"])
                    if cfg.evaluate == "both":
                        result["summary_common"] = summarize(result["results"], key="common_accuracy")
                    result["efficiency"] = label_efficiency(result["results"])
                    result["overlap"] = overlap(result["results"])
                    result["headline"] = headline(result["summary"], result["results"], len(test))
                    save(Phase.START if rounds_done < result["progress"]["rounds_total"] else Phase.CHART)

                _play(run, data, initial, cfg, engine, device, shared, tracked, on_round)
    except KeyboardInterrupt:  # stopped by the user (Ctrl-C, or the app's Stop: SIGTERM): not a failure
        result["stopped"] = True
        with contextlib.suppress(OSError):
            save(Phase.STOPPED)
        raise
    except BaseException as e:  # noqa: BLE001 - recorded for the poller, then re-raised
        result["error"] = str(e) or type(e).__name__
        with contextlib.suppress(OSError):  # a full disk must not hide the real error
            save(Phase.FAILED)
        raise

    # 4. The map of the picks (in this worker, so the page never waits on
    # UMAP), then the final write and chart.
    if cfg.map and result["latents_file"]:
        from vaal_core.maps.cache import cached_projection_of

        save(Phase.MAP)
        cached_projection_of(latents_path, seed=0)
        result["map_ready"] = True
    result["complete"] = True
    write_chart(result, out.with_suffix(".html"))
    save(Phase.DONE)
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
