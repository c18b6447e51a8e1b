"""Calibrated suggestions: the temperature fit and the calibration error on
planted answers, then a real round on CIFAR-10 JPEGs whose stored
confidences are recomputed from its checkpoint and stored temperature."""

from __future__ import annotations

import numpy as np
import pytest

from vaal_core.learn import calibration
from vaal_core.learn.calibration import (MIN_HELD_OUT, PRESELECT, Trust, expected_calibration_error, fit,
                                         fit_temperature, of_round, preselect, reliability, scale)

from conftest import make_subset


def _classifier(n: int, sharpen: float, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A classifier whose true class probabilities are softmax(z), labels
    drawn from them; it reports softmax(sharpen * z): overconfident for
    sharpen > 1, exactly calibrated for sharpen = 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, classes))
    z[np.arange(n), rng.integers(0, classes, n)] += 2.0
    truth = calibration._softmax(z)
    targets = (truth.cumsum(1) > rng.random((n, 1))).argmax(1)  # one draw per row from its true probabilities
    return calibration._softmax(sharpen * z), targets


def test_ece_on_planted_answers():
    probs = np.full((10, 2), 0.1)
    probs[:, 0] = 0.9
    assert expected_calibration_error(probs, np.array([0] * 9 + [1])) == pytest.approx(0.0)  # 90% sure, 9 of 10
    assert expected_calibration_error(probs, np.array([0] * 5 + [1] * 5)) == pytest.approx(0.4)
    # two bins: 0.6-sure rows all right (gap 0.4), 0.95-sure rows all wrong (gap 0.95); weighted by count
    two = np.array([[0.6, 0.4]] * 3 + [[0.95, 0.05]])
    assert expected_calibration_error(two, np.array([0, 0, 0, 1])) == pytest.approx((3 * 0.4 + 0.95) / 4)
    table = reliability(two, np.array([0, 0, 0, 1]))
    assert [(r["count"], r["accuracy"], r["confidence"]) for r in table] == [(3, 1.0, 0.6), (1, 0.0, 0.95)]
    # right edges belong to their bin: 0.8 is in (0.733, 0.8], as in Guo et al.'s code
    (edge,) = reliability(np.array([[0.8, 0.2]]), np.array([0]))
    assert (edge["lo"], edge["hi"]) == (round(11 / 15, 4), 0.8)


def test_an_overconfident_classifier_gets_a_temperature_above_one_and_a_lower_ece():
    probs, targets = _classifier(3000, sharpen=3.0)
    t = fit_temperature(probs, targets)
    assert 2.5 < t < 3.5  # it undoes the sharpening
    before, after = expected_calibration_error(probs, targets), expected_calibration_error(scale(probs, t), targets)
    assert before > 0.2 and after < 0.03
    assert (scale(probs, t).argmax(1) == probs.argmax(1)).all()  # the suggested class never changes
    out = fit(probs[:200], targets[:200])
    assert out["calibrated"] and out["n_held_out"] == 200 and out["temperature"] > 1.5
    assert out["ece_after"] < out["ece_before"] / 2  # cross-validated: graded on rows its T never saw
    assert sum(r["count"] for r in out["reliability_after"]) == 200
    # what a perfectly calibrated model would show on so few labels: the figures' yardstick
    assert 0.03 < out["ece_noise"] < 0.15 and calibration.noise_floor(probs) < out["ece_noise"]


def test_a_calibrated_classifier_keeps_a_temperature_near_one():
    probs, targets = _classifier(5000, sharpen=1.0, seed=1)
    assert fit_temperature(probs, targets) == pytest.approx(1.0, abs=0.08)
    assert np.allclose(scale(probs, 1.0), probs)


def test_calibration_never_raises_a_confidence_and_bins_follow_the_held_out_size():
    probs, targets = _classifier(3000, sharpen=0.5, seed=2)  # underconfident
    assert fit_temperature(probs, targets) < 0.7  # the NLL's optimum would sharpen it
    out = fit(probs, targets)
    assert out["calibrated"] and out["temperature"] == calibration.FLOOR == 1.0
    assert out["ece_after"] == pytest.approx(out["ece_before"])  # T = 1 changes nothing
    # a small held-out set gets fewer, fuller bins: about 10 labels a bin, 5 at least, 15 at most
    assert [fit(probs[:n], targets[:n])["bins"] for n in (MIN_HELD_OUT, 80, 150, 3000)] == [5, 8, 15, 15]
    assert len(fit(probs[:MIN_HELD_OUT], targets[:MIN_HELD_OUT])["reliability_after"]) <= 5


def test_below_the_minimum_nothing_is_fitted_and_nothing_is_preselected():
    probs, targets = _classifier(MIN_HELD_OUT - 1, sharpen=3.0)
    out = fit(probs, targets)
    assert not out["calibrated"] and out["temperature"] is None and out["ece_after"] is None
    assert out["n_held_out"] == MIN_HELD_OUT - 1 and out["ece_before"] is not None  # measured, not fitted
    trust = of_round({"task": {"calibration": out}})
    assert not trust.calibrated and not preselect(0.99, trust)
    assert trust.words() == f"not calibrated: only {MIN_HELD_OUT - 1} of your labels are held out " \
                            f"(it takes {MIN_HELD_OUT})"
    assert fit(probs[:0], targets[:0])["ece_before"] is None
    assert of_round({"task": {"calibration": fit(probs[:0], targets[:0])}}).words().startswith(
        "not calibrated: none of your labels are held out yet")


