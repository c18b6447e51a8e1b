"""The order in which the Label page walks a project's images.

One stable order per round, so arrow keys go back to the image just labeled
and a refresh lands in the same place:

1. images the user pushed to the front (from the Explore page), newest push
   first, while they are unlabeled;
2. the current round's batch, by rank (the sampler's picks);
3. the rest of the round's scored pool, by score;
4. images the round did not score (added since, or every image before the
   first round), in a seeded random order so no folder comes first.

Labeled images keep their place (their label is shown); "the next image"
is the first unlabeled, not-postponed one from a position on, and postponed
ones ("not now", the S key) come back once nothing else is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

from vaal_core.learn import calibration
from vaal_core.store import Project

ORDER_SEED = 0


@dataclass(frozen=True)
class LabelOrder:
    ids: tuple[int, ...]  # every present item, in labeling order
    round_id: int | None  # the round whose queue this is (None: no round yet)
    batch: int  # how many of `ids` are pushed items plus the round's ranked batch
    ranks: dict[int, int]  # item id -> rank in the round's batch
    scores: dict[int, float]  # item id -> the round's score
    pushed: frozenset[int]
    audit: frozenset[int] = frozenset()  # the batch's random audit picks (loop/audit.py)
    audit_fraction: float = 0.0  # the share of the batch the round drew at random

    def position(self, item_id: int) -> int | None:
        try:
            return self._index[item_id]
        except KeyError:
            return None

    @property
    def _index(self) -> dict[int, int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {i: k for k, i in enumerate(self.ids)}
            object.__setattr__(self, "_index_cache", cached)
        return cached


def order_version(project: Project) -> tuple:
    """Changes whenever `label_order` would: a new round, a push, new items.
    Cheap, so the app can cache the order under it."""
    return project.order_stamp()


def label_order(project: Project) -> LabelOrder:
    present = list(project.paths())
    scored = project.round_order()
    pushed = project.priority_ids()
    ranks = {i: r for i, _, r in scored if r is not None}
    scores = {i: s for i, s, _ in scored}
    seen: set[int] = set()
    ids: list[int] = []
    for i in [*pushed, *(i for i, _, _ in scored)]:
        if i not in seen:
            seen.add(i)
            ids.append(i)
    rest = np.array([i for i in present if i not in seen], dtype=np.int64)
    ids.extend(np.random.default_rng(ORDER_SEED).permutation(rest).tolist())
    batch = len(set(pushed) | set(ranks))
    round_id = project.current_round_id()
    audit = project.audit_ids()
    fraction = ((project.round(round_id)["metrics"] or {}).get("audit") or {}).get("fraction", 0.0) if audit else 0.0
    return LabelOrder(tuple(ids), round_id, batch, ranks, scores, frozenset(pushed), frozenset(audit),
                      float(fraction))


def batch_ids(project: Project) -> tuple[int | None, frozenset[int]]:
    """(the current round, its batch as the Label page walks it): the first
    `batch` ids of `label_order`, the images pushed to the front and the
    round's ranked picks, read without making the whole order (0.2 s at
    50,000 items)."""
    return project.current_round_id(), frozenset(project.priority_ids()) | frozenset(project.ranked_ids())


def next_to_label(order: LabelOrder, labeled: set[int], postponed: set[int], start: int = 0) -> int | None:
    """Position of the first unlabeled, not-postponed item at or after
    `start` (wrapping around); if only postponed ones are left, the first of
    those; None when everything is labeled."""
    return next(_walk(order, labeled, postponed, start), None)


def _walk(order: LabelOrder, labeled: set[int], postponed: set[int], start: int) -> Iterator[int]:
    """Positions of the unlabeled items in the order the Label page offers
    them: from `start` on (wrapping around) the not-postponed ones, then the
    postponed ones."""
    n = len(order.ids)
    start = min(max(start, 0), n)
    later = []
    for k in (*range(start, n), *range(0, start)):
        i = order.ids[k]
        if i in labeled:
            continue
        if i in postponed:
            later.append(k)
        else:
            yield k
    yield from later


CANDIDATES = 32  # images offered to one lease transaction: the first free one is taken


def next_for(project: Project, order: LabelOrder, annotator: str, labeled: set[int], postponed: set[int],
             start: int = 0) -> int | None:
    """The next image for one annotator of a team, leased to them: as
    `next_to_label` from `start`, passing by images another annotator holds
    (store/team.py), and counting a doubled image one other annotator
    labeled as unlabeled for this one. The lease is taken here, in one
    transaction over the next few candidates, so two sessions racing for
    one image never both get it: the loser gets the next free one."""
    opinion = project.needs_opinion(annotator)
    done = (labeled - opinion) | project.held_by_others(annotator)
    while True:
        candidates = list(islice(_walk(order, done, postponed, start), CANDIDATES))
        if not candidates:
            return None
        got = project.claim_first(annotator, [order.ids[k] for k in candidates], labeled_ok=opinion)
        if got is not None:
            return order.position(got)
        done |= {order.ids[k] for k in candidates}  # all taken or labeled since `labeled` was read


def page_for(project: Project, order: LabelOrder, annotator: str, labeled: set[int], postponed: set[int],
             start: int, size: int) -> list[int]:
    """The grid's page for one annotator of a team: `page_of_unlabeled`
    without images others hold, leased to this annotator (those lost to a
    race are left off). Second opinions are asked one at a time, in the
    single view, where the teammate's label can be hidden."""
    done = labeled | project.held_by_others(annotator)
    ids = page_of_unlabeled(order, done, postponed, start, size)
    got = set(project.claim(annotator, ids))
    return [i for i in ids if i in got]


