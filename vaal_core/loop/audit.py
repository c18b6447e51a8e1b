"""The audit: a few random picks in every batch, so the task model's
accuracy can be estimated honestly on the user's own labels, and the
sampler's picks compared with random ones.

A round (`loop/round.py`) lets the sampler choose its batch of `budget`
images, then replaces the sampler's last `audit_count(budget, fraction)`
picks with images drawn uniformly at random (`audit_rng`: seeded by the
round's seed and id) from the rest of the unlabeled pool, and spreads them
through the batch (`audit_positions`), so a user who labels only the top of
the queue still labels some. The store marks them (`scores.audit`).

`compare(project)` then reads, per round, how the task model's suggestions
fared on the audit picks and on the sampler's picks that the user has
labeled since. Pure functions of the store; no PyTorch.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from vaal_core.store import Project

DEFAULT_FRACTION = 0.05
MIN_BATCH = 10  # smaller batches get no audit pick: one would be a large share of a tiny batch
AUDIT_STREAM = 0xA0D17  # keeps the audit's random stream apart from the sampler's, for the same seed
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


def audit_count(budget: int, fraction: float) -> int:
    """How many of a batch of `budget` are audit picks: round(fraction *
    budget), at least 1 when fraction > 0, and none at all for batches under
    MIN_BATCH (a single random pick would be over a tenth of such a batch,
    and the user asked for few images on purpose)."""
    if fraction <= 0 or budget < MIN_BATCH:
        return 0
    return max(1, round(fraction * budget))


def audit_positions(budget: int, n: int) -> list[int]:
    """Where the `n` audit picks go in a batch of `budget` (0-based): one in
    the middle of every budget/n positions (with 5%, every 20th: positions
    10, 30, 50, ...), so the top of the queue holds some."""
    return [int((k + 0.5) * budget / n) for k in range(n)]


def audit_rng(seed: int, round_id: int) -> np.random.Generator:
    """The audit's generator: the round's seed, and its id, so two rounds run
    with the same seed do not draw the same pool positions."""
    return np.random.default_rng([AUDIT_STREAM, int(seed), int(round_id)])


def swap_in_audit(batch: Sequence[int], pool: Sequence[int], fraction: float,
                  rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """The batch with its audit picks: `batch` is the sampler's, best first;
    `pool` every unlabeled candidate (the batch included). Keeps the
    sampler's first len(batch) - n picks in their order, draws n images
    uniformly without replacement from the pool outside those kept picks (the
    sampler's dropped tail included: it is part of that pool), and puts them
    at `audit_positions`. Returns (the new batch, best first; the audit ids,
    in batch order)."""
    batch = [int(i) for i in batch]
    n = audit_count(len(batch), fraction)
    if n == 0:
        return batch, []
    kept = batch[:len(batch) - n]
    kept_set = set(kept)
    rest = np.array(sorted(int(i) for i in pool if int(i) not in kept_set), dtype=np.int64)
    drawn = rng.choice(rest, size=n, replace=False).tolist()
    slots = set(audit_positions(len(batch), n))
    out, picks, sampler = [], iter(drawn), iter(kept)
    for pos in range(len(batch)):
        out.append(next(picks) if pos in slots else next(sampler))
    drawn_set = set(drawn)
    return out, [i for i in out if i in drawn_set]


# -- the estimate ----------------------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for k successes in n trials (95% by
    default); None for n = 0. Unlike p ± z·sqrt(p(1-p)/n) it stays inside
    [0, 1] and is not zero-width at 0 or n successes, which matters for the
    handful of audit labels a round gets."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def agreement(pairs: Iterable[tuple[str | None, str | None, str | None]]) -> dict[str, Any]:
    """How often the suggestion matched the label, over (suggestion, label,
    source) triples; those without both a suggestion and a label are left
    out. Returns {n, correct, accuracy, low, high (the 95% Wilson interval),
    changed (the share the user labeled differently from the suggestion),
    accepted (the share labeled by accepting the suggestion, source
    'suggestion')}; accuracy and the rest are None when n = 0."""
    used = [(s, lab, src) for s, lab, src in pairs if s is not None and lab is not None]
    n = len(used)
    correct = sum(s == lab for s, lab, _ in used)
    interval = wilson(correct, n)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else None,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None,
            "changed": (n - correct) / n if n else None,
            "accepted": sum(src == "suggestion" for _, _, src in used) / n if n else None}


def compare(project: Project) -> list[dict[str, Any]]:
    """Per finished round that made audit picks, oldest first: the task
    model's suggestions on its random audit picks against those on its
    sampler's picks, on the user's labels.

    What is compared: for every image of round r's batch that is labeled
    now, round r's suggestion for it (the task model's top class, stored
    with the round) against its current label. The suggestion was made
    before the label existed, by a model that never trained on that image
    (it was unlabeled when round r trained), and it is never overwritten by
    later rounds.

    Why the audit row is honest: the audit picks were drawn uniformly at
    random from round r's unlabeled pool (outside the sampler's kept picks),
    whatever their scores, so the share of them whose suggestion matches the
    label is an unbiased estimate of how often round r's model is right on
    an image of the pool you have not labeled, with a 95% Wilson interval
    for the sampling error. The sampler's picks are chosen for being hard or
    informative, so the accuracy on them is biased (usually low) by design;
    the gap between the two rows is how much harder the sampler's picks are
    than a random image.

    What it cannot see: it stays unbiased only if the labeled audit picks
    are a random subset of the audit picks, so each row says how many are
    labeled (`labeled` of `picks`): skipping the hard ones for good would
    push it up. The truth is the user's label, and a suggestion accepted
    without a look agrees by construction; `accepted` is the share labeled
    that way. Images without a suggestion (a round with no task model, a
    class removed since) are left out of n, and so are images two annotators
    disagree on that no reviewer has resolved (store/team.py).

    Each row: {round, sampler, fraction, picks (audit picks in the batch),
    labeled (of those, labeled now), audit and sampler_picks (each an
    `agreement` dict)}."""
    rounds = {r["id"]: r for r in project.rounds() if r["status"] == "done"}
    disputed = {c["item_id"] for c in project.conflicts()}  # two annotators disagree: no truth to score against
    by_round: dict[int, list[dict[str, Any]]] = {}
    for row in project.round_batches():
        if row["item_id"] in disputed:
            row = {**row, "label": None, "source": None}  # counted as not labeled until a reviewer resolves it
        by_round.setdefault(row["round_id"], []).append(row)
    out = []
    for round_id, rows in sorted(by_round.items()):
        audit = [r for r in rows if r["audit"]]
        if not audit or round_id not in rounds:
            continue
        info = (rounds[round_id]["metrics"] or {}).get("audit") or {}
        out.append({
            "round": round_id, "sampler": rounds[round_id]["sampler"],
            "fraction": info.get("fraction"), "picks": len(audit),
            "labeled": sum(r["label"] is not None for r in audit),
            "audit": agreement((r["suggestion"], r["label"], r["source"]) for r in audit),
            "sampler_picks": agreement((r["suggestion"], r["label"], r["source"]) for r in rows if not r["audit"]),
        })
    return out