def test_trust_of_a_round_and_the_preselect_threshold():
    probs, targets = _classifier(400, sharpen=2.0)
    trust = of_round({"task": {"n_val": 400, "calibration": fit(probs, targets)}})
    assert trust == Trust(True, 400, trust.temperature, trust.ece_before, trust.ece_after, PRESELECT)
    assert trust.words() == "calibrated on 400 held-out labels"
    assert preselect(PRESELECT, trust) and not preselect(PRESELECT - 1e-9, trust)
    # rounds from before calibration: nothing stored, never pre-selected
    for old in (None, {}, {"task": {"accuracy": 0.7, "n_val": 42}}):
        assert not of_round(old).calibrated and not preselect(1.0, of_round(old))
    assert of_round({"task": {"n_val": 42}}).words().startswith("not calibrated: this round is from before")


# -- a real round ------------------------------------------------------------------------------

CLASSES3 = ["airplane", "frog", "truck"]


@pytest.mark.slow
def test_a_rounds_stored_confidences_are_its_calibrated_softmax(cifar_root, tmp_path):
    """Two real --fast rounds: with too few held-out labels the stored
    confidence is the raw softmax; with enough, softmax(log p / T) for the T
    the round stored, recomputed here from the round's own checkpoint."""
    from vaal_core.config import engine_config
    from vaal_core.data.cache import open_cache
    from vaal_core.data.ingest import init_project
    from vaal_core.learn import task
    from vaal_core.learn.checkpoints import CheckpointDir
    from vaal_core.loop.round import RoundConfig, held_out, run_round

    images = make_subset(cifar_root, tmp_path / "images", per_class=150, classes=CLASSES3)
    project, _, _ = init_project(tmp_path / "proj", images, CLASSES3)
    items = project.items()
    truth = {it.id: it.path.split("/")[0] for it in items}
    ids = np.array([it.id for it in items])
    # Labels for every item but 60, chosen so the fixed 10% slice holds out at least MIN_HELD_OUT of them.
    slice_ = held_out(ids, engine_config(32, True).task.val_fraction)
    assert slice_.sum() >= MIN_HELD_OUT + 5
    rng = np.random.default_rng(0)  # items come class by class: draw across the classes
    few = np.concatenate([rng.choice(ids[slice_], 5, replace=False), rng.choice(ids[~slice_], 60, replace=False)])
    assert len({truth[int(i)] for i in few}) == 3  # 5 held out: not calibrated
    project.set_labels([(int(i), truth[int(i)]) for i in few], source="import")
    cfg = RoundConfig(sampler="random", budget=10, fast=True, device="cpu", audit=0.0)

    def recompute(result) -> tuple[dict, np.ndarray, np.ndarray, list]:
        stored = project.suggestions()
        pool = [i for i in ids.tolist() if i not in project.labeled_ids()]
        assert sorted(stored) == pool
        model = task.new_task_model(3, engine_config(32, True).task, __import__("torch").device("cpu"), 0)
        model.net.load_state_dict(CheckpointDir(project.checkpoint_dir).load("task")["net"])
        rows = {it.id: it.cache_index for it in items}
        raw = task.predict(model, open_cache(project), np.array([rows[i] for i in pool]), "cpu")
        cal = project.round(result.round_id)["metrics"]["task"]["calibration"]
        assert cal == result.metrics["task"]["calibration"]  # what the pages read is what the round measured
        return cal, raw, np.array([stored[i].confidence for i in pool]), [stored[i].label for i in pool]

    result = run_round(project, cfg)
    cal, raw, shown, labels = recompute(result)
    assert not cal["calibrated"] and cal["n_held_out"] == result.metrics["task"]["n_val"] == 5
    assert np.allclose(shown, raw.max(1), atol=1e-5) and labels == [CLASSES3[k] for k in raw.argmax(1)]

    rest = [int(i) for i in rng.permutation(ids) if i not in set(few.tolist())][:-60]  # all but 60 labeled now
    project.set_labels([(i, truth[i]) for i in rest], source="import")
    result = run_round(project, cfg)
    cal, raw, shown, labels = recompute(result)
    n_val = result.metrics["task"]["n_val"]
    assert cal["calibrated"] and cal["n_held_out"] == n_val >= MIN_HELD_OUT
    assert cal["temperature"] > 0 and 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
    assert sum(b["count"] for b in cal["reliability_before"]) == n_val
    assert sum(b["count"] for b in cal["reliability_after"]) == n_val
    assert np.allclose(shown, scale(raw, cal["temperature"]).max(1), atol=1e-5)
    assert labels == [CLASSES3[k] for k in raw.argmax(1)]  # the class is the raw model's
    if abs(cal["temperature"] - 1) > 0.02:
        assert not np.allclose(shown, raw.max(1), atol=1e-3)  # the shown confidence is not the raw one
    trust = of_round(project.round(result.round_id)["metrics"])
    assert trust.calibrated and trust.temperature == cal["temperature"] and trust.n_held_out == n_val
