"""One active-learning round on a project: train what the sampler needs,
score the unlabeled pool, write the ranked queue.

The queue only changes when a round finishes: scores and the 'done' mark are
written in one transaction, so a failed, cancelled or crashed round leaves the
previous queue in place.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vaal_core import samplers
from vaal_core.config import EngineConfig, engine_config
from vaal_core.errors import BadInput, RoundCancelled, TrainingDiverged
from vaal_core.project import Project

Progress = Callable[[dict[str, Any]], None]
CHECKPOINT = "vaal.pt"


@dataclass(frozen=True)
class RoundConfig:
    sampler: str = "vaal"
    budget: int | None = None  # None: 5% of the items, as the VAAL paper's CIFAR budget
    seed: int = 0
    device: str = "auto"
    fast: bool = False
    fresh: bool = False  # ignore the previous round's weights


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


def _load_checkpoint(path: Path, engine: EngineConfig, models, device) -> bool:
    """Warm start: load the previous round's VAE and discriminator if they
    were built with the same architecture. Returns whether it did."""
    import torch

    if not path.is_file():
        return False
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("vae_config") != asdict(engine.vae):
        return False
    models.vae.load_state_dict(state["vae"])
    models.disc.load_state_dict(state["disc"])
    models.opt_vae.load_state_dict(state["opt_vae"])
    models.opt_disc.load_state_dict(state["opt_disc"])
    return True


def _save_checkpoint(path: Path, engine: EngineConfig, models, round_id: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"vae": models.vae.state_dict(), "disc": models.disc.state_dict(),
                "opt_vae": models.opt_vae.state_dict(), "opt_disc": models.opt_disc.state_dict(),
                "vae_config": asdict(engine.vae), "train_config": asdict(engine.train),
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
            # 2. Train what the sampler needs, warm-starting from last round.
            timings: dict[str, float] = {}
            metrics: dict[str, Any] = {"n_labeled": int(len(labeled_ids)), "n_pool": int(len(pool_ids)),
                                       "class_counts": _class_counts(project, labels)}
            ctx = samplers.Context(item_ids=all_ids, rng=np.random.default_rng(cfg.seed))
            if sampler.needs & {"latents", "disc"}:
                images = open_cache(project)
                ctx.latents, ctx.disc_prob = _train_and_score(
                    project, engine, cfg, images, cache_rows, is_labeled, timings, metrics, reporter, stop)
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
            project.finish_round(round_id, sel.pool_ids, sel.scores,
                                 [int(r) if r else None for r in sel.ranks], int(len(labeled_ids)),
                                 timings, metrics)
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
                     should_stop: Callable[[], bool] | None):
    from vaal_core import train

    device = train.resolve_device(cfg.device)
    models = train.build_vaal(engine.vae, engine.train, device, cfg.seed)
    ckpt = project.checkpoint_dir / CHECKPOINT
    warm = not cfg.fresh and _load_checkpoint(ckpt, engine, models, device)
    iterations = engine.train.iterations(int((~is_labeled).sum()), warm)
    metrics.update({"device": str(device), "warm_start": warm, "iterations": iterations})
    t0 = time.perf_counter()
    metrics["losses"] = train.train_vaal(models, images, cache_rows[is_labeled], cache_rows[~is_labeled],
                                         engine.train, iterations, device, cfg.seed, reporter, should_stop)
    timings["train_s"] = round(time.perf_counter() - t0, 3)
    reporter({"phase": "score"})
    t0 = time.perf_counter()
    latents = train.encode(models.vae, images, cache_rows, device)
    disc_prob = train.discriminate(models.disc, latents, device) if is_labeled.any() else None
    timings["score_s"] = round(time.perf_counter() - t0, 3)
    _save_checkpoint(ckpt, engine, models, reporter.round_id)
    return latents, disc_prob


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
            "cold_start": m.get("cold_start"), "started": r["created_at"], "finished": r["finished_at"],
            "error": r["error"],
        })
    return rows
