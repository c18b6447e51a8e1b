"""What the Label page says about an image, in words: why it is in the
queue, what its score means, and how far its suggestion can be trusted;
and the same words for the `queue` command.

Plain text (the page escapes it for markdown); no Streamlit, no PyTorch.
The page caches `round_facts` per round: a finished round's record never
changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaal_core.learn import calibration, disc_quality
from vaal_core.samplers.words import score_words
from vaal_core.services.labeling import LabelOrder
from vaal_core.store import Project, Suggestion


@dataclass(frozen=True)
class RoundFacts:
    """What the page reads of a finished round."""

    round_id: int
    sampler: str  # the sampler that scored it (a policy's choice, not the policy)
    trust: calibration.Trust  # how far its suggestions can be trusted
    disc: dict[str, Any] | None  # its discriminator's figures and verdict (disc_quality), if one ranked
    metrics: dict[str, Any] = field(default_factory=dict)  # what changes its scores' meaning (cold_start, ...)

    @property
    def near_chance(self) -> bool:
        return bool(self.disc and self.disc["near_chance"])


def round_facts(project: Project, round_id: int) -> RoundFacts:
    row = project.round(round_id)
    metrics = row["metrics"] or {}
    return RoundFacts(round_id, row["sampler"], calibration.of_round(metrics), disc_quality.of_round(metrics),
                      {k: metrics[k] for k in ("cold_start", "map_space", "scored_subset") if k in metrics})


def class_keys(classes: list[str]) -> list[str | None]:
    """Number keys for the classes in their order: 1-9, then 0 for the
    tenth; classes past the tenth get no key (the app and the notebook)."""
    keys = [str(k) for k in range(1, 10)] + ["0"]
    return [keys[i] if i < len(keys) else None for i in range(len(classes))]


def suggestion_sentence(s: Suggestion, trust: calibration.Trust, name: Callable[[str], str] = str) -> str:
    """'Suggested: cat · 87% (round 3's task model) — calibrated on 42
    held-out labels', saying when it is not pre-selected and why; `name`
    dresses the class name (the page: bold, escaped)."""
    line = (f"Suggested: {name(s.label)} · {s.confidence:.0%} (round {s.round_id}'s {trust.maker}) — "
            + trust.words())
    if calibration.preselect(s.confidence, trust):
        return line
    return f"{line}; not pre-selected" + (f" ({why_not(trust)})" if trust.calibrated else "")


def place(order: LabelOrder, item_id: int, facts: RoundFacts | None, n_classes: int) -> str:
    """Why this image is here: its place in the queue and, when a round
    scored it, what the score means for the sampler that made it."""
    if item_id in order.pushed:
        return "pushed to the front from Explore"
    if order.round_id is None or facts is None:
        return "no round trained yet: images in random order (train a round for a ranked queue)"
    if item_id not in order.scores:
        return "added after the last round (not scored yet)"
    meaning = score_meaning(order, item_id, facts, n_classes)
    if item_id in order.ranks:
        return f"rank {order.ranks[item_id]:,} of {len(order.ranks):,} in round {order.round_id}'s batch · {meaning}"
    return f"beyond round {order.round_id}'s batch · {meaning}"


def score_meaning(order: LabelOrder, item_id: int, facts: RoundFacts, n_classes: int) -> str:
    """What the image's score means for the sampler that made it (samplers/words.py)."""
    return score_words(facts.sampler, order.scores[item_id], item_id in order.ranks, facts.metrics,
                       facts.near_chance, n_classes)


def queue_listing(project: Project, round_id: int | None, queue: list[dict[str, Any]]
                  ) -> tuple[list[dict[str, Any]], str]:
    """The `queue` command's rows and text: each row of the batch with its
    score in the Label page's words (`means`: a bare number says nothing),
    and the text ending with what rank 1's score means."""
    if not queue or round_id is None:
        return [], "the queue is empty: run a round (python -m vaal_core round PROJECT)"
    facts = round_facts(project, round_id)
    n_classes = len(project.classes())
    rows = [{"rank": q["rank"], "path": q["path"], "score": q["score"], "item_id": q["item_id"], "audit": q["audit"],
             "means": score_words(facts.sampler, q["score"], True, facts.metrics, facts.near_chance, n_classes)}
            for q in queue]
    lines = [f"{r['rank']:>5}  {r['score']:.4f}  {r['path']}" + ("  (random audit pick)" if r["audit"] else "")
             for r in rows]
    top = next((r for r in rows if not r["audit"]), rows[0])
    lines.append(f"scores of round {round_id}'s {facts.sampler} (higher: label sooner); rank {top['rank']}'s: "
                 f"{top['means']}")
    return rows, "\n".join(lines)


def how_chosen(order: LabelOrder, item_id: int, facts: RoundFacts) -> str:
    """The head of the "Why this image?" card: its rank, and what the
    sampler that ranked it does (its registry description)."""
    from vaal_core import samplers

    sampler = samplers.REGISTRY.get(facts.sampler)
    does = f": {sampler.description}" if sampler is not None and sampler.description else ""
    if item_id in order.ranks:
        head = f"Rank {order.ranks[item_id]:,} of {len(order.ranks):,} in round {order.round_id}'s batch"
    else:
        head = f"Not in round {order.round_id}'s batch (position {order.position(item_id) + 1:,} in the order)"
    return f"{head}, ranked by {facts.sampler}{does}."


def audit_marker(order: LabelOrder) -> str:
    """The note an audit pick carries (loop/audit.py)."""
    return (f"random audit pick ({order.audit_fraction:.0%} of this batch is drawn at random, so the accuracy "
            "estimate is honest)")


def why_not(trust: calibration.Trust) -> str:
    """Why a round's suggestion is shown but not pre-selected, in a few
    words (`trust.words()` says the whole of it beside the suggestion)."""
    if not trust.calibrated:
        return "its confidence is not calibrated"
    return f"below {trust.threshold:.0%} calibrated confidence"


def split(suggestions: Mapping[int, Suggestion], trust: calibration.Trust) -> tuple[dict[int, str], frozenset[int]]:
    """({item: class} of the pre-selected suggestions, the other items with
    one): what the grid's Enter accepts, and what it leaves."""
    sure = {i: s.label for i, s in suggestions.items() if calibration.preselect(s.confidence, trust)}
    return sure, frozenset(suggestions) - set(sure)


def left_words(chosen: list[int], sure: Mapping[int, str], unsure: frozenset[int], why: str) -> str:
    """What the grid's Enter left unlabeled among `chosen`, and why ('' when nothing)."""
    low = sum(i in unsure for i in chosen)
    none = sum(i not in sure and i not in unsure for i in chosen)
    return "; ".join(part for part in (f"{low} left unlabeled: {why}" if low else "",
                                       f"{none} without a suggestion left unlabeled" if none else "") if part)