def page_of_unlabeled(order: LabelOrder, labeled: set[int], postponed: set[int], start: int,
                      size: int) -> list[int]:
    """Up to `size` item ids for the grid view: unlabeled, not-postponed
    items from position `start` on (then postponed ones, if the page is not
    full)."""
    fresh = [i for i in order.ids[start:] + order.ids[:start] if i not in labeled and i not in postponed]
    if len(fresh) < size:
        fresh += [i for i in order.ids if i in postponed and i not in labeled]
    return fresh[:size]


def queue_suggestions(project: Project, limit: int | None = None) -> dict:
    """The current queue (rank order, unlabeled only) with the suggested
    class and confidence for each item, and how far to trust it (the round's
    accuracy estimate and how it was measured; `model`: the task model, or
    with the feature probe; `calibration`: whether the confidences are
    calibrated, in words). `task` and `calibration` are None when the round
    trained no task model."""
    round_id = project.current_round_id()
    queue = project.queue(limit)
    guesses = project.suggestions([q["item_id"] for q in queue])
    task = None
    if round_id is not None:
        task = calibration.suggester(project.round(round_id)["metrics"]) or None  # with the feature probe's part
    items = [{"rank": q["rank"], "path": q["path"], "item_id": q["item_id"], "score": q["score"], "audit": q["audit"],
              "suggestion": guesses[q["item_id"]].label if q["item_id"] in guesses else None,
              "confidence": guesses[q["item_id"]].confidence if q["item_id"] in guesses else None}
             for q in queue]
    trust = None if task is None else calibration.of_round(project.round(round_id)["metrics"])
    return {"round": round_id, "items": items,
            # whether a confidence is calibrated, in words: it is said beside every confidence shown
            "calibration": None if trust is None else {"calibrated": trust.calibrated, "words": trust.words(),
                                                       "preselect_at": trust.threshold},
            "task": None if task is None else {**{k: task.get(k) for k in ("arch", "accuracy", "n_val", "n_train",
                                                                             "how", "warm_start")},
                                               "model": task.get("model", "task model"),
                                               "task_accuracy": task.get("task_accuracy", task.get("accuracy")),
                                               "probe_accuracy": task.get("probe_accuracy")}}
