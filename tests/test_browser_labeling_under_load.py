"""Keys pressed and class buttons clicked in a real browser while a round
trains (a real worker process using the CPU): every label lands on the
image shown at the press or click, exactly once, and the first key after
opening the page works.

Chromium driven by Playwright against a real `streamlit run app.py`, a real
`python -m vaal_core round` worker, real CIFAR-10 JPEGs, the SQLite store
checked afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import ROOT, make_subset
from test_browser import _ready, _remember, _shot, _start_server, _stop_server
from test_browser import browser  # noqa: F401  (the fixture: one Chromium per module)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASSES = ["airplane", "cat", "ship"]
KEYS = "123"
OBSERVER = """
window.__seen = [];
const shown = () => { const img = document.querySelector("img.vaal-shown"); return img ? img.dataset.path : null; };
document.addEventListener("keydown", (e) => window.__seen.push([e.key, shown()]), true);
document.addEventListener("click", (e) => {
  const button = e.target.closest("button.vaal-button");
  if (button) window.__seen.push([button.dataset.action, shown()]);
}, true);
"""


def _class_of(press: str) -> str:
    """The class a key ("2") or a class button ("class_1") gives."""
    return CLASSES[KEYS.index(press)] if press in KEYS else CLASSES[int(press.removeprefix("class_"))]


def _wait_for_change(pg, before: str, timeout_s: float) -> float:
    """Seconds until the shown image is no longer `before`."""
    start = time.monotonic()
    pg.wait_for_function("(before) => { const t = document.querySelector('img.vaal-shown');"
                         " return t && t.dataset.path !== before; }", arg=before, timeout=timeout_s * 1000)
    return time.monotonic() - start


def _shown_path(pg) -> str:
    """The path of the image on screen: the one the keys act on (views/keyboard.py draws it)."""
    return pg.locator("img.vaal-shown").get_attribute("data-path")


def _label_rows(project: Project) -> list[tuple[str, str]]:
    rows = project.db.rows("SELECT i.path, c.name FROM labels l JOIN items i ON i.id = l.item_id "
                           "JOIN classes c ON c.id = l.class_id WHERE l.undone_at IS NULL ORDER BY l.id")
    return [(r["path"], r["name"]) for r in rows]


def test_keys_pressed_while_a_round_trains_land_on_the_image_shown_exactly_once(browser, cifar_root, tmp_path):
    home = tmp_path / "home"
    images = make_subset(cifar_root, tmp_path / "photos", per_class=100, classes=CLASSES)
    project, _, _ = init_project(home / "projects" / "load", images, CLASSES)
    for cls in CLASSES:  # a few labels, so the round has something to learn from
        for item in [i for i in project.items() if i.path.startswith(cls + "/")][:3]:
            project.set_label(item.id, cls, source="csv")
    given_before = _label_rows(project)
    workspace_id = _remember(home, project.root)
    proc, url = _start_server(home)
    # The full-size round (not --fast): minutes of training on every core, longer than the test.
    env = {**os.environ, "VAAL_HOME": str(home), "OMP_NUM_THREADS": "2"}
    worker = subprocess.Popen([sys.executable, "-m", "vaal_core", "round", str(project.root), "--sampler", "vaal",
                               "--budget", "30"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    pg.set_default_timeout(90_000)
    # An observer of the page's own: at each keydown (capture phase, before the app's handlers) it notes
    # the image on screen. That, not a read before the press, is "the image the person saw".
    pg.add_init_script(OBSERVER)
    pressed: list[tuple[str, str, bool]] = []  # (path on screen at the press, class, must it be written)
    first_key_s: list[float] = []

    def collect(must: list[bool]) -> None:
        seen = pg.evaluate("() => window.__seen.splice(0)")
        assert len(seen) == len(must), seen
        pressed.extend((path, _class_of(key), m) for (key, path), m in zip(seen, must))

    try:
        deadline = time.monotonic() + 120
        while not Project.open(project.root).status()["training"]:
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "the round did not start"
            time.sleep(0.5)
        label_url = f"{url}/label?project={workspace_id}"  # the Label page's own address
        for load in range(3):  # the first key after opening the page, while the round trains
            pg.goto(label_url)
            pg.get_by_role("button", name="airplane 1", exact=True).wait_for()
            shown = _shown_path(pg)
            pg.keyboard.press(KEYS[load % 3])
            first_key_s.append(_wait_for_change(pg, shown, 60))
            collect([True])
        _ready(pg)
        for k in range(24):
            shown = _shown_path(pg)
            pg.keyboard.press(KEYS[k % 3])
            if k % 3 == 2:  # a double press: the second is on whatever is on screen 30 ms later
                time.sleep(0.03)
                pg.keyboard.press(KEYS[k % 3])
                time.sleep(2)
            _wait_for_change(pg, shown, 60)
            # A second press on the same image is the same press again (written once); on the next
            # image it labels that one.
            collect([True, False] if k % 3 == 2 else [True])
        for k in range(6):  # the class buttons: a click is sent with its drawing's token, like a key
            shown = _shown_path(pg)
            button = pg.get_by_role("button", name=f"{CLASSES[k % 3]} {KEYS[k % 3]}", exact=True)
            button.click(click_count=2 if k % 3 == 2 else 1)  # a double click: one drawing, written once
            _wait_for_change(pg, shown, 60)
            collect([True, False] if k % 3 == 2 else [True])
        training_during = Project.open(project.root).status()["training"]
        _shot(pg, "label-under-load")
    finally:
        pg.close()
        _stop_server(proc)
        worker.kill()
        worker.wait()
    rows = _label_rows(Project.open(project.root))[len(given_before):]
    print("pressed", pressed, "\nstored ", rows)
    # Every stored label is a press's, on the image on screen at that press, in order; every single
    # press is stored; a second press on the same image adds nothing.
    j = 0
    for path, cls, must in pressed:
        if j < len(rows) and rows[j] == (path, cls):
            j += 1
        else:
            assert not must, f"the press of {cls!r} on {path} was not written as such (stored: {rows[j:j + 2]})"
    assert j == len(rows), f"labels no press on screen asked for: {rows[j:]}"
    assert len({p for p, _ in rows}) == len(rows), "an image was labeled twice"
    assert max(first_key_s) < 15, f"first key after opening the page took {first_key_s} s"
    print(f"first key after a page load: {[round(s, 1) for s in first_key_s]} s; "
          f"round still training at the end: {training_during}")
