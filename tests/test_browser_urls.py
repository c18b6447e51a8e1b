"""Every page at its own address, in a real browser (Debian's Chromium and a
real `streamlit run app.py`), on a fresh home whose first start builds the
digits demo: /label, /train, /explore, /demo and /project each open their
own page (no "Page not found"), ?project= kept; the root opens Label, or
Project when no project is open. And the demo's names give no answer away
on the Label page. A 1280x720 screenshot of the Label page on the demo goes
to test-artifacts/ to be looked at."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from vaal_core.data.digits import DEMO_PROJECT, DIGIT_CLASSES
from vaal_core.services import workspace
from vaal_core.store import Project

from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _ready, _start_server, _stop_server

pytestmark = pytest.mark.browser

PAGES = {"project": "Project", "label": "Label", "train": "Train", "explore": "Explore", "demo": "Demo"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server on a fresh home, and one 1280x720 tab (a laptop screen)."""
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("home")
    proc, url = _start_server(home)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = browser.new_page(viewport={"width": 1280, "height": 720})
            pg.set_default_timeout(60_000)
            yield {"url": url, "home": home, "page": pg}
            browser.close()
    finally:
        _stop_server(proc)


def _open(pg, address: str | None) -> None:
    """Go to `address` (None: reload) and wait for the page to be drawn."""
    if address is None:
        pg.reload()
    else:
        pg.goto(address)
    _ready(pg)
    pg.locator('[data-testid="stSidebarNavLink"][aria-current="page"]').wait_for()


def _on_page(pg, title: str) -> None:
    """This page is the one drawn: its sidebar link is the current one, the
    tab bears its title (and a heading, where the page has one, says the
    same), and Streamlit said nothing of a missing page."""
    current = pg.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
    assert current.count() == 1 and current.get_by_text(title, exact=True).count() == 1
    pg.wait_for_function("(t) => document.title === t", arg=f"{title} · VAAL Studio")
    headings = pg.locator('[data-testid="stMain"] h1')
    assert headings.count() == 0 or headings.first.inner_text().strip() == title
    assert pg.get_by_text("Page not found").count() == 0


def _where(pg) -> tuple[str, dict]:
    parts = urlsplit(pg.url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_every_page_loads_at_its_own_address(site):
    pg, url, home = site["page"], site["url"], site["home"]
    # The root on a fresh home: the demo is built, and the tab is sent on to Label with the project's id.
    _open(pg, url)
    demo = home / "projects" / DEMO_PROJECT
    pid = workspace.project_id(demo)
    pg.wait_for_url(re.compile(r"/label\?"))  # the default page sends the tab on once its run is done
    assert _where(pg) == ("/label", {"project": pid})
    _on_page(pg, "Label")
    for path, title in PAGES.items():
        for query in (f"?project={pid}", ""):  # a shared link, and a bare address typed by hand
            _open(pg, f"{url}/{path}{query}")
            _on_page(pg, title)
            assert _where(pg) == (f"/{path}", {"project": pid})  # the project stays in the address
    # A reload keeps the page.
    _open(pg, f"{url}/train?project={pid}")
    _open(pg, None)
    _on_page(pg, "Train")
    assert _where(pg)[0] == "/train"


def test_the_root_opens_project_when_no_project_is_open(site):
    pg, url = site["page"], site["url"]
    _open(pg, f"{url}/?project=0123456789")  # an id this server does not know: nothing is open
    _on_page(pg, "Project")
    pg.wait_for_url(re.compile(r"/project\?"))
    assert _where(pg) == ("/project", {"project": "0123456789"})
    pg.get_by_text("does not know").first.wait_for()


def test_the_demo_names_give_no_answer_away(site):
    """The Label page on the demo, image after image: every file name shown
    is a bare number, never a class folder, and the sidebar counts the
    whole project."""
    pg, url, home = site["page"], site["url"], site["home"]
    project = Project.open(home / "projects" / DEMO_PROJECT)
    gold = {it.path: it.gold for it in project.items()}
    _open(pg, f"{url}/label?project={workspace.project_id(project.root)}")
    pg.get_by_role("button", name=re.compile(r"^1\b")).first.wait_for()
    pg.screenshot(path=str(ARTIFACTS / "urls-label-demo-1280x720.png"))
    main = pg.locator('[data-testid="stMain"]')
    shown: list[str] = []
    for _ in range(4):
        names = re.findall(r"\S*\d{4}\.png", main.inner_text())
        assert names, main.inner_text()
        for name in names:
            assert name in gold, f"{name!r} is not a stored path as is"
            assert not set(name.split("/")[:-1]) & set(DIGIT_CLASSES)
        shown.append(names[0])
        before = names[0]
        pg.keyboard.press("ArrowRight")  # the next image, nothing written
        pg.wait_for_function("(before) => !document.querySelector('[data-testid=\"stMain\"]').innerText"
                             ".includes(before)", arg=before)
        _ready(pg)
    assert len(set(shown)) == 4 and project.labels() == {}
    # the four shown were not sorted by class either: their answers differ
    assert len({gold[n] for n in shown}) > 1
    assert "0 of 1,797 labeled" in pg.locator('[data-testid="stSidebar"]').inner_text()
    project.close()
