"""Class names and file names are text, everywhere: in a real browser, on a
real Streamlit server, a project whose classes (and image folders) are
named like HTML shows those names as typed in every Plotly chart (legends,
axis ticks, hover labels), in Explore's map (its legend and hover card) and
on every page, never as a link, bold text or a styled span.

Plotly renders a subset of HTML in chart text (<a href>, <b>, <span
style>, <br>), and Streamlit's markdown renders [text](url) links: both are
escaped by one helper each (`vaal_core.loop.chart.chart_text`,
`views.common.plain`). Screenshots go to test-artifacts/hostile-*.png.
"""

from __future__ import annotations

import html
import shutil
import time

import pytest
from conftest import ROOT, run_cli
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    _ready,
    _remember,
    _start_server,
    _stop_server,
)

from vaal_core.data.ingest import init_project

# The store refuses '/' in a class name (and a folder name cannot hold one),
# so the closing tags are left out: Plotly renders an unclosed tag all the same.
HOSTILE = ['<a href="https:evil.example">click me', "<b>bold", '<span style="color:red">red',
           '<a href="javascript:alert(3)">link']
SOURCE = ["airplane", "cat", "ship", "frog"]
PER_CLASS = 8
ARTIFACTS = ROOT / "test-artifacts"

# Every .js-plotly-plot on the page: what its text shows, and any markup a
# name could have created: a link, or a styled tspan holding the text inside
# a name's tag (Streamlit's theme draws chart titles bold: those are ours).
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => ({
  texts: [...gd.querySelectorAll('text')].map(t => t.textContent),
  links: gd.querySelectorAll('a').length,
  styled: [...gd.querySelectorAll('tspan[style]')].map(t => t.textContent.trim())
          .filter(t => ['click me', 'bold', 'red', 'link'].includes(t)),
}))"""
# The page outside the charts: no link or bold text made from a name.
PAGE_JS = """() => ({
  links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href') || '')
         .filter(h => /evil\\.example|javascript:/i.test(h)),
  bold: [...document.querySelectorAll('[data-testid="stMain"] b, [data-testid="stMain"] strong')]
        .map(b => b.textContent).filter(t => /^(bold|click me|link|red)$/.test(t.trim())),
  red: [...document.querySelectorAll('[data-testid="stMain"] span[style*="color"]')].map(s => s.textContent)
       .filter(t => t.trim() === 'red'),
})"""


def test_chart_text_escapes_what_plotly_renders():
    from vaal_core.loop.chart import chart_text

    assert chart_text('<a href="https:x">y') == '&lt;a href="https:x"&gt;y'
    assert chart_text("&mu; <br> &lt;") == "&amp;mu; &lt;br&gt; &amp;lt;"  # entities stay literal too
    assert chart_text(3) == "3"


@pytest.fixture(scope="module")
def hostile(cifar_root, tmp_path_factory):
    """A home with one small project whose classes (and image folders) have
    hostile names, some labels, one finished quick vaal round with its map,
    and one finished demo run over the same folders; a server on it."""
    tmp = tmp_path_factory.mktemp("hostile")
    home, images = tmp / "home", tmp / "photos"
    for src, name in zip(SOURCE, HOSTILE):
        (images / name).mkdir(parents=True)
        for f in sorted((cifar_root / "train" / src).iterdir())[:PER_CLASS]:
            shutil.copy(f, images / name / f.name)
    project, _, _ = init_project(home / "projects" / "hostile", images, HOSTILE)
    assert project.classes() == HOSTILE  # the store takes these names as they are
    by_class = {name: [i for i in project.items() if i.path.startswith(name + "/")] for name in HOSTILE}
    project.set_labels([(item.id, name) for name, items in by_class.items() for item in items[:3]])
    run_cli("round", project.root, "--fast", "--sampler", "vaal", "--budget", "6", "--no-suggest",
            "--device", "cpu")
    run_cli("embed", project.root)
    run_cli("simulate", "--images", images, "--samplers", "vaal", "--init", "8", "--budget", "4",
            "--rounds", "1", "--seeds", "1", "--fast", "--device", "cpu", "--map",
            "--out", home / "demo-runs" / "20260101-000000-photos" / "sim.json")
    project_id = _remember(home, project.root)
    proc, url = _start_server(home)
    yield {"url": url, "id": project_id, "project": project}
    _stop_server(proc)


@pytest.fixture(scope="module")
def page(hostile):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 2400})  # tall: one screenshot per page
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _open(pg, hostile, path: str) -> None:
    pg.goto(f"{hostile['url']}/{path}?project={hostile['id']}")
    _ready(pg)


def _charts(pg, n: int) -> list[dict]:
    pg.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}")
    time.sleep(0.5)  # legends and ticks are drawn just after the plot
    return pg.evaluate(CHARTS_JS)


def _assert_text_only(pg, charts: list[dict], shown: list[str]) -> None:
    """No chart made markup of a name; every name in `shown` is on screen as typed."""
    for chart in charts:
        assert chart["links"] == 0, chart
        assert chart["styled"] == [], chart
    texts = [t for chart in charts for t in chart["texts"]]
    for name in shown:
        assert name in texts, (name, texts)
    outside = pg.evaluate(PAGE_JS)
    assert outside == {"links": [], "bold": [], "red": []}, outside


def _point(pg, chart: int, trace: int, point: int) -> tuple[float, float]:
    """Where one point of a chart is on the screen (scrolled into view)."""
    pg.evaluate("(c) => document.querySelectorAll('.js-plotly-plot')[c].scrollIntoView({block: 'center'})", chart)
    time.sleep(0.3)
    return tuple(pg.evaluate("""([c, i, j]) => {
        const gd = document.querySelectorAll('.js-plotly-plot')[c], t = gd._fullData[i];
        if (t.type === 'bar') {  // the middle of the bar's drawn rectangle
            const b = gd.querySelectorAll('.trace.bars')[i].querySelectorAll('.point path')[j]
                        .getBoundingClientRect();
            return [b.left + b.width / 2, b.top + b.height / 2];
        }
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(t.x[j]), r.top + ya._offset + ya.d2p(t.y[j])];
    }""", [chart, trace, point]))


def _hover(pg, chart: int, trace: int, point: int) -> str:
    """Move the mouse over one point of a chart; the hover label's text."""
    x, y = _point(pg, chart, trace, point)
    pg.mouse.move(x - 3, y - 3)
    pg.mouse.move(x, y, steps=3)
    pg.wait_for_function("(c) => document.querySelectorAll('.js-plotly-plot')[c]"
                         ".querySelector('.hoverlayer .hovertext')", arg=chart)
    return pg.evaluate("(c) => document.querySelectorAll('.js-plotly-plot')[c].querySelector('.hoverlayer')"
                       ".textContent", chart)


