"""Starting the next round like the last one: the Label page's one-click
"Train round N with the same settings" once a round's batch is labeled.

The settings are the current round's (the latest finished one), as it
recorded them (`settings["round"]`: its `RoundConfig`): the sampler the
person asked for (a policy such as `auto` is resolved again for the labels
now), the budget it used (at most the unlabeled pool now), quick or full
models, the device, the seed and the audit share. The seed is the same:
"same settings" means what the Train page would start with the same form,
and the round still differs from the last one by its labels, its warm
start and its audit draw (seeded by seed and round id). The round itself
is started as the Train page starts it, `worker.start_round` (its checks
first, then a background `python -m vaal_core round` process): nothing
trains in the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaal_core.loop.audit import DEFAULT_FRACTION
from vaal_core.services import worker
from vaal_core.store import Project


@dataclass(frozen=True)
class NextRound:
    after: int  # the round whose settings it repeats
    number: int  # the id the new round gets (the newest round's + 1)
    sampler: str
    budget: int
    fast: bool
    device: str
    seed: int
    audit: float
    dropped: str | None = None  # a setting of the last round the app cannot repeat, in words

    def words(self) -> str:
        """'vaal, budget 15, quick models, device auto, seed 0'."""
        return (f"{self.sampler}, budget {self.budget:,}, {'quick' if self.fast else 'full-size'} models, "
                f"device {self.device}, seed {self.seed}")


def like_last(project: Project) -> NextRound | None:
    """The next round with the current round's settings, or None when there
    is no finished round or nothing left to label."""
    current = project.current_round_id()
    if current is None:
        return None
    row = project.round(current)
    cfg: dict[str, Any] = (row["settings"] or {}).get("round") or {}
    saved = project.settings()
    pool = project.status()["unlabeled"]
    if pool == 0:
        return None
    newest = project.last_round()
    dropped = None
    if cfg.get("pretrained"):  # the app has no field for a weights file: the CLI started this round
        dropped = ("the last round used ImageNet weights from a file, which only the command line can pass; "
                   "this one trains without them")
    return NextRound(after=current, number=(newest["id"] if newest else current) + 1,
                     sampler=str(cfg.get("sampler") or row["sampler"]), budget=min(int(row["budget"]), pool),
                     fast=bool(cfg.get("fast", saved.get("fast", True))),
                     device=str(cfg.get("device") or saved.get("device", "auto")), seed=int(row["seed"]),
                     audit=float(cfg.get("audit", saved.get("audit", DEFAULT_FRACTION))), dropped=dropped)


def busy(project: Project) -> bool:
    """A round trains, or its worker is still starting (importing PyTorch
    takes seconds before it opens its round)."""
    job = worker.round_worker(project)
    return project.is_training() or (job is not None and job.running)


def start(project: Project, plan: NextRound, devices: dict[str, Any] | None = None) -> worker.WorkerState:
    """Start `plan` in a background worker, as the Train page does, and keep
    its settings as the Train form's defaults. Raises what
    `worker.start_round` raises (WorkerBusy, BadInput, BudgetTooLarge, ...)."""
    started = worker.start_round(project, plan.sampler, plan.budget, device=plan.device, fast=plan.fast,
                                 seed=plan.seed, devices=devices, audit=plan.audit)
    project.save_settings(sampler=plan.sampler, budget=plan.budget, fast=plan.fast, device=plan.device,
                          seed=plan.seed, audit=plan.audit)
    return started
