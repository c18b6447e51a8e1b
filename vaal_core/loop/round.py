"""One active-learning round on a project: train what the sampler needs,
score the unlabeled pool, write the ranked queue and the task model's label
suggestions.

The learning itself is `learn.pipeline` (shared with the simulation); this
module adds what a project has and a simulation has not: the store, the
training lock, checkpoints on disk, a validation slice of the user's labels,
live progress other processes can poll, and cancellation from the app.

The task model (a classifier on the labeled set, warm-started from the last
round) trains whenever the labels allow it (two classes or more), both for
the task-aware samplers and for the Label page's suggestions; a fixed slice
of the labels is held out of its training to estimate its accuracy and to
fit the temperature that calibrates the suggestions' confidence
(`learn/calibration.py`). When the round has the project's feature space,
the suggestions combine the task model with a linear probe on it
(`learn/probe.py`), measured and calibrated on the same slice.

A small share of each batch (`RoundConfig.audit`, 5% by default) is drawn
at random instead of by the sampler, so the suggestions' accuracy can be
estimated honestly on the user's own labels (`loop/audit.py`).

The queue only changes when a round finishes: scores and the 'done' mark are
written in one transaction, so a failed, cancelled or crashed round leaves the
previous queue in place.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaal_core import samplers
from vaal_core.config import AccelConfig, EngineConfig, engine_config
from vaal_core.errors import BadInput, RoundCancelled, VaalError, cannot_write
from vaal_core.learn import calibration, pipeline
from vaal_core.learn.devices import check_device_name, check_precision, pick
from vaal_core.learn.distributed import SINGLE, Dist, rank_lost
from vaal_core.loop import round_files
from vaal_core.loop.audit import DEFAULT_FRACTION, audit_rng, swap_in_audit
from vaal_core.progress import Event, Phase, Progress, Throttle, announce
from vaal_core.store import Project

if TYPE_CHECKING:
    from vaal_core.learn.checkpoints import CheckpointDir


@dataclass(frozen=True)
class RoundConfig:
    sampler: str = "auto"  # a sampler, or a policy that picks one each round
    budget: int | None = None  # None: 5% of the items, as the VAAL paper's CIFAR budget
    seed: int = 0
    device: str = "auto"
    fast: bool = False
    fresh: bool = False  # ignore the previous round's weights
    suggest: bool = True  # train the task model for label suggestions even when the sampler needs none
    # ImageNet ResNet-18/50 weights (torchvision): the feature space of typiclust/probcover/auto, and,
    # for a ResNet-18 file and full-size models, the task model's first (cold) start
    pretrained: str | None = None
    audit: float = DEFAULT_FRACTION  # share of the batch drawn at random instead (loop/audit.py); 0: none
    accel: AccelConfig = field(default_factory=AccelConfig)  # precision, memory layout, ... (learn/accel.py)


@dataclass
class RoundResult:
    round_id: int
    sampler: str
    budget: int
    queue: list[dict[str, Any]]
    timings: dict[str, float]
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_budget(n_items: int) -> int:
    return max(1, round(0.05 * n_items))


def check_round(project: Project, cfg: RoundConfig, devices: dict[str, Any] | None = None) -> int:
    """Everything about a round request that can be checked without training
    (sampler, device, seed, budget against the pool, audit, the weights
    file's path): raises UnknownSampler, BadInput or BudgetTooLarge, else
    returns the budget the round will use.
    The app calls it before starting a worker so mistakes show at once; it
    passes `devices` (a `devices.probe` answer) to check the device without
    loading PyTorch itself."""
    choose_sampler(project, cfg)  # an unknown sampler name stops here
    check_device_name(cfg.device)
    check_precision(cfg.accel.precision, cfg.device)
    if devices is not None:
        pick(cfg.device, devices)
    n_items, _ = project.item_count()
    if not n_items:
        raise BadInput(f"project {project.root} has no images; add some with "
                       f"python -m vaal_core init {project.root} --images DIR")
    if not (isinstance(cfg.seed, numbers.Integral) and 0 <= cfg.seed < 2 ** 32):
        raise BadInput(f"seed must be a whole number from 0 to {2 ** 32 - 1}, got {cfg.seed}; e.g. --seed 0")
    n_pool = n_items - len(project.labeled_ids())
    if not n_pool:
        raise BadInput(f"every image of project {project.root} is labeled: there is nothing left to rank; add "
                       f"images with python -m vaal_core init {project.root} --images {project.image_root}")
    budget = cfg.budget if cfg.budget is not None else min(default_budget(n_items), n_pool)
    samplers.check_budget(budget, n_pool)
    if cfg.pretrained is not None and not Path(cfg.pretrained).expanduser().is_file():
        what = "is a folder, not a file" if Path(cfg.pretrained).expanduser().is_dir() else "does not exist"
        raise BadInput(f"pretrained weights file {cfg.pretrained} {what}; give the path of a "
                       "torchvision ResNet-18 or ResNet-50 state dict (.pth) on this machine")
    if not 0 <= cfg.audit < 0.5:  # also refuses NaN
        raise BadInput(f"audit fraction must be at least 0 and below 0.5, got {cfg.audit}; "
                       "use e.g. --audit 0.05 (5% of the batch), or 0 for no random audit picks")
    return budget


def slow_on_cpu(cfg: RoundConfig) -> bool:
    """Whether the round would train reference-size models on a CPU, which
    takes hours (bench/engine.py: about 0.2 iterations/s on 2 cores): worth
    saying before starting rather than after."""
    from vaal_core.learn.devices import resolve_device

    needs_training = samplers.get(cfg.sampler).needs or cfg.suggest
    return bool(needs_training) and not cfg.fast and resolve_device(cfg.device).type == "cpu"


def choose_sampler(project: Project, cfg: RoundConfig) -> samplers.Resolved:
    """The sampler this round runs: `cfg.sampler` itself, or the one a policy
    (`auto`) chooses for the project's labels now."""
    per_class = project.status()["per_class"]
    n_labeled = sum(per_class.values())
    return samplers.resolve(cfg.sampler, n_labeled, len(per_class), sum(1 for n in per_class.values() if n))


def held_out(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Which items belong to the validation slice: a fixed hash of the item
    id (Knuth's multiplicative hash), so the slice is the same every round
    and an image once held out was never trained on by a warm-started model."""
    h = (np.asarray(item_ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
    return h < np.uint64(int(fraction * 2 ** 32))


def run_round(project: Project, cfg: RoundConfig, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None, dist: Dist = SINGLE) -> RoundResult | None:
    """Run one round; raises WorkerBusy if another process is training this
    project, BadInput/BudgetTooLarge/UnknownSampler before touching anything
    (no round row), TrainingDiverged/RoundCancelled/CannotWrite (a full disk)
    after marking the round failed/cancelled and dropping the models it
    saved: only a finished round's checkpoints are moved in for the next.
    Besides `should_stop`, a cancel asked for through the store
    (`Project.request_cancel`, e.g. by the app) stops the round.

    On several processes (torchrun; `dist`, learn/distributed.py) rank 0
    runs the round as above and hands the others what it read from the store
    (the round's data, needs and settings); they train and score with it and
    return None. A rank that stops fails the round (RankFailed)."""
    if not dist.main:
        _follow(project, cfg, dist)
        return None
    told = []  # whether the other ranks have been handed the round

    def hand_over(plan: dict[str, Any]) -> None:
        told.append(True)
        dist.broadcast(plan)

    try:
        return _lead(project, cfg, progress, should_stop, dist, hand_over)
    finally:
        if dist.on and not told:
            dist.broadcast(None)  # refused before any training: the other ranks have nothing to do


def _follow(project: Project, cfg: RoundConfig, dist: Dist) -> None:
    """A rank other than 0: rank 0's round data, trained and scored on this
    rank's share; nothing written."""
    from vaal_core.data.cache import open_cache
    from vaal_core.learn.checkpoints import CheckpointDir, ReadOnly
    from vaal_core.learn.devices import resolve_device

    plan = dist.broadcast(None)
    if plan is None:
        return
    data = replace(plan["data"], images=open_cache(project) if plan["needs"] else None)
    models = ReadOnly(CheckpointDir(project.checkpoint_dir, cfg.fresh))
    job = pipeline.Job(data, plan["engine"], dist.device(resolve_device(cfg.device)), cfg.seed, models,
                       pretrained=plan["task_weights"], feature_weights=plan["weights"], dist=dist)
    try:
        pipeline.produce(plan["needs"], job)
    except Exception as err:  # rank 0 gone: one line, as rank 0 says it (rank 0 records the round)
        lost = rank_lost(err, dist)
        if lost is None:
            raise
        raise lost from err


def _lead(project: Project, cfg: RoundConfig, progress: Progress | None, should_stop: Callable[[], bool] | None,
          dist: Dist, hand_over: Callable[[dict[str, Any]], None]) -> RoundResult:
    from vaal_core.data.cache import open_cache
    from vaal_core.learn.checkpoints import CheckpointDir, settle
    from vaal_core.learn.devices import resolve_device
    from vaal_core.learn.features import load_imagenet_backbone

    # 1. Check the request before any work: a request refused here leaves no round behind.
    device = dist.device(resolve_device(cfg.device))
    budget = check_round(project, cfg)
    chosen = choose_sampler(project, cfg)
    sampler = chosen.sampler
    engine = replace(engine_config(project.image_size, cfg.fast), accel=cfg.accel)
    weights = Path(cfg.pretrained).expanduser() if cfg.pretrained else None
    if weights is not None:
        load_imagenet_backbone(weights)  # a file that holds no ResNet's weights is refused now

    with project.training_lock():
        # Only a finished round's models warm-start this one: tidy what killed rounds left.
        settle(project.checkpoint_dir, lambda earlier: _finished(project, earlier))
        labels = project.training_labels()  # conflicts between annotators left out until resolved
        round_id = project.start_round(sampler.name, budget, cfg.seed, {
            "round": asdict(cfg), "engine": asdict(engine), "needs": sorted(sampler.needs)})
        models = CheckpointDir(project.checkpoint_dir, cfg.fresh, round_id)  # moved in when the round is done
        needs = set(sampler.needs)
        if cfg.suggest and len(set(labels.values())) >= 2:
            needs.add("task_probs")  # the Label page's suggestions
            # ... with a linear probe on the feature space when the round has one: its sampler picks
            # in it (auto's while labels are few), or an earlier round's is kept (reused as it is
            # while the images stay the same, refreshed when images were added, as for the samplers).
            # A first feature space is never made for the suggestions alone.
            if "features" in needs or models.has("features"):
                needs.add("suggest_probs")
        reporter = RoundProgress(project, round_id, [*pipeline.phases(needs), Phase.SELECT], progress, should_stop)
        try:
            data = _round_data(project, engine, labels, open_cache(project) if needs else None)
            task_weights = weights if engine.task.arch == "resnet18" else None
            if dist.on:  # the other ranks learn from exactly what this one read
                hand_over({"data": replace(data, images=None), "needs": sorted(needs), "engine": engine,
                           "weights": weights, "task_weights": task_weights})
            # 2. Train and compute what the sampler needs (the task model
            #    first: TA-VAAL's VAE is conditioned on it), warm from the
            #    last round's checkpoints.
            job = pipeline.Job(data, engine, device, cfg.seed, models, reporter, reporter.stop, task_weights,
                               feature_weights=weights, tag={"round_id": round_id}, dist=dist)
            made = pipeline.produce(needs, job)
            metrics: dict[str, Any] = {"n_labeled": int(data.labeled.sum()), "n_pool": int((~data.labeled).sum()),
                                       "class_counts": _class_counts(project, labels), **made.metrics}
            metrics.setdefault("device", str(device))  # the VAE game records its own; say it for every round
            if chosen.why:  # a policy chose the sampler: which, and why, for the Train page
                metrics["policy"] = {"name": chosen.asked, "chose": sampler.name, "why": chosen.why}
            if "task" in metrics:
                metrics["task"]["how"] = _how_measured(metrics["task"], int(data.labeled.sum()), engine)
            # 3. Score and select.
            announce(reporter, Phase.SELECT)
            t0 = time.perf_counter()
            pool_ids, labeled_ids = data.item_ids[~data.labeled], data.item_ids[data.labeled]
            sel = samplers.select(sampler.name, data.item_ids, made.values, pool_ids, labeled_ids, budget,
                                  np.random.default_rng(cfg.seed), n_classes=len(data.classes))
            timings = {**made.timings, "select_s": round(time.perf_counter() - t0, 3)}
            timings["total_s"] = round(sum(timings.values()), 3)
            metrics.update(sel.notes)
            # The audit: the sampler's last picks give way to uniformly random ones from the rest of
            # the pool, spread through the batch (none for batches under audit.MIN_BATCH).
            batch, audit_ids = swap_in_audit(sel.ids, sel.pool_ids, cfg.audit, audit_rng(cfg.seed, round_id))
            ranks = {item: k for k, item in enumerate(batch, start=1)}
            metrics["audit"] = {"fraction": cfg.audit, "n": len(audit_ids), "ids": audit_ids}
            if reporter.curve:
                metrics["curve"] = reporter.curve
            # 4. Keep a space to map for the Explore page (the VAE's latents; else the feature space
            # typiclust and probcover picked in), then swap the queue in.
            space, kind = made.latent_space(), "vae"
            if space is None and made.values.get("features") is not None:
                space, kind = (made.values["features"], None), "features"
            if space is not None:
                metrics["map_space"] = kind
            round_files.save_space(project.round_dir(round_id), data.item_ids, space)
            if made.values.get("latents") is not None:  # VAAL's VAE: what it draws of each image picked
                round_files.save_reconstructions(project.round_dir(round_id), models, round_id, data.item_ids,
                                                  made.values["latents"], batch)
            suggestions, probs = None, made.values.get("suggest_probs")
            if probs is None:
                probs = made.values.get("task_probs")
            if probs is not None:
                suggestions = _suggestions(probs[~data.labeled], data.classes,  # aligned with pool_ids = sel.pool_ids
                                           calibration.suggester(metrics))
            project.finish_round(round_id, sel.pool_ids, sel.scores, [ranks.get(int(i)) for i in sel.pool_ids],
                                 len(labeled_ids), timings, metrics, suggestions, audit=audit_ids)
        except RoundCancelled as err:
            _end(project, models, round_id, str(err), status="cancelled")
            raise
        except VaalError as err:  # diverged, the disk refused a write, a damaged cache, ...
            _end(project, models, round_id, str(err))
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from the app (see cli.main)
            if dist.on:  # torchrun stops every rank when one of them failed
                _end(project, models, round_id, f"stopped: torchrun ended this {dist.world}-process round (one of "
                                                "its processes failed, or it was interrupted); the previous queue "
                                                "is kept")
                raise
            _end(project, models, round_id, "stopped: the training process was interrupted; the previous "
                                            "queue is kept", status="cancelled")
            raise
        except OSError as err:  # a full disk, a read-only folder: in words
            words = cannot_write(err, Path(err.filename).parent if err.filename else project.root)
            _end(project, models, round_id, str(words) if words else f"{type(err).__name__}: {err}")
            if words is None:
                raise
            raise words from err
        except BaseException as err:  # keep the old queue and say why, whatever broke
            lost = rank_lost(err, dist)
            _end(project, models, round_id, str(lost) if lost else f"{type(err).__name__}: {err}")
            if lost:
                raise lost from err
            raise
        models.commit()
    project.log_event("round", {"round_id": round_id, "sampler": sampler.name, "budget": budget})
    return RoundResult(round_id, sampler.name, budget, project.queue(), timings, metrics)


def _finished(project: Project, round_id: int) -> bool:
    try:
        return project.round(round_id)["status"] == "done"
    except BadInput:  # no such round
        return False


def _end(project: Project, models: CheckpointDir, round_id: int, error: str, status: str = "failed") -> None:
    """Mark the round failed (or cancelled) and forget its models. If the
    store cannot record it (the disk is still full), the error that stopped
    the round is the one to report: the row stays 'running', which status
    shows as interrupted, and the next round marks it failed."""
    models.discard()
    try:
        project.fail_round(round_id, error, status)
    except VaalError:
        pass


def _round_data(project: Project, engine: EngineConfig, labels: dict[int, str],
                images: np.ndarray | None) -> pipeline.RoundData:
    """Every present item, with the labels as they are now and the
    validation slice held out of the task model's training."""
    items = project.items()
    classes = project.classes()
    index = {c: i for i, c in enumerate(classes)}
    item_ids = np.array([it.id for it in items], dtype=np.int64)
    rows = np.array([it.cache_index for it in items], dtype=np.int64)
    targets = np.array([index[labels[it.id]] if it.id in labels else -1 for it in items], dtype=np.int64)
    labeled = targets >= 0
    val = labeled & held_out(item_ids, engine.task.val_fraction)
    if (labeled.sum() < engine.task.min_labels_for_val or len(set(targets[labeled & ~val].tolist())) < 2
            or not val.any()):
        val[:] = False  # too few labels to spare some: all of them train the model
    return pipeline.RoundData(images, item_ids, rows, labeled, targets, classes, task_train=labeled & ~val,
                              eval_rows=rows[val], eval_targets=targets[val])


def _how_measured(task: dict[str, Any], n_labels: int, engine: EngineConfig) -> str:
    if task["n_val"]:
        return (f"accuracy on {task['n_val']} of your {n_labels} labels, held out of training (a fixed "
                f"{engine.task.val_fraction:.0%} slice, the same images every round); the samplers chose most of "
                "them, so they are not a random sample of the folder and the estimate may be off either way")
    return (f"no estimate: {n_labels} labels are too few to hold some out (it takes at least "
            f"{engine.task.min_labels_for_val}, with 2 classes left to train on); all of them trained the model")


def _suggestions(probs: np.ndarray, classes: list[str], made_by: dict[str, Any]) -> list[tuple[str, float]]:
    """Each pool image's suggested class and the confidence the Label page
    shows: the probabilities (the task model's, or combined with the linear
    probe's) scaled by the temperature fitted to them (the stored, rounded
    one, so the confidence can be recomputed from the round's record); as
    they are when too few labels were held out to fit one. The samplers keep
    reading the task model's raw softmax (`task_probs`), which is what they
    were benchmarked on."""
    fitted = calibration.of_round({"task": made_by})
    if fitted.calibrated:
        probs = calibration.scale(probs, fitted.temperature)
    return [(classes[int(k)], float(p)) for k, p in zip(probs.argmax(1), probs.max(1))]


def _class_counts(project: Project, labels: dict[int, str]) -> dict[str, int]:
    """Labels per class when the round started, for the round history."""
    counts = {name: 0 for name in project.classes()}
    for name in labels.values():
        counts[name] = counts.get(name, 0) + 1
    return counts


class RoundProgress:
    """The round's progress: forwarded to the caller and, at most twice a
    second (and at every phase's start and end), written to the round's row
    for other processes (the app) to poll, as {"phase", "plan" (every phase
    this round goes through, in order), "phases" (each one's latest event),
    "curve"}. Keeps a thinned loss curve of the VAE/discriminator game (at
    most CURVE_POINTS points) for the live chart and the round's history,
    and reads the store's cancel flag at the same pace."""

    CURVE_POINTS = 240

    def __init__(self, project: Project, round_id: int, plan: list[Phase], progress: Progress | None,
                 should_stop: Callable[[], bool] | None):
        self.project, self.round_id, self.progress, self.should_stop = project, round_id, progress, should_stop
        self.state: dict[str, Any] = {"phase": Phase.START.value, "plan": [p.value for p in plan], "phases": {}}
        self.curve: list[dict[str, float]] = []
        self._write, self._check = Throttle(0.5), Throttle(0.5)
        self._cancelled = False

    def __call__(self, event: Event) -> None:
        if self.progress is not None:
            self.progress(event)
        new_phase = event.phase.value != self.state["phase"]
        self.state["phase"] = event.phase.value
        self.state["phases"][event.phase.value] = event.to_dict()
        if event.phase is Phase.TRAIN and "vae_loss" in event.values:
            self.curve.append({"iteration": event.done, **{k: event.values[k] for k in
                                                           ("vae_loss", "disc_loss", "mse", "kl")
                                                           if k in event.values}})
            if len(self.curve) > self.CURVE_POINTS:  # keep every other point: even coverage, bounded size
                self.curve = self.curve[::2]
        if self._write.ready(force=new_phase or event.finished):
            self.project.set_progress(self.round_id, {**self.state, "curve": self.curve})

    def stop(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            return True
        if not self._cancelled and self._check.ready():
            self._cancelled = self.project.cancel_requested(self.round_id)
        return self._cancelled