def _shot(pg, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"hostile-{name}.png"))


@pytest.mark.browser
def test_train_page_charts_show_names_as_text(hostile, page):
    _open(page, hostile, "train")
    page.get_by_text("Labels per class when each round started").wait_for()
    charts = _charts(page, 3)
    _shot(page, "train")
    _assert_text_only(page, charts, HOSTILE)
    per_class = next(k for k, c in enumerate(charts) if "Labels per class when each round started" in c["texts"])
    bold = HOSTILE.index("<b>bold")
    hover = _hover(page, per_class, bold, 0)
    assert "<b>bold" in hover, hover
    _shot(page, "train-hover")
    _assert_text_only(page, page.evaluate(CHARTS_JS), [])


# Explore's map (a WebGL canvas, views/latent_map.py) writes names into its
# legend and hover card as text nodes: no element a name could have made.
MAP_JS = """() => { const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot
    && e.shadowRoot.querySelector('[data-testid="vaal-map"]'));
  const map = host.shadowRoot.querySelector('[data-testid="vaal-map"]');
  return {legend: [...map.querySelectorAll('.vm-legend span')].map(s => s.textContent),
          card: map.querySelector('[data-testid="vaal-map-card"]').textContent,
          made: map.querySelectorAll('a, b, strong, span[style], img:not(.vm-thumb)').length}; }"""


