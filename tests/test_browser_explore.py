"""Explore in a real browser: a bulk action asks first, naming its count,
and acts on exactly the images it named; a click selects one point; no
path on the page gives a hidden gold label away.

Debian's Chromium driven by Playwright against a real `streamlit run
app.py`; 80 real CIFAR-10 JPEGs ingested with their class folders kept as
hidden gold labels (as a folder opened for evaluation is); a real `--fast`
VAAL round and its map computed by the CLI, as the app's worker does; the
SQLite store checked after every step. Screenshots at 1280x720 go to
test-artifacts/explore-*.png.
"""

from __future__ import annotations

import re
import time

import pytest

from vaal_core.data.images import shown_path
from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import CLASSES, make_subset, run_cli
from test_browser import ARTIFACTS, _ready, _remember, _start_server, _stop_server
from test_browser import browser  # noqa: F401  (the fixture: one Chromium per module)

pytestmark = pytest.mark.browser

PER_CLASS = 8
# Each trace's selected points as item ids (the figure's customdata), the
# next batch's rings included (they repeat an unlabeled point's id).
SELECTED_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return [...new Set(gd._fullData.flatMap(t => (t.selectedpoints || []).map(j => Number(t.customdata[j]))))]; }"""
# Every point drawn: [x px, y px, item id, trace name] in page coordinates.
POINTS_JS = """() => { const gd = document.querySelector('.js-plotly-plot'), r = gd.getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return gd._fullData.flatMap(t => Array.from({length: t._length}, (_, j) =>
    [r.left + xa._offset + xa.d2p(t.x[j]), r.top + ya._offset + ya.d2p(t.y[j]), Number(t.customdata[j]), t.name])); }"""


@pytest.fixture(scope="module")
def explore(cifar_root, tmp_path_factory):
    """A home with one project of 80 CIFAR JPEGs (8 per class, the class
    folders kept as gold), 2 labels per class, a finished `--fast` vaal round
    and its map; a server on it."""
    tmp = tmp_path_factory.mktemp("explore")
    home = tmp / "home"
    images = make_subset(cifar_root, tmp / "photos", per_class=PER_CLASS)
    project, _, _ = init_project(home / "projects" / "map", images, CLASSES, gold_from_folders=True)
    project.set_labels([(it.id, it.gold) for it in project.items() if it.path.endswith(("0000.jpg", "0001.jpg"))],
                       source="csv")
    run_cli("round", project.root, "--fast", "--sampler", "vaal", "--budget", "8", "--no-suggest", "--device", "cpu")
    run_cli("embed", project.root)
    project_id = _remember(home, project.root)
    proc, url = _start_server(home)
    yield {"url": url, "id": project_id, "project": project}
    _stop_server(proc)


def _open(chromium, explore, height: int = 720):
    pg = chromium.new_page(viewport={"width": 1280, "height": height})
    pg.set_default_timeout(60_000)
    pg.goto(f"{explore['url']}/explore?project={explore['id']}")
    pg.locator(".js-plotly-plot").first.wait_for()
    _ready(pg)
    return pg


def _tool(pg, name: str) -> None:
    """Colour by / Select with: a segmented control's option."""
    pg.get_by_test_id("stButtonGroup").get_by_text(name, exact=True).click()
    _ready(pg)


def _map_in_view(pg) -> None:
    """Scroll the map to the middle of the window (the mouse acts only on what is on screen)."""
    pg.evaluate("() => document.querySelector('.js-plotly-plot').scrollIntoView({block: 'center'})")
    time.sleep(0.3)


