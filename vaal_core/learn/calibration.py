"""How far to trust a suggestion: the task model's confidence, calibrated.

A small classifier trained on a few hundred labels is overconfident: on
300 random CIFAR-10 labels, the fast model's suggestions shown at 80% or
more were right 68-76% of the time (bench/calibration.py). Each round fits one
temperature T on the labels held out of the task model's training (a fixed
10% slice, `loop/round.py`) by minimising the negative log-likelihood of
softmax(z / T) (temperature scaling, Guo et al. 2017). T > 1 softens the
softmax, T < 1 sharpens it; the predicted class never changes, only how
sure the suggestion says it is.

Below `MIN_HELD_OUT` held-out labels T is not fitted: the round's
suggestions are "not calibrated", shown but never pre-selected
(`preselect`). The number and the floor T >= 1 are measured, not guessed:
`bench/calibration.py --sweep` fits T on n random CIFAR-10 test images of
a real round and grades it on the other ~10,000 (fast models, 300 draws, 3
seeds). With the floor, from n = 30 the median ECE was no worse than the
raw softmax's where that was already calibrated (1,500 labels: 0.019 vs
0.018) and lower where it was overconfident (300 labels: 0.045 vs 0.060),
and the worst decile stayed under 0.085 in both; at n = 20 the worst decile
reached 0.091. Without the floor, a few lucky held-out labels sharpen the
softmax: at n = 30 the median ECE was 0.041 where the raw one was 0.018.

NumPy only: the Label and Train pages import this without PyTorch. The
softmax comes in as probabilities; log p differs from the logits by a
constant per row, so softmax(log p / T) is the temperature-scaled softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

PRESELECT: float = 0.8  # calibrated confidence at or above which a suggestion is pre-selected / accepted by grid Enter
MIN_HELD_OUT = 30  # held-out labels below which no temperature is fitted (measured: see the module docstring)
BINS = 15  # equal-width confidence bins of the ECE and the reliability figure (the usual 15)
FLOOR = 1.0  # the fitted T is never below this: calibration may lower a confidence, never raise it
FOLDS = 5  # the "after" figures are cross-validated: no held-out label grades the T it helped fit
CV_UP_TO = 2000  # beyond this many rows one fitted parameter barely flatters its own rows: graded in-sample
_LOG_T = (math.log(0.05), math.log(20.0))  # the search range of T: a fit at either end is a sign of too few labels
_TINY = 1e-30  # float32 softmax can round a class to exactly 0; log(0) would be -inf


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) for each row of `probs` (N, C): the calibrated
    probabilities, float64. T = 1 gives `probs` back."""
    return _softmax(_log_probs(probs) / temperature)


def nll(probs: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the targets under softmax(log p / T)."""
    z = _log_probs(probs) / temperature
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(z)), np.asarray(targets)]))


def fit_temperature(probs: np.ndarray, targets: np.ndarray, iterations: int = 40) -> float:
    """The T minimising `nll` on these rows: golden-section search over log T
    in [0.05, 20]. The NLL is convex in 1/T, hence unimodal in log T, so a
    1-D bracketing search finds its minimum without gradients."""
    targets = np.asarray(targets)
    lo, hi = _LOG_T
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(probs, targets, math.exp(a)), nll(probs, targets, math.exp(b))
    for _ in range(iterations):  # each step keeps 61.8% of the bracket: 40 leave ~1e-8 of log T's range
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(probs, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(probs, targets, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over (0, 1], right edge included, as in Guo et al.'s
    code: a confidence of exactly 0.8 falls in (0.733, 0.8]."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (share of rows
    in the bin) x |accuracy - mean confidence| in it. 0 is perfect."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if not len(probs):
        return 0.0
    return _ece(probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(np.float64), bins)


def _ece(conf: np.ndarray, right: np.ndarray, bins: int) -> float:
    which = _bin_of(conf, bins)
    gap = np.abs(np.bincount(which, right, bins) - np.bincount(which, conf, bins))  # per bin: n x |acc - conf|
    return float(gap.sum() / len(conf))


def noise_floor(probs: np.ndarray, bins: int = BINS, draws: int = 100, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would show on this many rows:
    the median over `draws` of the ECE when each row is right with exactly
    its confidence. On 30 held-out labels it is about 0.1 (on 1,000 about
    0.04), so a round's held-out figures are read against it, not against 0."""
    conf = np.asarray(probs, dtype=np.float64).max(axis=1)
    if not len(conf):
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.median([_ece(conf, (rng.random(len(conf)) < conf).astype(np.float64), bins)
                            for _ in range(draws)]))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """The reliability table behind the ECE, for a figure: one row per
    non-empty bin with its edges, mean confidence, accuracy and count."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    conf, right = probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(np.float64)
    which = _bin_of(conf, bins)
    rows = []
    for k in range(bins):
        inside = which == k
        if inside.any():
            rows.append({"lo": round(k / bins, 4), "hi": round((k + 1) / bins, 4),
                         "confidence": round(float(conf[inside].mean()), 4),
                         "accuracy": round(float(right[inside].mean()), 4), "count": int(inside.sum())})
    return rows


def _fitted(probs: np.ndarray, targets: np.ndarray) -> float:
    """The round's temperature: the NLL's optimum, floored at FLOOR. A few
    held-out labels that happen to be right pull T below 1 and make every
    suggestion surer than the raw softmax; the floor takes that risk away
    and costs nothing in the median (bench/calibration.py --sweep)."""
    return max(FLOOR, fit_temperature(probs, targets))


def bins_for(n: int) -> int:
    """Confidence bins for n held-out labels: about 10 labels a bin, 5 to
    BINS. With 15 bins and 30 labels most bins hold one or two, and the
    ECE measures the sampling noise more than the model."""
    return int(min(BINS, max(5, n // 10)))


def _cross_validated(probs: np.ndarray, targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row scaled by a T fitted on the other folds: the calibrated
    probabilities as a label the fit never saw would get them."""
    order = np.random.default_rng(seed).permutation(len(probs))
    out = np.empty_like(probs, dtype=np.float64)
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        out[part] = scale(probs[part], _fitted(probs[rest], targets[rest]))
    return out


