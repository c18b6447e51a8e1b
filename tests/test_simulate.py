"""Simulation on real CIFAR-10 JPEGs: output files and structure, the
same-initial-set guarantee, summary maths, determinism, bad inputs, and the
live JSON the Demo page polls (growth per round, progress, partial summaries,
latents for the map, CSV and chart)."""

from __future__ import annotations

import csv
import io
import json
import posixpath
import shutil
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from conftest import make_subset
from vaal_core.errors import BadImageFolder, BadInput, BudgetTooLarge, UnknownSampler
from vaal_core.loop.chart import chart_figure, write_chart
from vaal_core.loop.headline import headline
from vaal_core.loop.report import CSV_COLUMNS, summarize, summary_csv
from vaal_core.loop.simulate import SimConfig, simulate

pytestmark = pytest.mark.slow

CLASSES3 = ["airplane", "cat", "ship"]
TINY = SimConfig(samplers=("vaal", "coreset"), init=20, budget=10, rounds=2, seeds=2, fast=True, device="cpu")


@pytest.fixture(scope="module")
def folder(cifar_root, tmp_path_factory):
    """3 classes x 40 real JPEGs."""
    return make_subset(cifar_root, tmp_path_factory.mktemp("sim") / "images", per_class=40, classes=CLASSES3)


@pytest.fixture(scope="module")
def tiny(folder, tmp_path_factory):
    """One tiny run (random added to vaal, coreset), its progress events and
    what a poller would have read from disk meanwhile: the JSON as it was
    when the second seed started, the JSON after each round, and the
    progress the JSON showed at the start of each phase."""
    out = tmp_path_factory.mktemp("simout") / "sim.json"
    events = []
    disk = {"rounds": [], "phases": []}

    def progress(event):
        info = {"phase": event.phase.value, **event.values}  # the tags a simulation adds, flattened
        events.append(info)
        if info.get("seed") == 1 and "partial" not in disk:
            disk["partial"] = json.loads(out.read_text())
        key = (info.get("seed"), info.get("sampler"), info.get("round"))
        if info.get("done") is True:  # a round just ended: the poller sees it on disk already
            on_disk = json.loads(out.read_text())
            latents = on_disk["latents_file"]
            disk["rounds"].append({
                "key": key, "complete": on_disk["complete"], "progress": on_disk["progress"],
                "records": sum(len(v) for by_seed in on_disk["results"].values() for v in by_seed.values()),
                "summary": on_disk["summary"], "results": on_disk["results"],
                "latents_named_and_there": latents is None or (out.parent / latents).is_file()})
        elif "seed" in info and (not disk["phases"] or disk["phases"][-1][:2] != (key, info["phase"])):
            disk["phases"].append((key, info["phase"], json.loads(out.read_text())["progress"]))

    result = simulate(folder, TINY, out, progress)
    return result, out, events, disk


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
            # the record says whether VAAL's ranking was worth anything; only samplers that rank with it carry it
            for r in records[1:]:
                assert ("discriminator" in r) == (name == "vaal")
                if name == "vaal":
                    d = r["discriminator"]
                    assert 0 <= d["auc"] <= 1 and d["top_k"] >= 1 and isinstance(d["near_chance"], bool)
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
    _, _, events, disk = tiny
    partial = disk["partial"]
    assert any(e["phase"] == "decode" for e in events)
    done = {(e["seed"], e["sampler"], e["round"]) for e in events if "accuracy" in e}
    assert done == {(s, n, r) for s in (0, 1) for n in ("random", "vaal", "coreset") for r in (0, 1, 2)}
    assert {e["phase"] for e in events} >= {"decode", "train", "task", "select"}
    # the second seed's runs appear only once they have a round
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
    (tmp_path / "r.latents.npz").write_bytes(b"an earlier run's map")
    result = simulate(images, cfg, tmp_path / "r.json")
    assert result["ignored_root_images"] == 1 and result["classes"] == CLASSES3[:2]
    assert result["n_pool"] + result["n_test"] == 20 and result["config"]["random_added"] is False
    assert len(result["paths"]) == result["n_images"] == 21 and "loose.jpg" in result["paths"]  # decoded, unused
    # random needs no latents: no map file, and a stale one is not passed off as this run's
    assert result["latents_file"] is None and result["latents_from"] is None
    assert not (tmp_path / "r.latents.npz").exists()