def _lasso(pg, x0: float, x1: float, y0: float = 0.01, y1: float = 0.99) -> int:
    """Draw a lasso around the map's box x0..x1, y0..y1 (fractions of its
    size), starting at (x0, y0); the count the page says is selected. It
    must start outside the last selection, as a person's does: a drag that
    starts inside one draws nothing (Plotly keeps the old outline)."""
    _map_in_view(pg)
    heading = pg.get_by_role("heading", name=re.compile(r"^\d+ selected$"))
    before = heading.inner_text() if heading.count() else None
    area = pg.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0 + 0.01)]
    pg.mouse.move(area["x"] + x0 * area["width"], area["y"] + y0 * area["height"])
    pg.mouse.down()
    for fx, fy in corners:
        pg.mouse.move(area["x"] + fx * area["width"], area["y"] + fy * area["height"], steps=8)
    pg.mouse.up()
    pg.wait_for_function("""(before) => [...document.querySelectorAll('[data-testid="stMain"] h3')]
        .some(h => /^\\d+ selected$/.test(h.innerText.trim()) && h.innerText.trim() !== before)""", arg=before)
    _ready(pg)
    return int(heading.inner_text().split()[0])


def _choose(pg, name: str) -> None:
    """Pick a class in the Class box by typing it, as a keyboard user does
    (the list shows only the options that fit the window)."""
    box = pg.get_by_test_id("stSelectbox").filter(has_text="Class")
    if box.locator("input").get_attribute("value") == name:
        return
    box.click()
    box.locator("input").fill(name)
    pg.get_by_role("option", name=name, exact=True).click()
    _ready(pg)


def _labels(project: Project) -> dict[int, str]:
    return dict(project.labels())


def _shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"explore-{name}.png"))


