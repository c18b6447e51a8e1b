"""The notebook widgets in a real JupyterLab: a `jupyter lab` server this
test starts (a token, localhost only), Debian's Chromium driven by
Playwright, a real kernel running `vc.Labeler` and `vc.LatentMap` on a
project of real digit images, and the SQLite store checked afterwards.

- Five number keys pressed on `vc.Labeler` label the five images shown at
  each press, in the store; the notebook's own shortcuts (1 makes a cell a
  heading in JupyterLab's command mode) do not fire.
- A lasso on `vc.LatentMap` (its lasso tool, then a drag over the left part of the map)
  is read back in Python as `m.selection`: item ids of points on that side.
- Past 10 classes, `/` and part of a name find a class on `vc.Labeler`, and
  Enter gives it, image after image.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import vaal_core as vc
from vaal_core.data.digits import digit_pixels
from vaal_core.maps.cache import round_projection
from vaal_core.store import Project

from conftest import ROOT
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PER_CLASS = 40
CLASSES = ["1", "2", "3"]


@pytest.fixture(scope="module")
def project_root(tmp_path_factory) -> Path:
    """120 real digits (1, 2, 3) in class folders, a --fast coreset round (the VAE's latents) and its map made here, so the
    kernel only draws them."""
    base = tmp_path_factory.mktemp("nb")
    data = load_digits()
    images = base / "images"
    for name in CLASSES:
        (images / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(data.target == int(name))[:PER_CLASS]):
            Image.fromarray(digit_pixels(data.images[i])).save(images / name / f"{k:03d}.png")
    p = vc.create_project(base / "digits", images=images, classes=CLASSES, progress=False)
    p.round(sampler="coreset", budget=20, fast=True, progress=False)
    round_projection(p.project, 1)
    p.close()
    return base / "digits"


MANY = CLASSES + ["northern cardinal", "blue jay", "american robin", "house sparrow", "mourning dove",
                  "black-capped chickadee", "red-winged blackbird", "european starling", "mallard"]


@pytest.fixture(scope="module")
def many_root(project_root) -> Path:
    """A second project on the same digits with 12 classes: past the number keys' 10."""
    p = vc.create_project(project_root.parent / "many", images=project_root.parent / "images", classes=MANY,
                          progress=False)
    p.close()
    return project_root.parent / "many"


@pytest.fixture(scope="module")
def lab(project_root, many_root, tmp_path_factory):
    """A JupyterLab server on a free local port with a token; its kernels import this checkout."""
    folder = tmp_path_factory.mktemp("lab")
    token = secrets.token_hex(16)
    port = _free_port()
    cells = [f"import vaal_core as vc\np = vc.open_project({str(project_root)!r})\nlabeler = vc.Labeler(p)\nlabeler",
             "m = vc.LatentMap(p)\nm",
             "import json\nprint('SELECTION', json.dumps({'ids': m.selection, "
             "'x': m.frame.set_index('item_id').loc[m.selection, 'x'].tolist()}))",
             f"many = vc.Labeler(vc.open_project({str(many_root)!r}))\nmany"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, folder / "widgets.ipynb")
    settings = folder / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "get notified about Jupyter news?" toast over the widgets
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VAAL_HOME": str(folder / "home"),
           "JUPYTER_CONFIG_DIR": str(folder / "config"), "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
           "OMP_NUM_THREADS": "1"}
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.user_settings_dir={folder / 'settings'}", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"JupyterLab did not start: {(folder / 'lab.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield {"url": url, "token": token, "folder": folder}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def notebook(lab):
    """The notebook open in Chromium with every cell run."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{lab['url']}/lab/tree/widgets.ipynb?token={lab['token']}", wait_until="commit")
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')",
                                   timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            time.sleep(1.0)
            if page.locator(".jp-Dialog .jp-mod-accept").count():  # "Select Kernel" on a fresh profile: Python 3
                page.click(".jp-Dialog .jp-mod-accept")
                page.wait_for_selector(".jp-Dialog", state="detached")
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            # Not awaited: the command's promise does not settle in a headless tab; the outputs are waited for.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_selector(".vaal-labeler img", timeout=60_000)
            page.wait_for_function("() => document.querySelectorAll('.vaal-labeler img').length == 2", timeout=60_000)
            page.wait_for_selector(".jp-OutputArea-output canvas", timeout=60_000)
            page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                                   ".some(o => o.innerText.includes('SELECTION'))", timeout=60_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook-failed.png"), full_page=True)
            (ARTIFACTS / "notebook-failed.txt").write_text(page.inner_text("body") + "\n---\n"
                                                          + (lab["folder"] / "lab.log").read_text()[-5000:])
            raise
        yield page
        page.screenshot(path=str(ARTIFACTS / "notebook-final.png"), full_page=True)
        browser.close()


def _shown_item(page) -> int:
    return int(page.get_attribute(".vaal-labeler .vaal-image img", "data-item"))


def test_labeler_labels_five_images_with_number_keys(notebook, project_root):
    page = notebook
    page.locator(".vaal-labeler .vaal-image img").first.scroll_into_view_if_needed()  # the first of two labelers
    page.click(".vaal-labeler .vaal-path")  # focus the widget, as a person clicks it
    page.screenshot(path=str(ARTIFACTS / "notebook-labeler.png"))
    given: dict[int, str] = {}
    for key in ["1", "2", "3", "2", "1"]:
        shown = _shown_item(page)
        page.keyboard.press(key)
        page.wait_for_function(f"() => {{ const i = document.querySelector('.vaal-labeler .vaal-image img');"
                               f" return i && i.dataset.item !== '{shown}'; }}", timeout=20_000)
        given[shown] = CLASSES[int(key) - 1]
    page.wait_for_function("() => document.querySelector('.vaal-labeler .vaal-last').innerText.includes('→')")
    assert "Last:" in page.inner_text(".vaal-labeler .vaal-last")
    page.screenshot(path=str(ARTIFACTS / "notebook-labeler-after.png"))

    with Project.open(project_root) as p:
        stored = p.labels()
        assert {i: stored.get(i) for i in given} == given  # the five images shown at the presses
        assert len(stored) == 5
        sources = {r["source"] for r in p.label_rows()}
        assert sources == {"notebook"}
    # JupyterLab's own shortcuts did not act on the keys: every cell is still a code cell.
    kinds = page.evaluate("() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')]"
                          ".map(c => c.classList.contains('jp-CodeCell') ? 'code' : 'other')")
    assert kinds == ["code", "code", "code", "code"]


def test_latent_map_lasso_is_read_from_python(notebook, project_root):
    page = notebook
    canvas = page.locator(".jp-OutputArea-output canvas").first
    canvas.evaluate("c => c.scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "notebook-map.png"))
    # A lasso around the left 45% of the canvas, as a person draws one: the lasso tool, then a drag.
    lasso = page.locator(".jp-OutputArea-output [title='Activate lasso selection']").first
    lasso.click()
    time.sleep(0.3)
    lasso.click()  # a mode button: a second click keeps the lasso (the first can go to focusing the output)
    time.sleep(0.3)
    assert "bg-brand" in lasso.get_attribute("class")  # jupyter-scatter marks the active mode's button
    box = canvas.bounding_box()  # after the click, which may scroll
    left, top, w, h = box["x"] + 4, box["y"] + 4, box["width"] * 0.45, box["height"] - 8
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in [(left + w, top), (left + w, top + h), (left, top + h), (left, top + 1)]:
        page.mouse.move(x, y, steps=12)
    page.mouse.up()
    time.sleep(1.0)
    page.screenshot(path=str(ARTIFACTS / "notebook-map-lasso.png"))
    # Run the third cell again: it prints m.selection.
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(2).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function("() => { const o = document.querySelectorAll('.jp-Notebook .jp-Cell')[2]"
                           ".querySelector('.jp-OutputArea-output'); return o && /\"ids\": \\[\\d/.test(o.innerText); }",
                           timeout=30_000)
    text = cells.nth(2).locator(".jp-OutputArea-output").inner_text()
    got = json.loads(text.split("SELECTION", 1)[1])
    with Project.open(project_root) as p:
        known = set(p.paths())
        proj = round_projection(p, 1)
    assert got["ids"] and set(got["ids"]) <= known
    # The lasso covered the map's left side: every selected point lies left of the map's middle
    # (the map is drawn to fit, so the canvas' middle is near the data's), and most of that side was taken.
    xs = proj.xy[:, 0]
    middle = (xs.min() + xs.max()) / 2
    assert max(got["x"]) < middle + 0.1 * (xs.max() - xs.min())
    left_side = int((xs < xs.min() + 0.3 * (xs.max() - xs.min())).sum())
    assert len(got["ids"]) >= 0.5 * left_side


def test_labeler_past_ten_classes_finds_a_class_by_typing(notebook, many_root):
    page = notebook
    widget = page.locator(".vaal-labeler").nth(1)
    widget.locator(".vaal-image img").scroll_into_view_if_needed()
    widget.locator(".vaal-path").click()  # focus the widget, as a person clicks it
    shown_titles = ("els => els.filter(b => getComputedStyle(b).display !== 'none').map(b => b.title)")

    def item() -> int:
        return int(widget.locator(".vaal-image img").get_attribute("data-item"))

    def wait_past(shown: int) -> None:
        page.wait_for_function("(shown) => { const i = document.querySelectorAll('.vaal-labeler')[1]"
                               ".querySelector('.vaal-image img'); return i && i.dataset.item !== shown; }",
                               arg=str(shown), timeout=20_000)

    first = item()
    page.keyboard.press("/")
    page.keyboard.type("CARD")  # any case, part of the name
    assert widget.locator(".vaal-classes .vaal-btn").evaluate_all(shown_titles) == ["northern cardinal"]
    page.keyboard.press("Enter")
    wait_past(first)
    second = item()
    assert page.evaluate("document.activeElement.className") == "vaal-find"  # the typing goes on
    page.keyboard.type("s")  # a letter is the name's here, not Skip: it matches several, the first is given
    assert widget.locator(".vaal-classes .vaal-btn").evaluate_all(shown_titles) == ["house sparrow",
                                                                                    "european starling"]
    page.keyboard.press("Enter")
    wait_past(second)
    page.keyboard.press("Escape")  # back to the widget's keys: every class shown again
    assert len(widget.locator(".vaal-classes .vaal-btn").evaluate_all(shown_titles)) == len(MANY)
    page.screenshot(path=str(ARTIFACTS / "notebook-labeler-find.png"))
    with Project.open(many_root) as p:
        assert p.labels() == {first: "northern cardinal", second: "house sparrow"}