@pytest.mark.parametrize("change, error, words", [
    ({"samplers": ("vaal", "nope")}, UnknownSampler, "'nope'"),
    ({"init": 50, "budget": 20, "rounds": 3}, BudgetTooLarge, "110"),
    ({"init": -1}, BadInput, "--init"),
    ({"evaluate": "mine"}, BadInput, "--evaluate"),
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
    two = make_subset(cifar_root, tmp_path / "two", per_class=30, classes=["cat", "dog"])
    with pytest.raises(BadInput, match=f"^{tmp_path} is a folder; give a file for the results"):
        simulate(two, TINY, tmp_path)  # refused before the rounds, not at the end


# -- the live JSON, the map's latents, CSV and chart ---------------------------

def test_json_grows_round_by_round(tiny):
    result, _, _, disk = tiny
    seen = disk["rounds"]
    total = 2 * 3 * 3  # seeds x samplers x rounds (0, 1, 2)
    assert [s["records"] for s in seen] == list(range(1, total + 1))  # one more record per round
    assert all(s["complete"] is False for s in seen)  # complete only at the final write
    order = [(seed, name, r) for seed in (0, 1) for name in ("random", "vaal", "coreset") for r in (0, 1, 2)]
    assert [s["key"] for s in seen] == order
    for i, s in enumerate(seen):
        p = s["progress"]
        assert (p["rounds_done"], p["rounds_total"], p["runs_done"], p["runs_total"]) == (i + 1, total,
                                                                                       (i + 1) // 3, 6)
        if i + 1 < total:  # current = the round that plays next
            assert (p["current"]["seed"], p["current"]["sampler"], p["current"]["round"]) == order[i + 1]
            assert p["phase"] == "start"
        else:
            assert p["current"] is None and p["phase"] == "chart"
        assert s["summary"] == summarize(s["results"])  # the summary on disk is of the records on disk
        assert s["latents_named_and_there"]
    # a run in progress: after seed 0 vaal round 1, vaal's summary has rounds 0-1 on one seed
    mid = seen[order.index((0, "vaal", 1))]["summary"]
    assert [(r["round"], r["n_seeds"]) for r in mid["vaal"]] == [(0, 1), (1, 1)] and "coreset" not in mid
    assert result["progress"] == {"runs_done": 6, "runs_total": 6, "rounds_done": total, "rounds_total": total,
                                  "current": None, "phase": "done"}
    assert result["error"] is None


def test_json_shows_the_phase_in_progress(tiny):
    _, _, _, disk = tiny
    phases = disk["phases"]
    # every phase a round goes through (vaal's: the task model, the VAE game, its scoring, the
    # selection), each shown on disk before its events reach the caller; the round-0 classifier
    # the seed's samplers share predicts the pool once, for any sampler that reads it
    assert {phase for _, phase, _ in phases} == {"task", "predict", "train", "score", "select"}
    predicted = {key for key, phase, _ in phases if phase == "predict"}
    assert predicted == {(0, "random", 0), (1, "random", 0)}  # nowhere else: no sampler here reads it
    for key, phase, on_disk in phases:  # written before the event reached the caller
        assert (on_disk["current"]["seed"], on_disk["current"]["sampler"], on_disk["current"]["round"]) == key
        assert on_disk["phase"] == phase


def test_latents_for_the_map(tiny):
    result, out, _, _ = tiny
    assert result["latents_file"] == "sim.latents.npz"
    assert result["latents_from"] == {"seed": 0, "sampler": "vaal", "round": 2}  # first that trains a VAE
    saved = np.load(out.parent / result["latents_file"])
    pool = np.setdiff1d(np.arange(result["n_images"]), result["test_rows"])
    assert np.array_equal(saved["rows"], pool) and len(pool) == result["n_pool"]
    assert saved["latents"].shape == (result["n_pool"], result["config"]["engine"]["vae"]["latent_dim"])
    assert saved["latents"].dtype == np.float32 and np.isfinite(saved["latents"]).all()
    assert saved["latents"].std(axis=0).max() > 0  # real encodings, not a placeholder
    folders = [posixpath.dirname(result["paths"][r]) for r in saved["rows"]]
    assert [result["classes"][c] for c in saved["y"]] == folders


def test_paths_name_every_row(tiny, folder):
    result, _, _, _ = tiny
    paths = result["paths"]
    assert len(paths) == result["n_images"] == 120 and paths == sorted(paths)
    assert all((folder / p).is_file() for p in paths)
    # the initial set's class counts are those of its files' folders
    first = result["results"]["random"]["0"][0]
    assert Counter(posixpath.dirname(paths[r]) for r in first["picked"]) == \
        Counter({c: n for c, n in first["class_counts"].items() if n})


def test_summary_csv_matches_the_summary(tiny):
    result, _, _, _ = tiny
    rows = list(csv.DictReader(io.StringIO(summary_csv(result))))
    assert tuple(rows[0]) == CSV_COLUMNS
    expected = [(name, row) for name, by_round in result["summary"].items() for row in by_round]
    assert len(rows) == len(expected) == 9
    for got, (name, row) in zip(rows, expected):
        assert got["sampler"] == name
        assert (int(got["labeled"]), int(got["round"]), int(got["n_seeds"])) == \
            (row["labeled"], row["round"], row["n_seeds"])
        assert [float(got[k]) for k in ("mean", "std", "min", "max")] == [row[k] for k in ("mean", "std", "min",
                                                                                           "max")]


def _rec(round_, acc):
    return {"round": round_, "labeled": 20 + 10 * round_, "accuracy": acc}


def test_summarize_partial_results():
    """Seed 1 of random stopped after round 0, vaal's seed 0 is mid-run and
    its seed 1 has not started, coreset has nothing yet."""
    results = {"random": {"0": [_rec(0, 0.5), _rec(1, 0.6), _rec(2, 0.7)], "1": [_rec(0, 0.3)]},
               "vaal": {"0": [_rec(0, 0.5), _rec(1, 0.65)], "1": []},
               "coreset": {}}
    summary = summarize(results)
    assert list(summary) == ["random", "vaal"]
    assert [(r["round"], r["labeled"], r["n_seeds"]) for r in summary["random"]] == [(0, 20, 2), (1, 30, 1),
                                                                                    (2, 40, 1)]
    first = summary["random"][0]
    assert first["mean"] == pytest.approx(0.4) and first["std"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert (first["min"], first["max"]) == (0.3, 0.5)
    assert summary["random"][1]["std"] == 0.0  # one seed: no spread
    assert [(r["round"], r["n_seeds"], r["mean"]) for r in summary["vaal"]] == [(0, 1, 0.5), (1, 1, 0.65)]
    # vaal is compared with random at the same round (30 labels), not random's latest
    text = headline(summary, results)
    assert "vaal reached 65.0%" in text and "vs random 60.0%" in text and "30 labels" in text
    assert "no difference can be claimed from 1 seed" in text  # one seed never makes a claim
    assert summarize({"random": {}}) == {} and headline({}, {}) == "no results yet"


def test_chart_on_partial_results(tmp_path):
    results = {"random": {"0": [_rec(0, 0.5), _rec(1, 0.6)], "1": [_rec(0, 0.4)]}, "vaal": {"0": [_rec(0, 0.5)]}}
    summary = summarize(results)
    partial = {"complete": False, "config": {"seeds": 2}, "summary": summary, "headline": headline(summary, results),
               "progress": {"rounds_done": 4, "rounds_total": 12}}
    fig = chart_figure(partial)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["random", "vaal"]
    assert list(lines[0].x) == [20, 30] and list(lines[0].y) == pytest.approx([45.0, 60.0])
    assert "4 of 12 rounds" in fig.layout.title.text
    assert "plotly" in write_chart(partial, tmp_path / "c.html").read_text().lower()
    empty = {"complete": False, "config": {"seeds": 1}, "summary": {}, "headline": ""}
    assert len(chart_figure(empty).data) == 0


def test_a_failed_run_says_so_in_the_json(folder, tmp_path):
    """The page polls a background process: a run that dies must leave a JSON
    that says so, with what it finished. The caller's callback raising is a
    real way for the run to stop half-way."""
    out = tmp_path / "f.json"

    def stop(event):
        if event.values.get("done") is True and event.values.get("round") == 1:
            raise RuntimeError("stopped by the test")

    cfg = SimConfig(samplers=("random",), init=20, budget=10, rounds=2, seeds=1, fast=True, device="cpu")
    with pytest.raises(RuntimeError, match="stopped by the test"):
        simulate(folder, cfg, out, stop)
    on_disk = json.loads(out.read_text())
    assert on_disk["complete"] is False and on_disk["error"] == "stopped by the test"
    assert on_disk["progress"]["phase"] == "failed" and on_disk["progress"]["rounds_done"] == 2
    assert [r["round"] for r in on_disk["results"]["random"]["0"]] == [0, 1]
    assert [r["n_seeds"] for r in on_disk["summary"]["random"]] == [1, 1]


def test_every_sampler_simulates_with_identical_starts_and_overlap(folder, tmp_path):
    """All registered samplers on real JPEGs: one seed, one round, an odd
    budget; every run starts from the same initial set and accuracy, and the
    overlap table covers every pair."""
    from vaal_core import samplers

    names = samplers.names()
    cfg = replace(TINY, samplers=tuple(names), budget=9, rounds=1, seeds=1)
    result = simulate(folder, cfg, tmp_path / "all.json")
    assert result["config"]["samplers"] == names and result["complete"]
    firsts = {name: result["results"][name]["0"][0] for name in names}
    assert len({tuple(rec["picked"]) for rec in firsts.values()}) == 1  # the same initial set
    plain = {name: rec["accuracy"] for name, rec in firsts.items() if name not in ("ll4al", "ta_vaal")}
    assert len(set(plain.values())) == 1  # and the same round-0 model, except with LL4AL's joint loss head
    assert firsts["ll4al"]["accuracy"] == firsts["ta_vaal"]["accuracy"]
    for name in names:
        # every round, the last one (which only measures) included, trains the sampler's own classifier
        head = [rec["loss_head"] for rec in result["results"][name]["0"]]
        assert head == [name in ("ll4al", "ta_vaal")] * 2, (name, head)
        last = result["results"][name]["0"][-1]
        assert len(last["picked"]) == 9 and last["labeled"] == 29
        assert not set(last["picked"]) & set(firsts[name]["picked"])
        assert result["summary"][name][1]["select_s"] == last["select_s"] >= 0
    pairs = {(o["a"], o["b"]): o for o in result["overlap"]}
    assert len(pairs) == len(names) * (len(names) - 1) // 2
    for (a, b), o in pairs.items():
        pa = set(result["results"][a]["0"][1]["picked"])
        pb = set(result["results"][b]["0"][1]["picked"])
        assert o["first_batch"] == pytest.approx(len(pa & pb) / 9) and o["n_seeds"] == 1
        assert o["all_picks"] == o["first_batch"]  # one round: everything picked is round 1's batch
    assert result["overlap_by_chance"] == pytest.approx(9 / (result["n_pool"] - 20))


def test_cold_start_common_classifier_auto_and_label_efficiency(folder, tmp_path):
    """--init 0: round 0 measures nothing and every sampler picks the first
    batch (one that needs a classifier or labels hands it to typiclust, and
    says so); auto
    names the sampler it used each round; with evaluate="both" a common
    classifier, trained fresh, scores every labeled set."""
    cfg = replace(TINY, samplers=("auto", "entropy", "vaal"), init=0, budget=9, rounds=2, seeds=2,
                  evaluate="both")
    result = simulate(folder, cfg, tmp_path / "cold.json")
    res = result["results"]
    for name in ("random", "auto", "entropy"):
        for seed in ("0", "1"):
            recs = res[name][seed]
            assert (recs[0]["labeled"], recs[0]["accuracy"], recs[0]["picked"]) == (0, None, [])
            assert [rec["labeled"] for rec in recs] == [0, 9, 18]
            assert all(0 <= rec["common_accuracy"] <= 1 and 0 <= rec["accuracy"] <= 1 for rec in recs[1:])
    assert {rec["sampler_used"] for by in res["auto"].values() for rec in by[1:]} == {"typiclust"}
    assert "classes are labeled" in res["auto"]["0"][1]["why"]
    for seed in ("0", "1"):
        # entropy's first batch is typiclust's too (no classifier without labels), so the same models
        first = res["entropy"][seed][1]
        assert first["sampler_used"] == "typiclust" and "entropy ranks by a classifier" in first["why"]
        assert first["picked"] == res["auto"][seed][1]["picked"]
        assert first["common_accuracy"] == res["auto"][seed][1]["common_accuracy"]
        assert res["entropy"][seed][2]["sampler_used"] == "entropy"
        # vaal's first batch is typiclust's (nothing labeled for its discriminator), the same as auto's
        first = res["vaal"][seed][1]
        assert first["sampler_used"] == "typiclust" and "nothing is labeled yet" in first["why"]
        assert first["picked"] == res["auto"][seed][1]["picked"]
        assert res["vaal"][seed][2]["sampler_used"] == "vaal" and res["vaal"][seed][2]["why"] is None
    # the summaries skip the unmeasured round 0
    assert [row["labeled"] for row in result["summary"]["auto"]] == [9, 18]
    assert [row["labeled"] for row in result["summary_common"]["entropy"]] == [9, 18]
    eff = result["efficiency"]
    assert eff["random"]["target"] == pytest.approx(result["summary"]["random"][-1]["mean"])
    for name, e in eff.items():
        reached = [v for v in e["per_seed"].values() if v is not None]
        assert e["reached"] == len(reached) and (e["mean"] is None) == (not reached)
        if reached:
            assert e["mean"] == pytest.approx(np.mean(reached))
    on_disk = json.loads((tmp_path / "cold.json").read_text())
    assert on_disk["efficiency"] == json.loads(json.dumps(eff))


def test_a_map_asked_of_a_run_whose_only_picks_came_from_a_cold_start(folder, tmp_path):
    """--init 0 and one round: vaal's one batch is typiclust's, so no VAE
    ever trained and there is no map to save; the run finishes and says so
    (no latents file) instead of failing on the missing latents."""
    cfg = replace(TINY, samplers=("vaal",), init=0, budget=9, rounds=1, seeds=1, map=True)
    result = simulate(folder, cfg, tmp_path / "cold.json")
    assert result["complete"] and result["error"] is None and result["latents_file"] is None
    first = result["results"]["vaal"]["0"][1]
    assert first["labeled"] == 9 and first["sampler_used"] == "typiclust" and 0 <= first["accuracy"] <= 1
    assert not (tmp_path / "cold.latents.npz").exists() and not result.get("map_ready")


def test_a_sampler_no_producer_serves_is_refused_before_any_work(tmp_path):
    from vaal_core import samplers

    samplers.register("_needs_gradients", needs=("gradients",))(lambda ctx, pool, labeled, budget: None)
    try:
        with pytest.raises(BadInput, match="cannot be simulated: no producer computes gradients"):
            simulate(tmp_path / "no-such-folder", replace(TINY, samplers=("_needs_gradients",)), tmp_path / "x.json")
    finally:
        del samplers.REGISTRY["_needs_gradients"]
    assert not (tmp_path / "x.json").exists()
