"""The UMAP projection of the Explore and Demo pages, on real data: scikit-learn's
digits stand in for VAE latents (UMAP must separate the classes), and the
per-round cache runs on a real project with a real `--fast` VAAL round on
CIFAR-10 JPEGs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from vaal_core.files import file_lock
from vaal_core.maps import cache as maps_cache
from vaal_core.maps import projection
from vaal_core.maps.cache import (
    NoLatents,
    cached_projection_of,
    has_projection,
    latest_latent_round,
    projection_progress,
    round_projection,
)
from vaal_core.maps.projection import umap_2d
from vaal_core.errors import BadInput, VaalError
from vaal_core.store import Project
from vaal_core.loop.round import RoundConfig, run_round

from conftest import ROOT, make_subset, run_cli


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return d.data.astype(np.float32), d.target


@pytest.fixture(scope="module")
def digits_map(digits):
    """One full projection of the 1,797 digits (pays numba's first compile
    once for the whole module), with its progress events."""
    events: list[dict] = []
    t0 = time.perf_counter()
    xy = umap_2d(digits[0], seed=0, progress=lambda e: events.append(e.to_dict()))
    return xy, events, time.perf_counter() - t0


# -- umap_2d ------------------------------------------------------------------

def test_import_stays_light():
    code = "import sys, vaal_core.maps.cache, vaal_core.maps.explore; print(sorted(m for m in ('umap', 'numba', 'pynndescent') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_umap_separates_digit_classes(digits, digits_map):
    x, y = digits
    xy, _, _ = digits_map
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    # Chance is 0.1; a map that keeps the classes apart scores far above it.
    acc = cross_val_score(KNeighborsClassifier(n_neighbors=5), xy, y, cv=5).mean()
    assert acc > 0.8, acc


@pytest.mark.slow
def test_same_seed_same_map(digits):
    x = digits[0][:400]
    a, b = umap_2d(x, seed=3), umap_2d(x, seed=3)
    assert np.array_equal(a, b)
    assert not np.allclose(a, umap_2d(x, seed=4))


@pytest.mark.slow
def test_progress_reports_neighbors_then_layout(digits_map):
    _, events, seconds = digits_map
    phases = [e["phase"] for e in events]
    assert phases[0] == "neighbors" and phases[-1] == "layout"
    assert phases == sorted(phases, key=["neighbors", "layout"].index)  # no going back
    last = events[-1]
    assert last["done"] == last["total"] == 500  # umap-learn's epochs for <= 10k points
    assert any(e["phase"] == "layout" and 0 < e["done"] < e["total"] for e in events)  # parsed from tqdm
    for phase in ("neighbors", "layout"):
        done = [e["done"] for e in events if e["phase"] == phase]
        assert done == sorted(done) and all(e["done"] <= e["total"] for e in events)
    for phase in ("neighbors", "layout"):  # time spent in each phase
        elapsed = [e["elapsed_s"] for e in events if e["phase"] == phase]
        assert elapsed == sorted(elapsed) and elapsed[-1] <= seconds + 0.01
    # throttled to ~4 a second (plus the first and last of each phase)
    assert len(events) <= 4 * seconds + 6, (len(events), seconds)


def test_nothing_printed_and_bad_progress_text_ignored(digits, capfd):
    xy = umap_2d(digits[0][:300], seed=0)
    assert xy.shape == (300, 2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    sink = projection._TqdmSink(projection._Reporter(lambda e: None))
    for junk in ("", "\r", "garbage", "\r7/0", "\r9/3", "\x00\xff", "\r12/500 extra 1/"):
        sink.write(junk)  # never raises


def test_a_raising_callback_cancels_without_wedging_tqdm(digits):
    def stop(event):
        if event.phase == "layout" and event.done > 0:
            raise KeyboardInterrupt("user left the page")

    with pytest.raises(KeyboardInterrupt):
        umap_2d(digits[0][:300], progress=stop)
    # tqdm holds a process-wide lock while writing to its file; an exception
    # escaping there would leave it held and hang the next projection in
    # any other thread (as the Streamlit server runs them).
    done = []
    worker = threading.Thread(target=lambda: done.append(umap_2d(digits[0][:100])), daemon=True)
    worker.start()
    worker.join(60)
    assert done and done[0].shape == (100, 2)


def test_exact_neighbours_match_brute_force(digits):
    # Offset far from the origin: the |a|^2 + |b|^2 - 2ab expansion must not
    # lose the small distances to float32 cancellation.
    x = digits[0][:1500] + 1000.0
    idx, dist = projection._exact_knn(x, 15, projection._Reporter(None))
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    assert np.array_equal(idx[:, 0], np.arange(len(x)))  # each point first, as umap-learn expects
    assert np.allclose(dist, np.sort(full, axis=1)[:, :15], atol=1e-2)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 16])
def test_tiny_inputs_give_finite_maps(n, digits):
    x = digits[0][:n]
    events: list[dict] = []
    xy = umap_2d(x, seed=0, progress=lambda e: events.append(e.to_dict()))
    assert xy.shape == (n, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert np.array_equal(xy, umap_2d(x, seed=0))
    assert events[-1]["phase"] == "layout" and events[-1]["done"] == events[-1]["total"]


@pytest.mark.parametrize("n", [2, 6, 40])
def test_identical_points_give_finite_maps(n):
    xy = umap_2d(np.ones((n, 8), dtype=np.float32))
    assert xy.shape == (n, 2) and np.isfinite(xy).all()


def test_bad_latents_rejected(digits):
    x = digits[0][:50].copy()
    x[7, 3] = np.nan
    with pytest.raises(BadInput, match="NaN or infinite.*row 7"):
        umap_2d(x)
    with pytest.raises(BadInput, match="NaN or infinite"):
        umap_2d(np.full((10, 4), 1e300))  # finite in float64, infinite as float32
    with pytest.raises(BadInput, match="2-D"):
        umap_2d(np.zeros(10))
    with pytest.raises(BadInput, match="numbers"):
        umap_2d(np.array([["a", "b"]]))


# -- per-round cache on a real project -------------------------------------------

@pytest.fixture(scope="module")
def project(cifar_root, tmp_path_factory) -> Project:
    """A project of 200 real CIFAR JPEGs with a `--fast` coreset round (the
    VAE's latents kept; with no labels vaal would hand the round to
    typiclust) followed by a random round (none kept)."""
    base = tmp_path_factory.mktemp("embed")
    images = make_subset(cifar_root, base / "images", per_class=20)
    run_cli("init", base / "proj", "--images", images, "--gold-from-folders")
    p = Project.open(base / "proj")
    assert latest_latent_round(p) is None
    run_round(p, RoundConfig(sampler="coreset", budget=10, fast=True, device="cpu"))
    run_round(p, RoundConfig(sampler="random", budget=10, fast=True, device="cpu"))
    return p


@pytest.mark.slow
def test_latest_latent_round_skips_rounds_without_latents(project):
    latent_round, random_round = [r["id"] for r in project.rounds()]
    assert latest_latent_round(project) == latent_round
    with pytest.raises(NoLatents, match="'vaal' or 'coreset'") as err:
        round_projection(project, random_round)
    assert isinstance(err.value, VaalError) and f"round {random_round}" in str(err.value)


@pytest.mark.slow
def test_round_projection_is_cached(project):
    round_id = latest_latent_round(project)
    folder = project.round_dir(round_id)
    assert not has_projection(project, round_id) and projection_progress(project, round_id) is None
    events: list[dict] = []
    first = round_projection(project, round_id, progress=lambda e: events.append(e.to_dict()))
    assert not first.cached and first.round_id == round_id
    assert np.array_equal(first.item_ids, np.load(folder / "item_ids.npy"))
    assert first.item_ids.dtype == np.int64 and first.xy.shape == (200, 2) and first.xy.dtype == np.float32
    assert events[-1]["phase"] == "layout" and events[-1]["done"] == events[-1]["total"]
    assert has_projection(project, round_id) and (folder / "umap.npy").is_file()
    assert not (folder / "umap.progress.json").exists() and projection_progress(project, round_id) is None
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]

    second = round_projection(project, round_id)
    assert second.cached and second.seconds < first.seconds / 5
    assert np.array_equal(second.xy, first.xy) and np.array_equal(second.item_ids, first.item_ids)


@pytest.mark.slow
def test_projection_progress_only_while_someone_computes(project):
    round_id = latest_latent_round(project)
    folder = project.round_dir(round_id)
    (folder / "umap.progress.json").write_text(json.dumps({"phase": "layout", "done": 5, "total": 500}))
    with file_lock(folder / "umap.lock"):  # as a computing process holds it
        assert projection_progress(project, round_id).done == 5
    assert projection_progress(project, round_id) is None  # a file left by a dead process
    (folder / "umap.progress.json").unlink()


@pytest.mark.slow
def test_concurrent_callers_compute_once(project, monkeypatch):
    round_id = latest_latent_round(project)
    for name in ("umap.npy", "umap_ids.npy"):
        (project.round_dir(round_id) / name).unlink(missing_ok=True)
    calls = []
    real = maps_cache.umap_2d
    monkeypatch.setattr(maps_cache, "umap_2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    start, results = threading.Barrier(2), []

    def ask():
        other = Project.open(project.root)  # each caller its own handle, as two sessions
        start.wait()
        results.append(round_projection(other, round_id))

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1 and sorted(r.cached for r in results) == [False, True]
    assert np.array_equal(results[0].xy, results[1].xy)


# -- a latents file of the Demo page ---------------------------------------------

def test_cached_projection_of_a_file(digits, tmp_path):
    src = tmp_path / "latents.npy"
    np.save(src, digits[0][:300])
    first = cached_projection_of(src, seed=0)
    cache = tmp_path / "latents.umap.npy"
    assert first.shape == (300, 2) and cache.is_file()
    stamp = cache.stat().st_mtime_ns
    assert np.array_equal(cached_projection_of(src, seed=0), first) and cache.stat().st_mtime_ns == stamp

    np.save(src, digits[0][:250])  # the source changed: projected again
    assert cached_projection_of(src, seed=0).shape == (250, 2)

    npz = tmp_path / "run.npz"
    np.savez(npz, latents=digits[0][:40], labels=digits[1][:40])
    assert cached_projection_of(npz).shape == (40, 2) and (tmp_path / "run.umap.npy").is_file()
    np.savez(tmp_path / "two.npz", a=digits[0][:40], b=digits[0][:40])
    with pytest.raises(BadInput, match="'latents'"):
        cached_projection_of(tmp_path / "two.npz")
    with pytest.raises(BadInput, match="cannot read"):
        cached_projection_of(tmp_path / "missing.npy")


# -- what Explore draws and asks (vaal_core.maps.explore, vaal_core.maps.palette) -----------

def test_latent_map_shows_no_gold_folder(tmp_path):
    """A project whose answers came from class folders: every path the map
    holds (hover text, captions) masks the folder named after the image's
    gold class; a folder that is not its class stays."""
    from vaal_core.maps.cache import Projection
    from vaal_core.maps.explore import latent_map

    p = Project.create(tmp_path / "proj", tmp_path, 32, ["cat", "ship"])
    rows = [("cat/0001.jpg", "cat"), ("ship/0002.jpg", "ship"), ("holiday/cat/0003.jpg", "cat"),
            ("ship/0004.jpg", None), ("misc/0005.jpg", "cat")]
    p.add_items([{"path": path, "size_bytes": 1, "sha1": str(i), "width": 32, "height": 32, "cache_index": i,
                  "gold": gold} for i, (path, gold) in enumerate(rows)])
    ids = np.array([it.id for it in p.items()], dtype=np.int64)
    m = latent_map(p, Projection(ids, np.zeros((len(ids), 2), np.float32), round_id=1, seconds=0.0, cached=True))
    assert m.paths == ["•••/0001.jpg", "•••/0002.jpg", "holiday/•••/0003.jpg", "ship/0004.jpg", "misc/0005.jpg"]
    assert not any(gold and gold in shown.split("/")[:-1] for shown, (_, gold) in zip(m.paths, rows))


def test_a_question_holds_only_for_the_ids_and_class_it_named():
    from vaal_core.maps.explore import Question

    q = Question("label", (3, 1, 2), "ship", round_id=4, nonce="a")
    assert q.holds([3, 1, 2], "ship", 4)
    assert not q.holds([3, 1, 2, 5], "ship", 4)  # one more point selected
    assert not q.holds([3, 1], "ship", 4)  # one fewer
    assert not q.holds([1, 2, 3], "ship", 4)  # the same points, another selection (the order shown differs)
    assert not q.holds([3, 1, 2], "cat", 4) and not q.holds([3, 1, 2], None, 4)  # another class, or none
    assert not q.holds([3, 1, 2], "ship", 5)  # another round's map
    push = Question("push", (3, 1, 2), round_id=4, nonce="a")
    assert push.holds([3, 1, 2], None, 4) and push.holds([3, 1, 2], "cat", 4)  # a push names no class
    # each asking its own token: the same question asked again is a new action; a token is stable
    assert q.token == Question("label", (3, 1, 2), "ship", 4, "a").token
    assert len({q.token, Question("label", (3, 1, 2), "ship", 4, "b").token, push.token,
                Question("label", (3, 1, 2), "cat", 4, "a").token}) == 4


def test_page_span_pages_every_item_once():
    from vaal_core.maps.explore import page_span

    assert page_span(74, 0, 24) == (0, 24, 0)
    assert page_span(74, 1, 24) == (24, 48, 1)
    assert page_span(74, 3, 24) == (72, 74, 3)
    assert page_span(74, 9, 24) == (72, 74, 3) and page_span(74, -2, 24) == (0, 24, 0)  # clamped
    assert page_span(0, 0, 24) == (0, 0, 0) and page_span(24, 1, 24) == (0, 24, 0)
    seen = [i for page in range(4) for i in range(*page_span(74, page, 24)[:2])]
    assert seen == list(range(74))
    with pytest.raises(BadInput, match="per_page"):
        page_span(10, 0, 0)


def test_class_palette_is_distinct_from_unlabeled_and_stable():
    from vaal_core.maps import palette

    cifar = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    colors, symbols = palette.class_colors(cifar), palette.class_symbols(cifar)
    styles = {(colors[c], symbols[c]) for c in cifar}
    assert len(styles) == 10  # every class its own look: the 10th repeats a colour with another symbol
    assert len(set(list(colors.values())[:9])) == 9 and symbols["truck"] != "circle"
    assert colors["ship"] != palette.UNLABELED_COLOR and "open" in palette.UNLABELED_SYMBOL
    assert not any(s.endswith("-open") for s in symbols.values())  # classes filled, unlabeled hollow

    def rgb(h):
        return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))

    for c in colors.values():  # no class is grey (what unlabeled looks like), black (the next-batch ring) or near white
        r, g, b = rgb(c)
        assert max(r, g, b) - min(r, g, b) > 40, c
        assert (r + g + b) / 3 < 215, c
    # a colour follows the class's place in the key order, not which classes have labels
    assert palette.class_colors(["cat", "ship"]) == {"cat": palette.MUTED[0], "ship": palette.MUTED[1]}
    assert palette.class_colors(cifar)["ship"] == palette.class_colors(cifar + ["new"])["ship"]
    assert palette.class_marker(cifar, "dog")["opacity"] >= 0.9
