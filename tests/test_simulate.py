"""Simulation on real CIFAR-10 JPEGs: output files and structure, the
same-initial-set guarantee, summary maths, determinism, and bad inputs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from conftest import make_subset
from vaal_core.errors import BadImageFolder, BadInput, BudgetTooLarge, UnknownSampler
from vaal_core.simulate import SimConfig, simulate

CLASSES3 = ["airplane", "cat", "ship"]
TINY = SimConfig(samplers=("vaal", "coreset"), init=20, budget=10, rounds=2, seeds=2, fast=True, device="cpu")


@pytest.fixture(scope="module")
def folder(cifar_root, tmp_path_factory):
    """3 classes x 40 real JPEGs."""
    return make_subset(cifar_root, tmp_path_factory.mktemp("sim") / "images", per_class=40, classes=CLASSES3)


@pytest.fixture(scope="module")
def tiny(folder, tmp_path_factory):
    """One tiny run (random added to vaal, coreset), its progress events and
    the JSON on disk as it was when the second seed started."""
    out = tmp_path_factory.mktemp("simout") / "sim.json"
    events, snapshot = [], {}

    def progress(info):
        events.append(info)
        if info.get("seed") == 1 and "partial" not in snapshot:
            snapshot["partial"] = json.loads(out.read_text())

    result = simulate(folder, TINY, out, progress)
    return result, out, events, snapshot["partial"]


def test_writes_json_and_offline_chart(tiny):
    result, out, _, _ = tiny
    on_disk = json.loads(out.read_text())
    assert on_disk["complete"] is True and on_disk == json.loads(json.dumps(result))
    html = out.with_suffix(".html").read_text()
    assert "plotly" in html.lower() and 'src="https://cdn.plot.ly' not in html
    for name in ("random", "vaal", "coreset"):
        assert name in html


def test_structure_and_values(tiny):
    result, _, _, _ = tiny
    cfg = result["config"]
    assert cfg["samplers"] == ["random", "vaal", "coreset"] and cfg["random_added"] is True
    assert cfg["seed_list"] == [0, 1]
    assert result["classes"] == CLASSES3
    assert result["n_pool"] + result["n_test"] == 120 and result["n_test"] == 24
    assert result["test_class_counts"] == {c: 8 for c in CLASSES3}  # stratified
    test_rows = set(result["test_rows"])
    for seed in ("0", "1"):
        initial = {name: result["results"][name][seed][0]["picked"] for name in cfg["samplers"]}
        first_acc = {result["results"][name][seed][0]["accuracy"] for name in cfg["samplers"]}
        # same initial set and seed for every sampler: same round-0 model
        assert len({tuple(v) for v in initial.values()}) == 1 and len(first_acc) == 1
        for name in cfg["samplers"]:
            records = result["results"][name][seed]
            assert [r["round"] for r in records] == [0, 1, 2]
            assert [r["labeled"] for r in records] == [20, 30, 40]
            seen = set(records[0]["picked"])
            assert len(seen) == 20 and not seen & test_rows
            for r in records:
                assert 0.0 <= r["accuracy"] <= 1.0
                assert sum(r["class_counts"].values()) == r["labeled"]
                assert min(r["train_s"], r["select_s"], r["task_s"]) >= 0
            for r in records[1:]:
                picks = r["picked"]
                assert len(picks) == 10 and len(set(picks)) == 10
                assert not set(picks) & seen and not set(picks) & test_rows  # new, from the pool
                seen |= set(picks)
            assert (records[1]["train_s"] > 0) == (name != "random")
    # vaal and coreset start from the same fresh models on the same set: the
    # first VAAL round is shared, so it cost (and recorded) the same
    assert result["results"]["vaal"]["0"][1]["train_s"] == result["results"]["coreset"]["0"][1]["train_s"]


def test_summary_is_the_mean_of_the_seeds(tiny):
    result, _, _, _ = tiny
    for name, rows in result["summary"].items():
        assert [r["labeled"] for r in rows] == [20, 30, 40]
        for i, row in enumerate(rows):
            acc = np.array([result["results"][name][s][i]["accuracy"] for s in ("0", "1")])
            assert row["mean"] == pytest.approx(acc.mean())
            assert row["std"] == pytest.approx(acc.std(ddof=1))
            assert (row["min"], row["max"], row["n_seeds"]) == (acc.min(), acc.max(), 2)
    text = result["headline"]
    assert "vaal reached" in text and "coreset reached" in text and "vs random" in text
    assert "40 labels" in text


def test_progress_per_round_and_partial_json(tiny):
    _, _, events, partial = tiny
    assert any(e["phase"] == "decode" for e in events)
    done = {(e["seed"], e["sampler"], e["round"]) for e in events if "accuracy" in e}
    assert done == {(s, n, r) for s in (0, 1) for n in ("random", "vaal", "coreset") for r in (0, 1, 2)}
    assert {e["phase"] for e in events} >= {"decode", "train", "task", "select"}
    # written after every (seed, sampler) run, before the end
    assert partial["complete"] is False
    assert all(list(partial["results"][n]) == ["0"] for n in ("random", "vaal", "coreset"))


def test_deterministic_and_independent_of_other_samplers(tiny, folder, tmp_path):
    """Every draw is seeded from (seed, round): coreset alone on seed 0 gives
    exactly what it gave beside vaal in the tiny run, where its first VAAL
    round came from the shared per-seed cache instead of being retrained."""
    cfg = replace(TINY, samplers=("coreset",), seeds=1)
    alone = simulate(folder, cfg, tmp_path / "alone.json")
    timings = ("train_s", "select_s", "task_s")
    for name in ("random", "coreset"):
        runs = [[{k: v for k, v in r.items() if k not in timings} for r in x["results"][name]["0"]]
                for x in (alone, tiny[0])]
        assert runs[0] == runs[1]  # accuracies, picks, class counts


def test_images_at_the_root_are_left_out_and_counted(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=10, classes=CLASSES3[:2])
    shutil.copy(sorted((cifar_root / "train" / "dog").iterdir())[0], images / "loose.jpg")
    cfg = SimConfig(samplers=("random",), init=2, budget=2, rounds=1, seeds=1, fast=True, device="cpu")
    result = simulate(images, cfg, tmp_path / "r.json")
    assert result["ignored_root_images"] == 1 and result["classes"] == CLASSES3[:2]
    assert result["n_pool"] + result["n_test"] == 20 and result["config"]["random_added"] is False


@pytest.mark.parametrize("change, error, words", [
    ({"samplers": ("vaal", "nope")}, UnknownSampler, "'nope'"),
    ({"init": 50, "budget": 20, "rounds": 3}, BudgetTooLarge, "110"),
    ({"init": 0}, BadInput, "--init"),
    ({"test_fraction": 1.5}, BadInput, "1.5"),
    ({"image_size": 48}, BadInput, "48"),
    ({"subset": 500}, BadInput, "500"),
])
def test_bad_config_raises_before_any_work(folder, tmp_path, change, error, words):
    cfg = replace(TINY, **change)
    with pytest.raises(error, match=words):
        simulate(folder, cfg, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_bad_folders(cifar_root, tmp_path):
    one = make_subset(cifar_root, tmp_path / "one", per_class=5, classes=["cat"])
    with pytest.raises(BadImageFolder, match="only the class folder 'cat'"):
        simulate(one, TINY, tmp_path / "x.json")
    with pytest.raises(BadImageFolder, match="does not exist"):
        simulate(tmp_path / "missing", TINY, tmp_path / "x.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadImageFolder, match="no image files"):
        simulate(tmp_path / "empty", TINY, tmp_path / "x.json")
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted((one / "cat").iterdir()):
        shutil.copy(f, flat / f.name)
    with pytest.raises(BadImageFolder, match="no class folders"):
        simulate(flat, TINY, tmp_path / "x.json")
