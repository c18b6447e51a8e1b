"""What a sampler's score means, in words, for the pages.

Every sampler scores on its own scale (registry.py: higher = label
sooner), and only some scales mean something on their own: VAAL's is one
minus a discriminator's P(labeled), entropy's is in nats, typiclust's,
probcover's, badge's and vaal_diverse's are a pick order dressed as
numbers, random's is a random number. "score 0.514" tells a person none of
that, so the Label page shows these sentences instead: what the number is
for the sampler that made it, and, where it is only a rank, that it is.

The scales below are read off each scoring function (baselines.py,
adversarial.py, uncertainty.py, typical.py, batch_aware.py); the test in
tests/test_labeling.py checks that every registered sampler has words.
Nothing here imports NumPy or PyTorch: the app server words every image it
shows. The caller says whether the round's discriminator was near chance
(`learn.disc_quality`); words for a discriminator's number then say that
it means little, instead of describing the image by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# Samplers whose batch scores are a pick order: the i-th of n picks scores at
# least 1 (n - i + 1, or 1 + that), everything else below 1 (typical.ordered_scores,
# batch_aware.pick_order_scores).
PICK = 1.0

NEAR_CHANCE = "but this round's discriminator is near chance, so the number says little about this image"


def _band(x: float, bands: tuple[tuple[float, str], ...], last: str) -> str:
    """The words of the first band whose upper bound x is under."""
    for bound, words in bands:
        if x < bound:
            return words
    return last


def _discriminator(p_labeled: float, near_chance: bool, who: str) -> str:
    said = f"{who} chance this looks labeled: {p_labeled:.2f}"
    if near_chance:
        return f"{said} — {NEAR_CHANCE}"
    return f"{said} — " + _band(p_labeled, ((0.35, "unlike anything labeled so far"),
                                             (0.65, "neither clearly like nor unlike the labeled images")),
                                "much like images already labeled")


def _coreset(score: float, picked: bool) -> str:
    if picked:
        return (f"k-center greedy: {score:.2f} from the nearest labeled or earlier-picked image in the VAE's "
                "latent space when it was picked (the farthest one then)")
    return (f"{score:.2f} from the nearest labeled or picked image in the VAE's latent space "
            "(the batch took the farthest ones)")


def _vaal(score: float, picked: bool, m: dict[str, Any], near: bool) -> str:
    if m.get("cold_start"):
        return "no labels yet, so VAAL covered the latent space instead: " + _coreset(score, picked)
    return _discriminator(1.0 - score, near, "the discriminator's")


def _ta_vaal(score: float, picked: bool, m: dict[str, Any], near: bool) -> str:
    return _discriminator(1.0 - score, near, "TA-VAAL's discriminator (it also sees the predicted loss) gives a")


def _vaal_diverse(score: float, picked: bool, m: dict[str, Any], near: bool) -> str:
    if m.get("cold_start"):
        return "no labels yet, so VAAL covered the latent space instead: " + _coreset(score, picked)
    tail = "; this round's discriminator is near chance, so its choice says little about this image" if near else ""
    if score >= PICK:
        return ("one of VAAL's top candidates, the best of its cluster in the latent space, so the batch is "
                "spread out (a pick order, not a probability)" + tail)
    return "not picked: ranked below the batch by VAAL's discriminator (a rank, not a probability)" + tail


def _entropy(score: float, n_classes: int | None) -> str:
    top = math.log(n_classes) if n_classes and n_classes > 1 else None
    said = f"the task model's uncertainty (entropy of its raw prediction): {score:.2f} nats"
    if top is None:
        return said
    return (f"{said} of at most {top:.2f} — " +
            _band(score / top, ((0.4, "it is fairly sure of its guess"), (0.75, "it hesitates between a few classes")),
                  "it is unsure between several classes"))


def _margin(score: float) -> str:
    gap = max(0.0, -score)  # -0.0 for a tie
    return (f"the task model's two likeliest classes are {gap:.0%} apart (raw prediction) — " +
            _band(gap, ((0.1, "it can hardly choose between them"), (0.3, "it leans one way")), "it is fairly sure"))


def _least_confidence(score: float) -> str:
    top = 1.0 - score
    return (f"the task model gives its likeliest class {top:.0%} (raw prediction, before calibration) — " +
            _band(top, ((0.5, "it is unsure"), (0.8, "it leans one way")), "it is fairly sure"))


def _bald(score: float) -> str:
    return (f"dropout samples of the task model disagree on it: {score:.2f} nats of mutual information "
            "(0: they all agree) — " + _band(score, ((0.05, "they nearly agree"), (0.3, "they disagree somewhat")),
                                           "they disagree strongly"))


def _ll4al(score: float, m: dict[str, Any]) -> str:
    said = (f"the task model's loss head predicts a loss of {score:.2f} on it: the higher, the likelier the model "
            "is wrong there (a learned scale: compare ranks, not values)")
    if m.get("scored_subset"):  # uncertainty.ll4al_scores: the rest of the pool scores below the subset
        said += f"; only a random {m['scored_subset']:,} of the pool were scored, the rest rank below them"
    return said


def _typiclust(score: float, picked: bool) -> str:
    if score >= PICK:
        return ("the most typical image of one of the least-labeled clusters of the feature space: TypiClust picks "
                "one per cluster, fewest labels first (a pick order, not a probability)")
    return (f"not picked: its typicality is {score / 0.999:.0%} of the most typical image's; TypiClust ranks "
            "the images it did not pick by it")


def _probcover(score: float, picked: bool) -> str:
    if score >= PICK:
        return ("its neighbourhood in the feature space holds the most images no labeled or earlier-picked image "
                "covers yet: ProbCover's greedy pick (a pick order, not a probability)")
    return "not a coverage pick: ProbCover orders the rest at random (only its picks are ranked)"


def _badge(score: float, picked: bool) -> str:
    if score >= PICK:
        return ("an image the task model is unsure of, whose gradient points where no earlier pick's does "
                "(BADGE's k-means++ pick: a pick order, not a probability)")
    return "not picked: BADGE orders the rest by the size of their gradient (a rank, not a probability)"


Wording = Callable[[float, bool, dict[str, Any], bool, int | None], str]

WORDS: dict[str, Wording] = {
    "random": lambda s, p, m, near, c: "drawn at random: its score is a random number, only its place in the order "
                                       "counts",
    "coreset": lambda s, p, m, near, c: _coreset(s, p),
    "vaal": lambda s, p, m, near, c: _vaal(s, p, m, near),
    "ta_vaal": lambda s, p, m, near, c: _ta_vaal(s, p, m, near),
    "vaal_diverse": lambda s, p, m, near, c: _vaal_diverse(s, p, m, near),
    "entropy": lambda s, p, m, near, c: _entropy(s, c),
    "margin": lambda s, p, m, near, c: _margin(s),
    "least_confidence": lambda s, p, m, near, c: _least_confidence(s),
    "bald": lambda s, p, m, near, c: _bald(s),
    "ll4al": lambda s, p, m, near, c: _ll4al(s, m),
    "typiclust": lambda s, p, m, near, c: _typiclust(s, p),
    "probcover": lambda s, p, m, near, c: _probcover(s, p),
    "badge": lambda s, p, m, near, c: _badge(s, p),
}


def score_words(sampler: str, score: float, picked: bool, metrics: dict[str, Any] | None = None,
                near_chance: bool = False, n_classes: int | None = None) -> str:
    """What `score` means for `sampler` (the sampler that scored the round,
    not a policy's name): `picked` says whether the item is in the round's
    batch, `metrics` are the round's (a cold start changes what VAAL's
    number is), `near_chance` whether its discriminator was near chance,
    `n_classes` the number of classes (the top of the entropy scale)."""
    words = WORDS.get(sampler)
    if words is None:  # a sampler added without words: say honestly what is known
        return f"score {score:.3f} from {sampler} (higher comes first; its scale is its own, not a probability)"
    return words(float(score), picked, metrics or {}, near_chance, n_classes)
