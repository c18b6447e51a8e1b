"""The sampler registry: name -> strategy, and the one selector they share.

A sampler only scores the candidate pool (higher = label sooner); `select`
ranks, breaks ties with the seed and cuts the batch. A sampler declares the
inputs it reads (`needs`, computed for it by `vaal_core.learn.pipeline`) and
its settings (registry arguments, e.g. LL4AL's subset size). Its `Context`
holds exactly the declared inputs: reading anything else is an error, so a
sampler cannot quietly depend on an input the pipeline might not compute.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from vaal_core.errors import BadInput, BudgetTooLarge, UnknownSampler


class UndeclaredNeed(RuntimeError):
    """A sampler read an input it did not declare in its needs."""


class Context:
    """What a sampler may read: its declared inputs, arrays aligned with
    `item_ids` (every item of the round, labeled or not; look rows up with
    `rows(ids)`), the round's seeded generator, and `notes` to say what it
    did (saved with the round)."""

    def __init__(self, item_ids: np.ndarray, rng: np.random.Generator,
                 inputs: Mapping[str, np.ndarray | None] | None = None, n_classes: int | None = None):
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.rng = rng
        self.n_classes = n_classes  # the project's class count, when the caller knows it
        self._inputs = dict(inputs or {})
        self._index: dict[int, int] | None = None
        self.notes: dict[str, Any] = {}

    def __getitem__(self, need: str) -> np.ndarray:
        if need not in self._inputs:
            raise UndeclaredNeed(f"the sampler read {need!r} but declared only "
                                 f"{', '.join(sorted(self._inputs)) or 'no inputs'}; add it to its needs")
        value = self._inputs[need]
        if value is None:
            raise RuntimeError(f"{need!r} was not computed this round")
        return value

    def rows(self, ids: np.ndarray) -> np.ndarray:
        if self._index is None:
            self._index = {int(i): r for r, i in enumerate(self.item_ids)}
        return np.fromiter((self._index[int(i)] for i in ids), dtype=np.int64, count=len(ids))


ScoreFn = Callable[..., np.ndarray]  # (ctx, pool_ids, labeled_ids, budget, **settings) -> (P,) scores


ChooseFn = Callable[..., tuple[str, str]]  # (n_labeled, n_classes, classes_labeled, **settings) -> (name, why)


@dataclass(frozen=True)
class Sampler:
    name: str
    score: ScoreFn | None  # None for a policy
    needs: frozenset[str]
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    choose: ChooseFn | None = None  # a policy (`auto`) picks another sampler each round
    # The sampler that picks instead while the labels cannot feed this one's own signal; `resolve`
    # applies it and says why. `cold_classes`: how many classes the labels must cover first, 1 for
    # VAAL's discriminator (any label to tell apart), 2 for a classifier trained on the labels.
    cold_start: str | None = None
    cold_classes: int = 1

    @property
    def is_policy(self) -> bool:
        return self.choose is not None


REGISTRY: dict[str, Sampler] = {}


# For a sampler that reads a classifier trained on the labels: until the labels cover 2 classes there is
# no classifier, and typiclust's typical, covering batch trained a better one than a random batch (the
# fallback until then) on CIFAR-10 at 100 labels (README, "Which sampler auto uses").
CLASSIFIER_COLD_START: dict[str, Any] = {"cold_start": "typiclust", "cold_classes": 2}


def register(name: str, needs: tuple[str, ...] = (), description: str = "", cold_start: str | None = None,
             cold_classes: int = 1, **settings: Any) -> Callable[[ScoreFn], ScoreFn]:
    """Register a scoring function under `name`. `settings` are passed to it
    as keyword arguments (a caller of `select` may override them);
    `cold_start` names the sampler that picks a round whose labels cover
    fewer than `cold_classes` classes (its description says so)."""
    def wrap(fn: ScoreFn) -> ScoreFn:
        if name in REGISTRY:
            raise ValueError(f"sampler {name!r} is registered twice")
        text = description or (fn.__doc__ or "").strip()
        if cold_start:
            text += (f" (with no labels yet, {cold_start} picks the first batch)" if cold_classes <= 1 else
                     f" (until the labels cover {cold_classes} classes, {cold_start} picks)")
        REGISTRY[name] = Sampler(name, fn, frozenset(needs), text, settings, cold_start=cold_start,
                                 cold_classes=cold_classes)
        return fn
    return wrap


def register_policy(name: str, description: str, **settings: Any) -> Callable[[ChooseFn], ChooseFn]:
    """Register a policy: a name that stands for another sampler chosen
    each round from the state of the labels (`resolve`)."""
    def wrap(fn: ChooseFn) -> ChooseFn:
        if name in REGISTRY:
            raise ValueError(f"sampler {name!r} is registered twice")
        REGISTRY[name] = Sampler(name, None, frozenset(), description, settings, choose=fn)
        return fn
    return wrap


@dataclass(frozen=True)
class Resolved:
    sampler: Sampler  # the sampler that scores this round
    asked: str  # the name the user chose (a policy's name, or the sampler's own)
    why: str | None = None  # a policy's reason, in words


def resolve(name: str, n_labeled: int, n_classes: int, classes_labeled: int) -> Resolved:
    """The sampler that runs this round for `name`: itself, or the one a
    policy chooses for a labeled set of `n_labeled` images covering
    `classes_labeled` of `n_classes` classes. A sampler registered with a
    `cold_start` hands the round to that one while the labels cover fewer
    than its `cold_classes`."""
    sampler = get(name)
    if sampler.cold_start and classes_labeled < sampler.cold_classes:
        return Resolved(get(sampler.cold_start), name, cold_start_why(sampler, n_labeled, classes_labeled))
    if not sampler.is_policy:
        return Resolved(sampler, name)
    chosen, why = sampler.choose(n_labeled, n_classes, classes_labeled, **sampler.settings)
    return Resolved(get(chosen), name, why)


def cold_start_why(sampler: Sampler, n_labeled: int, classes_labeled: int) -> str:
    cold = sampler.cold_start
    if sampler.cold_classes <= 1:
        lacking = f"nothing is labeled yet, so {sampler.name} has no labeled images to tell the rest from"
        evidence = "a k-center or a random first batch"
    else:
        lacking = (f"{sampler.name} ranks by a classifier trained on the labels, which takes labels of "
                   f"{sampler.cold_classes} classes or more (now {n_labeled:,} labels of {classes_labeled} "
                   f"class{'' if classes_labeled == 1 else 'es'})")
        evidence = "random picks"
    return (f"{cold}: {lacking}; until then {cold} picks typical, covering images, which trained a better "
            f"classifier than {evidence} on CIFAR-10 (README, low budgets)")


def get(name: str) -> Sampler:
    if name not in REGISTRY:
        raise UnknownSampler(f"unknown sampler {name!r}; choose one of: {', '.join(names())}")
    return REGISTRY[name]


def names() -> list[str]:
    return sorted(REGISTRY)


@dataclass(frozen=True)
class Selection:
    ids: np.ndarray  # the batch, best first
    pool_ids: np.ndarray  # every candidate
    scores: np.ndarray  # aligned with pool_ids
    ranks: np.ndarray  # aligned with pool_ids: 1..budget for the batch, 0 otherwise
    notes: dict[str, Any] = field(default_factory=dict)  # what the sampler said it did


def rank(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions of `scores` from highest to lowest; equal scores are ordered
    by a seeded random key, so ties never favour ingest order."""
    tiebreak = rng.random(len(scores))
    return np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))


