"""The Demo's headline claims a difference from random only when it holds
across paired seeds, and says how fine the test set measures."""

from __future__ import annotations

from vaal_core.loop.headline import headline, paired_differences, verdict
from vaal_core.loop.report import summarize


def _results(random_acc: list[float], other_acc: list[float]) -> dict:
    """One measured round (round 1, 40 labels) per seed, round 0 shared."""
    def recs(acc: float) -> list[dict]:
        return [{"round": 0, "labeled": 20, "accuracy": 0.5}, {"round": 1, "labeled": 40, "accuracy": acc}]
    return {"random": {str(s): recs(a) for s, a in enumerate(random_acc)},
            "vaal": {str(s): recs(a) for s, a in enumerate(other_acc)}}


def test_a_difference_in_every_seed_beyond_one_image_is_stated():
    results = _results([0.60, 0.62, 0.58], [0.64, 0.655, 0.61])
    assert [round(d, 3) for d in paired_differences(results, "vaal", 1)] == [0.04, 0.035, 0.03]
    text = headline(summarize(results), results, n_test=400)
    assert "vaal reached 63.5% at 40 labels vs random 60.0%" in text
    assert "higher by 3.5 points in every one of 3 seeds" in text and "paired 95% interval +2.3 to +4.7" in text
    assert "needed 40 labels on average" in text
    assert text.endswith("Measured on 400 test images: one image is 0.25 points")


def test_two_seeds_never_make_a_claim_even_with_a_big_gap():
    """The case a new user saw: 2 seeds, 80 test images, +1.9 points called 'higher'."""
    results = _results([0.60, 0.62], [0.62, 0.64])
    text = headline(summarize(results), results, n_test=80)
    assert "higher" not in text and "lower" not in text and "needed" not in text
    assert "no difference can be claimed from 2 seeds (per seed: +2.0, +2.0 points; it takes 3 or more)" in text
    assert "one image is 1.25 points" in text


def test_mixed_signs_or_gaps_under_one_image_are_no_difference():
    assert verdict([0.05, -0.01, 0.04], 100) == (
        "no difference that holds across seeds (per seed: +5.0, -1.0, +4.0 points)", False)
    # every seed +0.5 points, but one test image is 1.25 points: below what the test set can tell apart
    words, holds = verdict([0.005, 0.005, 0.005], 80)
    assert not holds and words.startswith("no difference that holds across seeds") and "one test image" in words
    # every seed higher, but so spread that the paired interval reaches zero (the digits demo's 3 seeds)
    words, holds = verdict([0.067, 0.042, 0.012], 120)
    assert not holds and "higher in all 3 seeds" in words and "includes zero" in words
    words, holds = verdict([-0.03, -0.05, -0.04], 100)
    assert holds and words.startswith("lower by 4.0 points in every one of 3 seeds")


def test_seeds_are_paired_by_seed_not_by_position():
    """A seed that random measured but the sampler did not (a run still
    going) is left out of the pairs, not matched with another seed."""
    results = _results([0.60, 0.70, 0.50], [0.65, 0.75])
    assert [round(d, 3) for d in paired_differences(results, "vaal", 1)] == [0.05, 0.05]
