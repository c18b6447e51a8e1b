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


def run_round(project: Project, cfg: RoundConfig, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> RoundResult:
    """Run one round; raises WorkerBusy if another process is training this
    project, BadInput/BudgetTooLarge/UnknownSampler before touching anything,
    TrainingDiverged/RoundCancelled after marking the round failed/cancelled."""
    from vaal_core.ingest import open_cache

    # 1. Check the request before any work.
    sampler = samplers.get(cfg.sampler)
    items = project.items()
    if not items:
        raise BadInput(f"project {project.root} has no images; add some with "
                       f"python -m vaal_core init {project.root} --images DIR")
    labels = project.labels()
    all_ids = np.array([it.id for it in items], dtype=np.int64)
    cache_rows = np.array([it.cache_index for it in items], dtype=np.int64)
    is_labeled = np.array([it.id in labels for it in items])
    pool_ids, labeled_ids = all_ids[~is_labeled], all_ids[is_labeled]
    budget = cfg.budget if cfg.budget is not None else min(default_budget(len(items)), len(pool_ids))
    samplers.check_budget(budget, len(pool_ids))
    engine = engine_config(project.image_size, cfg.fast)

    with project.training_lock():
        round_id = project.start_round(sampler.name, budget, cfg.seed, {
            "round": asdict(cfg), "engine": asdict(engine), "needs": sorted(sampler.needs)})
        reporter = _DbProgress(project, round_id, progress)
        try:
            # 2. Train what the sampler needs, warm-starting from last round.
            timings: dict[str, float] = {}
            metrics: dict[str, Any] = {"n_labeled": int(len(labeled_ids)), "n_pool": int(len(pool_ids))}
            ctx = samplers.Context(item_ids=all_ids, rng=np.random.default_rng(cfg.seed))
            if sampler.needs & {"latents", "disc"}:
                images = open_cache(project)
                ctx.latents, ctx.disc_prob = _train_and_score(
                    project, engine, cfg, images, cache_rows, is_labeled, timings, metrics, reporter, should_stop)
            # 3. Score and select.
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
            project.finish_round(round_id, sel.pool_ids, sel.scores,
                                 [int(r) if r else None for r in sel.ranks], int(len(labeled_ids)),
                                 timings, metrics)
        except RoundCancelled as err:
            project.fail_round(round_id, str(err), status="cancelled")
            raise
        except TrainingDiverged as err:
            project.fail_round(round_id, str(err))
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
    t0 = time.perf_counter()
    latents = train.encode(models.vae, images, cache_rows, device)
    disc_prob = train.discriminate(models.disc, latents, device) if is_labeled.any() else None
    timings["score_s"] = round(time.perf_counter() - t0, 3)
    _save_checkpoint(ckpt, engine, models, reporter.round_id)
    return latents, disc_prob


class _DbProgress:
    """Forwards progress to the caller and, at most twice a second, to the
    round's row so other processes (the app) can poll it."""

    def __init__(self, project: Project, round_id: int, progress: Progress | None):
        self.project, self.round_id, self.progress = project, round_id, progress
        self._last = 0.0

    def __call__(self, info: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(info)
        now = time.monotonic()
        if now - self._last >= 0.5 or info.get("iteration") == info.get("total"):
            self._last = now
            self.project.set_progress(self.round_id, info)