def fit(probs: np.ndarray, targets: np.ndarray, minimum: int = MIN_HELD_OUT, bins: int | None = None,
        seed: int = 0) -> dict[str, Any]:
    """What a round stores (metrics["task"]["calibration"]) from the task
    model's softmax on its held-out labels: whether it is calibrated, T
    (fitted on every held-out label, floored at FLOOR; None below
    `minimum`), the ECE and the reliability table before and after, in
    `bins_for(n)` bins unless `bins` is given, and the ECE a perfectly
    calibrated model would show on as many labels (`noise_floor`). The
    "after" figures are cross-validated over FOLDS folds (up to CV_UP_TO
    rows), so they are not graded on the labels T was fitted to."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    n = int(len(targets))
    bins = bins or bins_for(n)
    out: dict[str, Any] = {"method": "temperature scaling", "calibrated": False, "n_held_out": n,
                           "min_held_out": minimum, "bins": bins, "temperature": None,
                           "accuracy": None, "ece_before": None, "ece_after": None, "ece_noise": None,
                           "reliability_before": [], "reliability_after": []}
    if n == 0:
        return out
    out.update(accuracy=round(float((probs.argmax(1) == targets).mean()), 4),
               ece_before=round(expected_calibration_error(probs, targets, bins), 4),
               reliability_before=reliability(probs, targets, bins))
    if n < minimum:
        return out
    temperature = _fitted(probs, targets)
    # (A simulation measures on its whole test split: thousands of rows, no need to pay for folds.)
    after = _cross_validated(probs, targets, FOLDS, seed) if n <= CV_UP_TO else scale(probs, temperature)
    out.update(calibrated=True, temperature=round(temperature, 4),
               ece_after=round(expected_calibration_error(after, targets, bins), 4),
               ece_noise=round(noise_floor(after, bins, seed=seed), 4),
               reliability_after=reliability(after, targets, bins))
    return out


# -- what the pages read ---------------------------------------------------------------

@dataclass(frozen=True)
class Trust:
    """How far a round's suggestions can be trusted, for the pages."""

    calibrated: bool
    n_held_out: int
    temperature: float | None
    ece_before: float | None
    ece_after: float | None
    threshold: float
    maker: str = "task model"  # what made the suggestions: the task model, or with the feature probe

    @property
    def raw(self) -> str:
        """What its confidence is before calibration, in words."""
        return "the raw softmax" if self.maker == "task model" else "the raw combined confidence"

    def words(self) -> str:
        """One phrase to put beside a confidence."""
        if self.calibrated:
            return f"calibrated on {self.n_held_out:,} held-out labels"
        if self.n_held_out >= MIN_HELD_OUT:  # enough labels, nothing fitted: a round from before calibration
            return "not calibrated: this round is from before calibration (a new round calibrates)"
        if self.n_held_out == 0:
            return f"not calibrated: none of your labels are held out yet (it takes {MIN_HELD_OUT})"
        return (f"not calibrated: only {self.n_held_out:,} of your labels are held out "
                f"(it takes {MIN_HELD_OUT})")


def suggester(metrics: dict | None) -> dict:
    """The figures of whatever made a round's suggestions (accuracy, n_val,
    calibration, ...), for every reader: the task model's, overridden by the
    combination with the linear probe's (`metrics["suggest"]`, learn/probe.py)
    where the round made one. Empty when the round trained no task model."""
    m = metrics or {}
    task = m.get("task") or {}
    return {**task, **(m.get("suggest") or {})} if task else {}


def of_round(metrics: dict | None) -> Trust:
    """The trust of a round's suggestions, from its stored metrics. A round
    from before calibration (nothing stored) is not calibrated; its held-out
    count is still read from the task model's figures."""
    task = suggester(metrics)
    cal = task.get("calibration") or {}
    temperature = cal.get("temperature")
    calibrated = bool(cal.get("calibrated")) and temperature is not None
    return Trust(calibrated=calibrated, n_held_out=int(cal.get("n_held_out", task.get("n_val")) or 0),
                 temperature=float(temperature) if calibrated else None,
                 ece_before=cal.get("ece_before"), ece_after=cal.get("ece_after") if calibrated else None,
                 threshold=PRESELECT, maker=task.get("model", "task model"))


def preselect(confidence: float, trust: Trust) -> bool:
    """Whether a suggestion is pre-selected (and accepted by the grid's
    Enter): only a calibrated confidence at or above the threshold."""
    return trust.calibrated and confidence is not None and confidence >= trust.threshold
