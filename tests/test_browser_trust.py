"""Labeling a person can trust, in a real browser: Chromium driven by
Playwright against a real `streamlit run app.py`, on real CIFAR-10 JPEGs,
with the SQLite store checked after the browser acts.

- A suggestion below the calibrated threshold is shown but not
  pre-selected, and the grid's Enter leaves it alone while it accepts a
  calibrated one above the threshold.
- The batch-done prompt starts the next round with the last one's settings
  (a real worker process; the store gets the new round's row).
- The Label page fits a 1280 x 720 laptop screen: screenshots of the single
  and grid views at that size, and the last class button and Undo inside
  the viewport.

The round the first test labels from is written through the store's own
`start_round` / `finish_round`, as `loop/round.py` writes one, with stated
suggestions and calibration figures: a temperature is fitted only from 30
held-out labels on (`learn/calibration.MIN_HELD_OUT`, 10% of the labels:
300 labels), and a `--fast` round on a small project could not be made to
give both a confident and an unsure calibrated suggestion in reasonable
time on 2 CPU cores. The second test's round is a real one.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict

import numpy as np
import pytest

from vaal_core.data.cache import open_cache
from vaal_core.data.ingest import init_project
from vaal_core.learn.calibration import PRESELECT
from vaal_core.loop.round import RoundConfig
from vaal_core.store import Project

from conftest import make_subset
from test_browser import _ready, _remember, _shot
from test_browser import browser, server  # noqa: F401  (the fixtures: one Chromium, one server per module)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LAPTOP = {"width": 1280, "height": 720}
CALIBRATED = {"task": {"arch": "cnn", "accuracy": 0.71, "n_val": 42, "n_train": 380, "how": "held out",
                       "calibration": {"method": "temperature scaling", "calibrated": True, "n_held_out": 42,
                                       "temperature": 1.8, "ece_before": 0.21, "ece_after": 0.04}}}


# The page's buttons whose label overflows its box (drawn cut: "airpl..."); classes must be among the buttons.
CUT_LABELS = """(classes) => { const b = [...document.querySelectorAll('[data-testid="stMain"] button')];
  if (!classes.every(c => b.some(x => x.innerText.trim().startsWith(c + ' ')))) return ['a class is missing'];
  return b.filter(x => [...x.querySelectorAll('p, div, span, code')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(x => x.innerText); }"""
# The grid's tiles: their heights, and the first one's top.
TILES = """() => { const t = [...document.querySelectorAll('[class*="st-key-tile_"]')];
  return [t.map(e => Math.round(e.getBoundingClientRect().height)),
          t.length ? t[0].getBoundingClientRect().top : null]; }"""


def _project(server, cifar_root, tmp_path, name: str, classes: list[str], per_class: int) -> tuple[Project, str]:
    images = make_subset(cifar_root, tmp_path / name, per_class=per_class, classes=classes)
    project, _, _ = init_project(server["home"] / "projects" / name, images, classes)
    return project, f"{server['url']}/?project={_remember(server['home'], project.root)}"


def _written_round(project: Project, batch: list[int], guesses: dict[int, tuple[str, float]], metrics: dict,
                   cfg: RoundConfig) -> int:
    """A finished round written as run_round writes one: every item scored,
    `batch` ranked first, the task model's (class, calibrated confidence)."""
    ids = [it.id for it in project.items()]
    order = batch + [i for i in ids if i not in batch]
    rid = project.start_round(cfg.sampler, len(batch), cfg.seed, {"round": asdict(cfg)})
    scores = {i: 0.95 - 0.9 * k / len(order) for k, i in enumerate(order)}  # VAAL's: 1 - P(labeled), best first
    project.finish_round(rid, order, [scores[i] for i in order],
                         [k + 1 if k < len(batch) else None for k in range(len(order))], len(project.labeled_ids()),
                         {"total_s": 1.0}, metrics, suggestions=[guesses.get(i) for i in order])
    if cfg.sampler == "vaal":
        _map_space(project, rid, scores)
    return rid


def _map_space(project: Project, rid: int, scores: dict[int, float]) -> None:
    """The arrays a round keeps for its map (loop/round_files.py `save_space`):
    here each image's pixels pooled to 8 x 8 stand in for the VAE's latents,
    and the discriminator's P(labeled) is 1 - the VAAL score."""
    items = project.items()
    cache = open_cache(project)
    pooled = np.stack([np.asarray(cache[it.cache_index], np.float32).reshape(8, 4, 8, 4, 3).mean((1, 3)).ravel()
                       for it in items]) / 255.0
    folder = project.round_dir(rid)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "item_ids.npy", np.array([it.id for it in items], np.int64))
    np.save(folder / "disc_prob.npy", np.array([1.0 - scores[it.id] for it in items], np.float32))
    np.save(folder / "latents.npy", pooled.astype(np.float32))


def _inside(pg, locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= pg.viewport_size["height"]


def test_only_confident_calibrated_suggestions_are_preselected_and_grid_enter_leaves_the_rest(
        browser, server, cifar_root, tmp_path):
    project, url = _project(server, cifar_root, tmp_path, "trust", CLASSES, per_class=3)
    items = project.items()
    truth = {it.id: it.path.split("/")[0] for it in items}
    batch = [it.id for it in items[::3]]  # one image of each class
    given = {it.id: truth[it.id] for it in items[1::3][:6]}  # a few labeled already: the nearest ones to show
    project.set_labels(list(given.items()), source="ui")
    # Unsure and sure in turn, rank 1 unsure; the unsure ones guess a wrong class at 41%.
    guesses = {i: (truth[i], 0.93) if k % 2 else (CLASSES[(CLASSES.index(truth[i]) + 1) % 10], 0.41)
               for k, i in enumerate(batch)}
    _written_round(project, batch, guesses, {**CALIBRATED, "map_space": "vae"},
                   RoundConfig(sampler="vaal", budget=len(batch), fast=True))
    sure = {i: g[0] for i, g in guesses.items() if g[1] >= PRESELECT}
    pg = browser.new_page(viewport=LAPTOP)
    pg.set_default_timeout(60_000)
    try:
        pg.goto(url)
        low = project.item(batch[0])
        pg.locator(f'img.vaal-shown[data-path="{low.path}"]').wait_for()
        _ready(pg)
        suggested = guesses[low.id][0]
        pg.get_by_text("not pre-selected (below 80% calibrated confidence)").wait_for()
        pg.get_by_text("calibrated on 42 held-out labels").first.wait_for()
        button = pg.get_by_role("button", name=f"{suggested} {CLASSES.index(suggested) + 1}", exact=True)
        assert button.get_attribute("class") == "vaal-button"  # not highlighted (drawn by views/keyboard.py)
        accept = pg.get_by_role("button", name=f"Accept: {suggested} Enter")
        assert accept.get_attribute("class") == "vaal-button"  # quiet, not the orange one
        _shot(pg, "trust-label-single-1280x720")
        last_class, undo = pg.get_by_role("button", name="truck 0", exact=True), pg.get_by_role("button", name="Undo")
        assert _inside(pg, last_class) and _inside(pg, undo), (last_class.bounding_box(), undo.bounding_box())
        assert _inside(pg, pg.locator("img.vaal-shown"))
        pg.get_by_text("Why this image?").click()  # the card: rank, score in words, P(labeled), nearest labeled
        pg.get_by_text("Its nearest labeled images in the VAE's latent space").wait_for()
        pg.get_by_text("Its score: the discriminator's chance this looks labeled: 0.05").wait_for()
        _ready(pg)
        pg.get_by_text("Its nearest labeled images").scroll_into_view_if_needed()
        _shot(pg, "trust-label-why-1280x720")
        pg.get_by_text("Why this image?").click()

        pg.keyboard.press("ArrowRight")  # rank 2: a confident calibrated suggestion, pre-selected
        high = project.item(batch[1])
        pg.locator(f'img.vaal-shown[data-path="{high.path}"]').wait_for()
        name = f"{truth[high.id]} {CLASSES.index(truth[high.id]) + 1}"
        pg.wait_for_function("(name) => [...document.querySelectorAll('button')].some(b => b.innerText.replace("
                             "/\\s+/g, ' ').trim() === name && b.classList.contains('primary'))", arg=name)
        _ready(pg)
        pg.evaluate("document.activeElement.blur()")
        _shot(pg, "trust-label-single-confident-1280x720")
        pg.keyboard.press("ArrowLeft")  # back to rank 1: the grid's page starts there and holds the whole batch
        pg.locator(f'img.vaal-shown[data-path="{low.path}"]').wait_for()

        pg.get_by_text("Grid", exact=True).click()
        pg.get_by_role("button", name=f"Accept the {len(sure)} marked ✓ Enter").wait_for()
        _ready(pg)
        _shot(pg, "trust-label-grid-1280x720")
        # Buttons show their whole label ("automobile", not "autom..."); tiles are all one size.
        assert pg.evaluate(CUT_LABELS, CLASSES) == []
        heights, top = pg.evaluate(TILES)
        assert len(heights) == 16 and len(set(heights)) == 1, heights
        pg.evaluate("document.activeElement.blur()")  # focus off the view switch: the key is the page's
        pg.keyboard.press("Enter")
        pg.get_by_text(f"{len(batch) - len(sure)} left unlabeled: below 80% calibrated confidence").wait_for()
        assert pg.evaluate(TILES)[1] == top, "the tiles moved after the key"
        _ready(pg)
        pg.set_viewport_size({"width": 1280, "height": 1500})  # the whole grid, to look at its tiles
        _shot(pg, "trust-label-grid-after-enter-1280x1500")
    finally:
        pg.close()
    labels = {i: c for i, c in project.labels().items() if i not in given}
    assert labels == sure, "grid Enter must accept exactly the confident calibrated suggestions"
    assert {project.label_history(i)[-1]["source"] for i in sure} == {"suggestion"}
    assert not set(labels) & {i for i in guesses if i not in sure}


def test_the_batch_done_prompt_starts_the_next_round_with_the_same_settings(browser, server, cifar_root, tmp_path):
    project, url = _project(server, cifar_root, tmp_path, "flow", ["airplane", "cat", "ship"], per_class=6)
    batch = [it.id for it in project.items()][:4]
    cfg = RoundConfig(sampler="random", budget=4, seed=3, device="cpu", fast=True, audit=0.0)
    _written_round(project, batch, {}, {}, cfg)
    project.set_labels([(i, "airplane") for i in batch], source="ui")  # the batch is done
    pg = browser.new_page(viewport=LAPTOP)
    pg.set_default_timeout(60_000)
    try:
        pg.goto(url)
        pg.get_by_text("Round 1's batch is labeled.").wait_for()
        pg.get_by_text("Train round 2 with the same settings?").wait_for()
        _ready(pg)
        _shot(pg, "trust-label-batch-done-1280x720")
        pg.get_by_role("button", name="Train round 2").click()
        # The strip under the title says so while the worker starts and trains (labeling goes on meanwhile).
        pg.get_by_text(re.compile("Starting the training worker|is training in the background|round 2's batch")) \
            .first.wait_for()
        _shot(pg, "trust-label-round-started-1280x720")
        deadline = time.monotonic() + 100
        while len(project.rounds()) < 2 or project.rounds()[-1]["status"] == "running":
            assert time.monotonic() < deadline, f"no round 2 done: {project.rounds()[-1]}"
            time.sleep(0.5)
        pg.get_by_text("rank 1 of 4 in round 2's batch").first.wait_for()  # the new queue, swapped in by the strip
    finally:
        pg.close()
    new = project.rounds()[-1]
    assert new["id"] == 2 and new["status"] == "done", new
    assert (new["sampler"], new["budget"], new["seed"]) == ("random", 4, 3)
    assert {k: new["settings"]["round"][k] for k in ("fast", "device", "audit")} == \
        {"fast": True, "device": "cpu", "audit": 0.0}