def test_a_bulk_label_asks_first_and_labels_exactly_what_it_named(browser, explore):  # noqa: F811
    project = explore["project"]
    before = _labels(project)
    pg = _open(browser, explore)
    try:
        _tool(pg, "Class")
        _shot(pg, "class-1280x720")
        # no path drawn on the map names an image's gold class (its folder)
        hover = pg.evaluate("() => document.querySelector('.js-plotly-plot')._fullData"
                            ".flatMap(t => Array.from(t.hovertext || []))")
        assert len(hover) >= len(project.items()) and not any(h.split("/")[0] in CLASSES for h in hover), hover[:5]

        _tool(pg, "Lasso")
        n = _lasso(pg, 0.01, 0.6)
        assert 24 < n < len(project.items()), n  # more than one page, not everything
        ids = pg.evaluate(SELECTED_JS)
        assert len(ids) == n
        main = pg.get_by_test_id("stMain")
        assert not any(f"{c}/" in main.inner_text() for c in CLASSES)  # captions: no gold folder either

        # Without a class nothing can be labeled: no class is chosen for the user.
        pg.get_by_role("button", name=f"Push {n} to the front of the queue…").wait_for()  # it names its count too
        ask = pg.get_by_role("button", name=f"Label {n} images as…")
        assert ask.is_disabled()
        chooser = pg.get_by_test_id("stSelectbox").filter(has_text="Class")
        assert chooser.locator("input").get_attribute("value") == ""
        assert "Choose a class" in (chooser.locator("input").get_attribute("placeholder") or chooser.inner_text())
        _choose(pg, "ship")

        # It asks, naming the count; nothing is written until the answer.
        pg.get_by_role("button", name=f"Label {n} images as ship…").click()
        _ready(pg)
        pg.get_by_text(f"Label {n} images as ship?").wait_for()
        assert _labels(project) == before
        # every selected image can be seen before confirming: the gallery pages through all of them
        pg.get_by_text(f"images 1-24 of {n}").wait_for()
        pg.get_by_text(f"images 1-24 of {n}").scroll_into_view_if_needed()
        _shot(pg, "ask-1280x720")
        shown = 0
        while True:
            shown += main.get_by_test_id("stImage").count()
            if pg.get_by_role("button", name="Next").is_disabled():
                break
            pg.get_by_role("button", name="Next").click()
            _ready(pg)
        assert shown == n and pg.get_by_text(re.compile(rf"images \d+-{n} of {n}")).count() == 1
        assert pg.get_by_text(f"Label {n} images as ship?").count() == 1  # paging keeps the question

        # Cancel: nothing labeled, the question gone.
        pg.get_by_role("button", name="Cancel").click()
        pg.get_by_text(f"Label {n} images as ship?").wait_for(state="detached")  # (the run may start late)
        _ready(pg)
        assert _labels(project) == before

        # The selection changes between asking and confirming: the question is void.
        pg.get_by_role("button", name=f"Label {n} images as ship…").click()
        pg.get_by_text(f"Label {n} images as ship?").wait_for()
        m = _lasso(pg, 0.99, 0.3, 0.05, 0.95)
        assert m != n
        pg.get_by_text("The selection changed after you were asked, so nothing was done").wait_for()
        assert pg.get_by_role("button", name=re.compile("^Yes, label")).count() == 0 and _labels(project) == before

        # Another tab labels one of them between the question and the answer: the map's colours change, the
        # question is void, and nothing is labeled from here.
        n = _lasso(pg, 0.01, 0.6)
        ids = pg.evaluate(SELECTED_JS)
        _choose(pg, "ship")
        pg.get_by_role("button", name=f"Label {n} images as ship…").click()
        pg.get_by_role("button", name=f"Yes, label {n} as ship").wait_for()
        other = project.item(ids[0])
        project.set_label(other.id, "cat", source="ui")
        pg.get_by_role("button", name=f"Yes, label {n} as ship").click()
        _ready(pg)
        pg.get_by_text(re.compile("changed after you were asked, so nothing was done")).wait_for()
        assert _labels(project) == {**before, other.id: "cat"}
        project.undo()
        assert _labels(project) == before
        pg.reload()  # the page as a person would find it after that undo, in the same colours and tool
        pg.locator(".js-plotly-plot").first.wait_for()
        _ready(pg)
        _tool(pg, "Class")
        _tool(pg, "Lasso")

        # Asked again on the first selection and confirmed: exactly those n images are ship, in one action.
        n = _lasso(pg, 0.01, 0.6)
        ids = pg.evaluate(SELECTED_JS)
        _choose(pg, "ship")
        pg.get_by_role("button", name=f"Label {n} images as ship…").click()
        pg.get_by_role("button", name=f"Yes, label {n} as ship").click()
        _ready(pg)
        after = _labels(project)
        changed = {i for i in after if after[i] != before.get(i)}
        assert {i for i in ids if before.get(i) != "ship"} == changed and all(after[i] == "ship" for i in ids)
        assert {i: lab for i, lab in after.items() if i not in ids} == {i: lab for i, lab in before.items()
                                                                        if i not in ids}
        undone = project.undo()  # one action takes all of them back
        assert undone is not None and _labels(project) == before
    finally:
        pg.close()


def test_a_click_selects_one_point(browser, explore):  # noqa: F811
    project = explore["project"]
    before = _labels(project)
    pg = _open(browser, explore)
    try:
        # the most isolated point on the map, so the click cannot land on a neighbour
        _map_in_view(pg)
        points = pg.evaluate(POINTS_JS)
        x, y, item_id, _ = max(points, key=lambda p: min(((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2)
                                                         for q in points if q[2] != p[2]))
        pg.mouse.move(x - 4, y - 4)
        pg.mouse.move(x, y, steps=3)
        time.sleep(0.3)
        pg.mouse.click(x, y)
        pg.get_by_text(re.compile(r"^label: ")).wait_for()
        _ready(pg)
        item = project.item(item_id)
        main = pg.get_by_test_id("stMain")
        assert pg.evaluate(SELECTED_JS) == [item_id]
        assert main.get_by_test_id("stImage").count() == 1  # that one image, large
        assert main.get_by_test_id("stText").inner_text().strip() == shown_path(item.path, item.gold)
        assert item.gold not in main.get_by_test_id("stText").inner_text()
        _shot(pg, "click-1280x720")
        assert _labels(project) == before
    finally:
        pg.close()