@pytest.mark.browser
def test_explore_by_class_shows_names_as_text(hostile, page):
    project = hostile["project"]
    _open(page, hostile, "explore")
    page.get_by_test_id("stButtonGroup").get_by_text("Class", exact=True).click()
    _ready(page)
    page.locator('[data-testid="vaal-map"][data-ready="true"]').wait_for()
    page.wait_for_function("() => window.vaalMap && window.vaalMap.data.colour === 'class'")
    time.sleep(0.5)
    drawn = page.evaluate(MAP_JS)
    assert all(name in drawn["legend"] for name in HOSTILE), drawn["legend"]  # each name, as typed
    assert drawn["made"] == 0, drawn
    _shot(page, "explore")
    _assert_text_only(page, [], [])

    # The pointer on a point labeled with the first name: the card says the name as typed.
    item = next(i for i in project.items() if project.labels().get(i.id) == HOSTILE[0])
    page.locator('[data-testid="vaal-map"] canvas').evaluate("c => c.scrollIntoView({block: 'center'})")
    time.sleep(0.3)
    x, y = page.evaluate(f"() => window.vaalMap.screenOf({item.id})")
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y, steps=3)
    page.locator(f'[data-testid="vaal-map-card"] img[data-item-id="{item.id}"][data-shown="true"]').wait_for()
    drawn = page.evaluate(MAP_JS)
    card = drawn["card"]
    assert card == f"#{item.id} · {HOSTILE[0]}" or card.startswith(f"#{item.id} · {HOSTILE[0]} · "), card
    assert drawn["made"] == 0, drawn
    _shot(page, "explore-hover")

    # Click that point: the selection's panel names its class and file as typed too.
    page.mouse.click(x, y)
    page.get_by_text("1 selected").wait_for()
    _ready(page)
    box = page.get_by_test_id("stSelectbox").filter(has_text="Class")  # no class until one is chosen
    box.click()
    box.locator("input").fill(HOSTILE[0])
    assert page.get_by_role("option", name=HOSTILE[0], exact=True).count() == 1  # options are plain text
    page.keyboard.press("Escape")
    main = page.get_by_test_id("stMain").inner_text()
    assert f"label: {HOSTILE[0]}" in main and f"{HOSTILE[0]}/" in main, main
    _shot(page, "explore-selected")
    _assert_text_only(page, [], [])


@pytest.mark.browser
def test_demo_charts_show_names_as_text(hostile, page):
    _open(page, hostile, "demo")
    page.get_by_text("Where each sampler picked").wait_for()
    charts = _charts(page, 2)
    _shot(page, "demo")
    _assert_text_only(page, charts, [])
    caption = page.get_by_text("Picked per class:").inner_text()
    for name in HOSTILE:
        assert name in caption, caption
    hover = _hover(page, 0, 1, 0)  # the accuracy chart: a sampler's line, its name in the hover's side box
    assert "labels:" in hover and ("random" in hover or "vaal" in hover), hover
    picks = len(charts) - 1  # the map is the last chart on the page
    hover = _hover(page, picks, 0, 0)
    assert any(name in hover for name in HOSTILE), hover
    _shot(page, "demo-hover")
    _assert_text_only(page, page.evaluate(CHARTS_JS), [])

    # Replay: the picks map plays its rounds from the initial set; the slider follows them to the last.
    slider = ("(c) => document.querySelectorAll('.js-plotly-plot')[c]"
              ".querySelector('.slider-group > .slider-label').textContent")
    assert page.evaluate(slider, picks) == "picks up to: round 1"  # it opens on the whole run
    page.locator(".js-plotly-plot").nth(picks).locator(".updatemenu-button").first.click()
    page.wait_for_function(f"(c) => ({slider})(c) === 'picks up to: initial set'", arg=picks, polling=20)
    page.wait_for_function(f"(c) => ({slider})(c) === 'picks up to: round 1'", arg=picks)
    _assert_text_only(page, page.evaluate(CHARTS_JS), [])


@pytest.mark.browser
def test_project_chart_shows_names_as_text(hostile, page):
    _open(page, hostile, "project")
    charts = _charts(page, 1)
    _shot(page, "project")
    _assert_text_only(page, charts, HOSTILE)  # the per-class bars' axis ticks
    hover = _hover(page, 0, 0, HOSTILE.index('<span style="color:red">red'))
    assert '<span style="color:red">red' in hover, hover
    _shot(page, "project-hover")
    _assert_text_only(page, page.evaluate(CHARTS_JS), [])



@pytest.mark.browser
def test_label_buttons_show_names_as_text(hostile, page):
    """The single view's buttons are drawn by the keyboard component
    (views/keyboard.py), outside Streamlit's markdown: a name is their text."""
    _open(page, hostile, "label")
    page.locator("img.vaal-shown").wait_for()
    names = page.evaluate("() => [...document.querySelectorAll('button.vaal-button[data-action^=\"class_\"]')]"
                          ".map(b => b.childNodes[0].textContent)")
    assert names == HOSTILE, names
    assert page.evaluate("() => document.querySelectorAll('.vaal-buttons a, .vaal-buttons b, .vaal-buttons span[style]')"
                         ".length") == 0
    _shot(page, "label")
    _assert_text_only(page, [], [])