def check_budget(budget: int, pool_size: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise BadInput(f"budget must be a whole number of images, got {budget!r}")
    if budget < 1:
        raise BadInput(f"budget must be at least 1, got {budget}")
    if budget > pool_size:
        raise BudgetTooLarge(f"budget {budget} is larger than the unlabeled pool ({pool_size} items); "
                             f"use --budget {pool_size} or less")


def select(name: str, item_ids: np.ndarray, inputs: Mapping[str, np.ndarray | None], pool_ids: np.ndarray,
           labeled_ids: np.ndarray, budget: int, rng: np.random.Generator, n_classes: int | None = None,
           **settings: Any) -> Selection:
    """Score the pool with sampler `name` and take the best `budget` items.
    `inputs` may hold more than the sampler needs; it sees only what it
    declared. A policy must be resolved first (`resolve`)."""
    sampler = get(name)
    if sampler.is_policy:
        raise ValueError(f"{name!r} chooses another sampler each round; call resolve() first")
    unknown = set(settings) - set(sampler.settings)
    if unknown:
        raise BadInput(f"sampler {name!r} has no setting {', '.join(sorted(unknown))}; its settings are: "
                       f"{', '.join(sampler.settings) or 'none'}")
    pool_ids = np.asarray(pool_ids, dtype=np.int64)
    labeled_ids = np.asarray(labeled_ids, dtype=np.int64)
    check_budget(budget, len(pool_ids))
    ctx = Context(item_ids, rng, {need: inputs.get(need) for need in sampler.needs}, n_classes)
    scores = np.asarray(sampler.score(ctx, pool_ids, labeled_ids, budget, **{**sampler.settings, **settings}),
                        dtype=np.float64)
    if scores.shape != pool_ids.shape or not np.all(np.isfinite(scores)):
        raise RuntimeError(f"sampler {name!r} returned {scores.shape} scores (finite: "
                           f"{bool(np.all(np.isfinite(scores)))}) for {len(pool_ids)} candidates")
    order = rank(scores, ctx.rng)[:budget]
    ranks = np.zeros(len(pool_ids), dtype=np.int64)
    ranks[order] = np.arange(1, budget + 1)
    return Selection(ids=pool_ids[order], pool_ids=pool_ids, scores=scores, ranks=ranks, notes=ctx.notes)
