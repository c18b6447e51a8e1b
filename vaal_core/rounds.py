"""One active-learning round on a project: train what the sampler needs,
score the unlabeled pool, write the ranked queue and the task model's label
suggestions.

The task model (a classifier on the labeled set, warm-started from the last
round) trains whenever the labels allow it (two classes or more), both for
the task-aware samplers and for the Label page's suggestions; a fixed slice
of the labels is held out of its training to estimate its accuracy.

The queue only changes when a round finishes: scores and the 'done' mark are
written in one transaction, so a failed, cancelled or crashed round leaves the
previous queue in place.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaal_core import samplers
from vaal_core.config import EngineConfig, engine_config
from vaal_core.errors import BadInput, RoundCancelled, TrainingDiverged
from vaal_core.project import Project

Progress = Callable[[dict[str, Any]], None]
CHECKPOINT = "vaal.pt"
TA_CHECKPOINT = "ta_vaal.pt"  # TA-VAAL's VAE/discriminator take one more input: never mixed with VAAL's
TASK_CHECKPOINT = "task.pt"


@dataclass(frozen=True)
class RoundConfig:
    sampler: str = "vaal"
    budget: int | None = None  # None: 5% of the items, as the VAAL paper's CIFAR budget
    seed: int = 0
    device: str = "auto"
    fast: bool = False
    fresh: bool = False  # ignore the previous round's weights
    suggest: bool = True  # train the task model for label suggestions even when the sampler needs none
    pretrained: str | None = None  # torchvision ResNet-18 weights for the task model's first (cold) start


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


def _load_checkpoint(path: Path, vae_cfg, models, device) -> bool:
    """Warm start: load the previous round's VAE and discriminator if they
    were built with the same architecture. Returns whether it did."""
    import torch

    if not path.is_file():
        return False
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("vae_config") != asdict(vae_cfg):
        return False
    models.vae.load_state_dict(state["vae"])
    models.disc.load_state_dict(state["disc"])
    models.opt_vae.load_state_dict(state["opt_vae"])
    models.opt_disc.load_state_dict(state["opt_disc"])
    return True


def _save_checkpoint(path: Path, engine: EngineConfig, vae_cfg, models, round_id: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"vae": models.vae.state_dict(), "disc": models.disc.state_dict(),
                "opt_vae": models.opt_vae.state_dict(), "opt_disc": models.opt_disc.state_dict(),
                "vae_config": asdict(vae_cfg), "train_config": asdict(engine.train),
                "round_id": round_id}, tmp)
    tmp.replace(path)  # never a half-written checkpoint


def check_round(project: Project, cfg: RoundConfig) -> int:
    """Everything about a round request that can be checked without training
    (sampler, device, budget against the pool): raises UnknownSampler,
    BadInput or BudgetTooLarge, else returns the budget the round will use.
    The app calls it before starting a worker so mistakes show at once."""
    from vaal_core.train import resolve_device

    samplers.get(cfg.sampler)
    resolve_device(cfg.device)
    n_items, _ = project.item_count()
    if not n_items:
        raise BadInput(f"project {project.root} has no images; add some with "
                       f"python -m vaal_core init {project.root} --images DIR")
    n_pool = n_items - len(project.labeled_ids())
    budget = cfg.budget if cfg.budget is not None else min(default_budget(n_items), n_pool)
    samplers.check_budget(budget, n_pool)
    sampler = samplers.get(cfg.sampler)
    if sampler.needs & samplers.TASK_NEEDS:
        per_class = {c: n for c, n in project.status()["per_class"].items() if n}
        if len(per_class) < 2:
            have = ", ".join(f"{c} ({n})" for c, n in per_class.items()) or "none"
            raise BadInput(f"sampler {cfg.sampler!r} ranks images with a task model, which needs labels of at "
                           f"least 2 classes (labeled so far: {have}); label a few images of another class, "
                           "or use vaal, coreset or random for this round")
    if cfg.pretrained is not None:
        if cfg.fast:
            raise BadInput("--pretrained loads ResNet-18 weights, but --fast uses a small CNN; drop --fast")
        if not Path(cfg.pretrained).expanduser().is_file():
            raise BadInput(f"pretrained weights file {cfg.pretrained} does not exist; give the path of a "
                           "torchvision ResNet-18 state dict (.pth) on this machine")
    return budget


def run_round(project: Project, cfg: RoundConfig, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> RoundResult:
    """Run one round; raises WorkerBusy if another process is training this
    project, BadInput/BudgetTooLarge/UnknownSampler before touching anything,
    TrainingDiverged/RoundCancelled after marking the round failed/cancelled.
    Besides `should_stop`, a cancel asked for through the store
    (`Project.request_cancel`, e.g. by the app) stops the round."""
    from vaal_core.ingest import open_cache

    # 1. Check the request before any work.
    budget = check_round(project, cfg)
    sampler = samplers.get(cfg.sampler)
    items = project.items()
    labels = project.labels()
    all_ids = np.array([it.id for it in items], dtype=np.int64)
    cache_rows = np.array([it.cache_index for it in items], dtype=np.int64)
    is_labeled = np.array([it.id in labels for it in items])
    pool_ids, labeled_ids = all_ids[~is_labeled], all_ids[is_labeled]
    engine = engine_config(project.image_size, cfg.fast)

    with project.training_lock():
        round_id = project.start_round(sampler.name, budget, cfg.seed, {
            "round": asdict(cfg), "engine": asdict(engine), "needs": sorted(sampler.needs)})
        reporter = _DbProgress(project, round_id, progress)
        stop = reporter.stop_check(should_stop)
        try:
            # 2. Train what the sampler needs, warm-starting from last round:
            #    the task model first (TA-VAAL's VAE is conditioned on it).
            timings: dict[str, float] = {}
            metrics: dict[str, Any] = {"n_labeled": int(len(labeled_ids)), "n_pool": int(len(pool_ids)),
                                       "class_counts": _class_counts(project, labels)}
            ctx = samplers.Context(item_ids=all_ids, rng=np.random.default_rng(cfg.seed))
            images = open_cache(project) if sampler.needs or cfg.suggest else None
            task_out = None
            if sampler.needs & samplers.TASK_NEEDS or (cfg.suggest and len(set(labels.values())) >= 2):
                task_out = _train_task_model(project, engine, cfg, sampler, images, all_ids, cache_rows, labels,
                                             timings, metrics, reporter, stop)
                ctx.extras["task_probs"] = task_out.probs
                if task_out.pred_loss is not None:
                    ctx.extras["pred_loss"] = task_out.pred_loss
                if task_out.mc_probs is not None:
                    ctx.extras["task_mc"] = task_out.mc_probs
                ctx.extras["ll4al_subset"] = engine.task.loss_subset
            if sampler.needs & {"latents", "disc"}:
                ranker = None
                if "pred_loss" in sampler.needs:  # TA-VAAL: r by cache row
                    ranker = np.zeros(len(images), dtype=np.float32)
                    ranker[cache_rows] = task_out.pred_loss
                ctx.latents, ctx.disc_prob = _train_and_score(
                    project, engine, cfg, images, cache_rows, is_labeled, timings, metrics, reporter, stop, ranker)
            # 3. Score and select.
            reporter({"phase": "select"})
            t0 = time.perf_counter()
            sel = samplers.select(sampler.name, ctx, pool_ids, labeled_ids, budget)
            timings["select_s"] = round(time.perf_counter() - t0, 3)
            metrics.update(ctx.notes)
            # 4. Keep the latents for the Explore page, then swap the queue in.
            if ctx.latents is not None:
                out = project.round_dir(round_id)
                out.mkdir(parents=True, exist_ok=True)
                np.save(out / "item_ids.npy", all_ids)
                np.save(out / "latents.npy", ctx.latents.astype(np.float32))
                if ctx.disc_prob is not None:
                    np.save(out / "disc_prob.npy", ctx.disc_prob.astype(np.float32))
            timings["total_s"] = round(sum(v for k, v in timings.items()), 3)
            if reporter.curve:
                metrics["curve"] = reporter.curve
            suggestions = None
            if task_out is not None:
                classes = project.classes()
                probs = task_out.probs[ctx.rows(sel.pool_ids)]
                suggestions = [(classes[int(k)], float(p)) for k, p in zip(probs.argmax(1), probs.max(1))]
            project.finish_round(round_id, sel.pool_ids, sel.scores,
                                 [int(r) if r else None for r in sel.ranks], int(len(labeled_ids)),
                                 timings, metrics, suggestions)
        except RoundCancelled as err:
            project.fail_round(round_id, str(err), status="cancelled")
            raise
        except TrainingDiverged as err:
            project.fail_round(round_id, str(err))
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from the app (see cli.main)
            project.fail_round(round_id, "stopped: the training process was interrupted; the previous "
                                         "queue is kept", status="cancelled")
            raise
        except BaseException as err:  # keep the old queue and say why, whatever broke
            project.fail_round(round_id, f"{type(err).__name__}: {err}")
            raise
    project.log_event("round", {"round_id": round_id, "sampler": sampler.name, "budget": budget})
    return RoundResult(round_id, sampler.name, budget, project.queue(), timings, metrics)


def _train_and_score(project: Project, engine: EngineConfig, cfg: RoundConfig, images: np.ndarray,
                     cache_rows: np.ndarray, is_labeled: np.ndarray, timings: dict[str, float],
                     metrics: dict[str, Any], reporter: "_DbProgress",
                     should_stop: Callable[[], bool] | None, ranker: np.ndarray | None = None):
    from vaal_core import train

    device = train.resolve_device(cfg.device)
    vae_cfg = engine.vae if ranker is None else replace(engine.vae, cond_dim=1)
    models = train.build_vaal(vae_cfg, engine.train, device, cfg.seed)
    ckpt = project.checkpoint_dir / (CHECKPOINT if ranker is None else TA_CHECKPOINT)
    warm = not cfg.fresh and _load_checkpoint(ckpt, vae_cfg, models, device)
    iterations = engine.train.iterations(int((~is_labeled).sum()), warm)
    metrics.update({"device": str(device), "warm_start": warm, "iterations": iterations})
    t0 = time.perf_counter()
    metrics["losses"] = train.train_vaal(models, images, cache_rows[is_labeled], cache_rows[~is_labeled],
                                         engine.train, iterations, device, cfg.seed, reporter, should_stop,
                                         ranker=ranker)
    timings["train_s"] = round(time.perf_counter() - t0, 3)
    reporter({"phase": "score"})
    t0 = time.perf_counter()
    latents = train.encode(models.vae, images, cache_rows, device)
    disc_prob = (train.discriminate(models.disc, latents, device, None if ranker is None else ranker[cache_rows])
                 if is_labeled.any() else None)
    timings["score_s"] = round(time.perf_counter() - t0, 3)
    _save_checkpoint(ckpt, engine, vae_cfg, models, reporter.round_id)
    return latents, disc_prob


def held_out(item_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Which items belong to the validation slice: a fixed hash of the item
    id (Knuth's multiplicative hash), so the slice is the same every round
    and an image once held out was never trained on by a warm-started model."""
    h = (np.asarray(item_ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2 ** 32)
    return h < np.uint64(int(fraction * 2 ** 32))


def _train_task_model(project: Project, engine: EngineConfig, cfg: RoundConfig, sampler: samplers.Sampler,
                      images: np.ndarray, all_ids: np.ndarray, cache_rows: np.ndarray, labels: dict[int, str],
                      timings: dict[str, float], metrics: dict[str, Any], reporter: "_DbProgress",
                      should_stop: Callable[[], bool] | None):
    """Train (warm) the task model on the labels minus the validation slice,
    measure it on that slice, and return its outputs for every item."""
    from vaal_core import train

    device = train.resolve_device(cfg.device)
    classes = project.classes()
    index = {c: i for i, c in enumerate(classes)}
    ids = np.array(sorted(labels), dtype=np.int64)
    ids = ids[np.isin(ids, all_ids)]
    at = {int(i): k for k, i in enumerate(all_ids)}
    where = np.array([at[int(i)] for i in ids], dtype=np.int64)  # each labeled item's position in all_ids
    targets = np.array([index[labels[int(i)]] for i in ids], dtype=np.int64)
    val = held_out(ids, engine.task.val_fraction)
    if len(ids) < engine.task.min_labels_for_val or len(set(targets[~val].tolist())) < 2 or not val.any():
        val[:] = False
    loss_head = "pred_loss" in sampler.needs
    model = train.new_task_model(len(classes), engine.task, device, cfg.seed, loss_head)
    warm, pretrained = _load_task_checkpoint(project, engine, classes, model, device, cfg), None
    if not warm and cfg.pretrained is not None:
        pretrained = _load_pretrained(model, Path(cfg.pretrained).expanduser())
    rows = cache_rows[where]
    t0 = time.perf_counter()
    last = train.train_task(model, images, rows[~val], targets[~val], engine.task, device, cfg.seed, reporter,
                            should_stop)
    timings["task_s"] = round(time.perf_counter() - t0, 3)
    reporter({"phase": "predict"})
    t0 = time.perf_counter()
    mc = engine.task.mc_samples if "task_mc" in sampler.needs else 0
    out = train.run_task(model, images, cache_rows, device, mc_samples=mc, seed=cfg.seed)
    timings["predict_s"] = round(time.perf_counter() - t0, 3)
    _save_task_checkpoint(project, engine, classes, model, reporter.round_id)
    n_val = int(val.sum())
    accuracy = None
    if n_val:
        pred = out.probs[where[val]].argmax(1)
        accuracy = float((pred == targets[val]).mean())
        how = (f"accuracy on {n_val} of your {len(ids)} labels, held out of training (a fixed "
               f"{engine.task.val_fraction:.0%} slice, the same images every round); the samplers chose most of "
               "them, so they are not a random sample of the folder and the estimate may be off either way")
    else:
        how = (f"no estimate: {len(ids)} labels are too few to hold some out (it takes at least "
               f"{engine.task.min_labels_for_val}, with 2 classes left to train on); all of them trained the model")
    metrics["task"] = {"arch": engine.task.arch, "accuracy": accuracy, "n_val": n_val,
                       "n_train": int((~val).sum()), "how": how, "warm_start": warm, "steps": last["steps"],
                       "loss_head": loss_head, "train_s": timings["task_s"],
                       "last_loss": last.get("task_loss"), "pretrained": pretrained}
    return out


def _task_signature(engine: EngineConfig, classes: list[str]) -> dict[str, Any]:
    """What must match for a warm start: the architecture and the class list
    (a reordered list changes what each output means)."""
    t = engine.task
    return {"arch": t.arch, "width": t.width, "image_size": engine.vae.image_size, "classes": list(classes)}


def _load_task_checkpoint(project: Project, engine: EngineConfig, classes: list[str], model, device,
                          cfg: RoundConfig) -> bool:
    import torch

    path = project.checkpoint_dir / TASK_CHECKPOINT
    if cfg.fresh or not path.is_file():
        return False
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("signature") != _task_signature(engine, classes):
        return False
    model.net.load_state_dict(state["net"])
    if model.head is not None and state.get("head") is not None:
        model.head.load_state_dict(state["head"])
    return True


def _save_task_checkpoint(project: Project, engine: EngineConfig, classes: list[str], model, round_id: int) -> None:
    import torch

    path = project.checkpoint_dir / TASK_CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"net": model.net.state_dict(), "head": None if model.head is None else model.head.state_dict(),
                "signature": _task_signature(engine, classes), "round_id": round_id}, tmp)
    tmp.replace(path)


