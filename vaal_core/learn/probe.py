"""The label suggestions when the round has a feature space: the task
model's softmax combined with a linear probe on the project's features.

Why: while labels are few, a small CNN trained from scratch on them knows
little, and a linear classifier on features learnt from every image of the
project (learn/features.py) knows more. Together they know more than either:
on CIFAR-10 with the `--fast` models and random picks (`bench/suggestions.py`,
README "Suggestions"), the combination was right more often than the task
model alone at every size measured from 100 to 2,000 labels.

The combination is a product of experts, each with weight 1/2: the
geometric mean of the two probabilities, class by class, renormalised
(log-probabilities averaged). The plain product is twice as sure as it
should be: two opinions that share their evidence are not two independent
witnesses. Measured on CIFAR-10 test images, the temperature that
calibrated the product was 1.8-3.2 (about 2) from 100 to 2,000 labels, and
its raw calibration error 0.15-0.39, against 0.01-0.17 for the geometric
mean (README, "How often the suggestions are right"). That matters most
while fewer than 30 labels are held out and no temperature is fitted. Each is trained
on exactly the labels the task model trains on, so the held-out slice
stays held out of both; its accuracy and the temperature that calibrates
the combined confidence are measured there (learn/calibration.py), as for
the task model alone.

The probe is scikit-learn's LogisticRegression (multinomial, L-BFGS) with
C = 0.01 on the feature space's `probe_input`: the 256 leading principal
components of the standardised patch features with `--fast`, else the
standardised embeddings. C was measured on the patch features (a
cross-validated C picked no better, at 10 times the time). The samplers never read any of this: they keep the task model's
raw softmax they were benchmarked on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

C = 0.01  # inverse L2 strength on standardised features (see the module docstring)
MODEL = "task model + feature probe"  # what made the suggestions, in the pages' words
FLOOR = 1e-4  # the least probability either expert gives a class: one expert alone never rules a class out


@dataclass
class Suggester:
    probs: np.ndarray  # (N, C) the combined class probabilities of every item (before calibration)
    metrics: dict[str, Any]  # accuracies on the held-out labels and the calibration, for the round's record


def fit_probe(features: np.ndarray, targets: np.ndarray, seed: int = 0) -> Any:
    """A linear probe: a multinomial logistic regression on features scaled
    as the feature space hands them over (`FeatureSpace.probe_input`: no
    scaling here, which would whiten the patch space's principal components
    and lose what their spread says; that cost 12 points at 100 labels)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    with warnings.catch_warnings():  # a probe a little short of convergence still ranks classes well
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asarray(features, np.float32), targets)
    return model


def probe_probs(model: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities, 0 for classes the probe never saw."""
    out = np.zeros((len(features), n_classes), np.float32)
    if len(features):
        out[:, model.classes_] = model.predict_proba(np.asarray(features, np.float32))
    return out


def combine(task_probs: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """The geometric mean of the two experts' probabilities, renormalised,
    each floored at `FLOOR` first (see the module docstring)."""
    log = (np.log(np.maximum(task_probs, FLOOR)) + np.log(np.maximum(probe, FLOOR))) / 2
    log -= log.max(1, keepdims=True)
    p = np.exp(log)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def suggest(task_probs: np.ndarray, features: np.ndarray, train: np.ndarray, held_out: np.ndarray,
            targets: np.ndarray, seed: int = 0) -> Suggester:
    """The combined suggestions for every item. `task_probs` and `features`
    are aligned with the items; `train` and `held_out` (bool, the same
    length) are the labels the task model trained on and the slice it did
    not; `targets` the class index of each labeled item."""
    from vaal_core.learn import calibration

    n_classes = task_probs.shape[1]
    model = fit_probe(features[train], targets[train], seed)
    probe = probe_probs(model, features, n_classes)
    probs = combine(task_probs, probe)
    y = targets[held_out]

    def accuracy(p: np.ndarray) -> float | None:
        return float((p[held_out].argmax(1) == y).mean()) if held_out.any() else None

    metrics = {"model": MODEL, "accuracy": accuracy(probs), "n_val": int(held_out.sum()),
               "task_accuracy": accuracy(task_probs), "probe_accuracy": accuracy(probe),
               "n_train": int(train.sum()), "probe_dims": int(features.shape[1]),
               "calibration": calibration.fit(probs[held_out], y, seed=seed)}
    return Suggester(probs, metrics)