def _load_pretrained(model, path: Path) -> dict[str, Any]:
    """A user's torchvision ResNet-18 weights (e.g. ImageNet) as the task
    model's starting point, from a local file only."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise BadInput(f"cannot read pretrained weights {path}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not hasattr(model.net, "load_backbone"):
        raise BadInput(f"{path} is not a ResNet-18 state dict")
    loaded, left = model.net.load_backbone(state)
    if loaded == 0:
        raise BadInput(f"{path} holds no tensor of a torchvision ResNet-18 (names and shapes do not match)")
    return {"file": str(path), "tensors_loaded": loaded, "left_fresh": left}


def _class_counts(project: Project, labels: dict[int, str]) -> dict[str, int]:
    """Labels per class when the round started, for the round history."""
    counts = {name: 0 for name in project.classes()}
    for name in labels.values():
        counts[name] = counts.get(name, 0) + 1
    return counts


class _DbProgress:
    """Forwards progress to the caller and, at most twice a second, to the
    round's row so other processes (the app) can poll it. Keeps a thinned
    loss curve (at most CURVE_POINTS points) for the live chart and the
    round's history, and reads the store's cancel flag at the same pace."""

    CURVE_POINTS = 240

    def __init__(self, project: Project, round_id: int, progress: Progress | None):
        self.project, self.round_id, self.progress = project, round_id, progress
        self.curve: list[dict[str, float]] = []
        self._last = 0.0
        self._last_check, self._cancelled = 0.0, False

    def __call__(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(info)
        if "iteration" in info and "vae_loss" in info:
            self._add_point(info)
        now = time.monotonic()
        if now - self._last >= 0.5 or info.get("iteration") == info.get("total") or "iteration" not in info:
            self._last = now
            self.project.set_progress(self.round_id, {**info, "curve": self.curve})

    def _add_point(self, info: dict[str, Any]) -> None:
        self.curve.append({k: info[k] for k in ("iteration", "vae_loss", "disc_loss", "mse", "kl")
                           if k in info})
        if len(self.curve) > self.CURVE_POINTS:  # keep every other point: even coverage, bounded size
            self.curve = self.curve[::2]

    def stop_check(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool]:
        def stop() -> bool:
            if should_stop is not None and should_stop():
                return True
            now = time.monotonic()
            if not self._cancelled and now - self._last_check >= 0.5:
                self._last_check = now
                self._cancelled = self.project.cancel_requested(self.round_id)
            return self._cancelled
        return stop


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
            "task_s": t.get("task_s"), "predict_s": t.get("predict_s"), "started": r["created_at"], "finished": r["finished_at"],
            "error": r["error"],
        })
    return rows
