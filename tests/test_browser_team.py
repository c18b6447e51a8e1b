"""Two annotators label one project at the same time, each in their own
browser, through two Streamlit app servers on one PostgreSQL database.

Real CIFAR-10 JPEGs, a real PostgreSQL server (tests/pg_server.py), two
real `streamlit run app.py` servers on one workspace, and Chromium driven by
Playwright's async API: alice's page on server 1 and bob's on server 2, two
browser contexts (separate cookies, separate Streamlit sessions), their key
presses interleaved in time. Both pages walk the same label order, so
without the image leases (vaal_core/store/team.py) both would show the same
first image; with them no image is ever on both screens, every label is the
press's of the annotator who saw that image, and the store counts 50 each.
Then server 1 is killed (SIGKILL): nothing labeled is lost, and bob labels on
through server 2.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import make_subset
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _remember, _start_server, _stop_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASSES = ["airplane", "cat", "ship"]
PER_CLASS = 50  # 150 images
PRESSES = 50  # per annotator
MORE = 3  # bob's presses after server 1 is killed
TIMEOUT_MS = 90_000  # one step on a loaded 2-core machine
# In the page, before the app's own scripts: every keydown (capture phase, before the app's
# listener) notes the image on screen at that moment, and a MutationObserver notes every image
# the page ever puts on screen (the single view's <img class="vaal-shown" data-path=...>).
WATCH = """
window.__presses = [];
window.__shown = [];
const shownPath = () => { const img = document.querySelector("img.vaal-shown"); return img ? img.dataset.path : null; };
document.addEventListener("keydown", (e) => window.__presses.push([e.key, shownPath()]), true);
new MutationObserver(() => {
  const p = shownPath();
  if (p && window.__shown[window.__shown.length - 1] !== p) window.__shown.push(p);
}).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-path", "class"] });
"""
CHANGED = ("(before) => { const t = document.querySelector('img.vaal-shown');"
           " return t && t.dataset.path !== before; }")


def _key(name: str, k: int) -> str:
    """The k-th key an annotator presses: all three classes, in a different pattern for each."""
    return "123"[k % 3] if name == "alice" else "312"[(k * k + k // 3) % 3]


class Annotator:
    """One person: a browser context of their own, their page on one server."""

    def __init__(self, name: str, url: str, project_id: str):
        self.name, self.label_url = name, f"{url}/label?project={project_id}"
        self.page = None
        self.press_s: list[float] = []  # press to next image, seconds
        self.press_at: list[float] = []  # when each press was sent (time.monotonic)

    async def open(self, browser) -> None:
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page = page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await page.add_init_script(WATCH)
        await page.goto(self.label_url)
        await page.get_by_text("Who is labeling?").wait_for()
        await page.get_by_role("textbox", name="Your name").fill(self.name)
        await page.get_by_role("button", name="Start labeling").click()
        await page.locator("img.vaal-shown").wait_for()
        await page.get_by_role("button", name="airplane 1", exact=True).wait_for()
        sidebar = page.get_by_test_id("stSidebar")
        await sidebar.get_by_text(re.compile(rf"Labeling as\s+{self.name}")).wait_for()

    async def shown(self) -> str:
        return await self.page.locator("img.vaal-shown").get_attribute("data-path")

    async def label(self, presses: range) -> None:
        """Press a class key per image, each on the image the last press brought up."""
        for k in presses:
            before = await self.shown()
            start = time.monotonic()
            self.press_at.append(start)
            await self.page.keyboard.press(_key(self.name, k))
            await self.page.wait_for_function(CHANGED, arg=before)
            self.press_s.append(time.monotonic() - start)

    async def seen(self) -> tuple[list[tuple[str, str]], list[str]]:
        """(key, path on screen) of every press, and every path ever on screen."""
        return tuple(await self.page.evaluate("() => [window.__presses, window.__shown]"))


def _labels(project: Project) -> list[dict]:
    return project.db.rows("SELECT l.item_id, l.author, i.path, c.name AS class FROM labels l "
                           "JOIN items i ON i.id = l.item_id JOIN classes c ON c.id = l.class_id "
                           "WHERE l.undone_at IS NULL ORDER BY l.id")


def _check_presses(name: str, presses: list, rows: list[dict]) -> None:
    """Each press of `name` is a standing label by `name`, of the key's class, on the image
    that was on their screen at the press; and `name` has no label no press asked for."""
    mine = {r["path"]: r for r in rows if r["author"] == name}
    for k, (key, path) in enumerate(presses):
        assert path is not None, f"{name}'s press {k} ({key}) had no image on screen"
        assert path in mine, (f"{name}'s press {k} ({key}) on {path} left no label of theirs "
                              f"(the label there: {[r for r in rows if r['path'] == path]})")
        assert mine[path]["class"] == CLASSES[int(key) - 1], (name, k, key, mine[path])
    assert set(mine) == {p for _, p in presses}, f"labels by {name} no press of theirs asked for"


def _run(coro):
    """asyncio.run in a thread of its own: no event loop of another test's gets in the way."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_two_annotators_on_two_servers_label_one_postgres_project_at_once(cifar_root, pg_url, tmp_path):
    t0 = time.monotonic()
    home = tmp_path / "home"
    home.mkdir()
    images = make_subset(cifar_root, tmp_path / "photos", per_class=PER_CLASS, classes=CLASSES)
    project, _, _ = init_project(home / "projects" / "team", images, CLASSES, database=pg_url)
    assert (project.root / "database.json").is_file() and not (project.root / "project.db").exists()
    assert len(project.items()) == len(CLASSES) * PER_CLASS
    project_id = _remember(home, project.root)
    # Two servers on one home: both inherit PGPASSWORD (set by pg_url) from os.environ.
    servers = [_start_server(home), _start_server(home)]
    ARTIFACTS.mkdir(exist_ok=True)
    timings: dict[str, float] = {"setup": time.monotonic() - t0}

    async def story():
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            alice, bob = Annotator("alice", servers[0][1], project_id), Annotator("bob", servers[1][1], project_id)
            t = time.monotonic()
            await asyncio.gather(alice.open(browser), bob.open(browser))
            timings["names"] = time.monotonic() - t
            first = {a.name: await a.shown() for a in (alice, bob)}
            for a in (alice, bob):
                await a.page.screenshot(path=str(ARTIFACTS / f"team-{a.name}.png"))
            # Both walk the same order from its start: only the leases keep them on different images.
            assert first["alice"] != first["bob"], f"both pages show {first['alice']}: the leases did not hold"

            t = time.monotonic()
            await asyncio.gather(alice.label(range(PRESSES)), bob.label(range(PRESSES)))
            timings["label"] = time.monotonic() - t
            # At the same time, not one after the other: most of bob's presses fell among alice's.
            during = [at for at in bob.press_at if alice.press_at[0] < at < alice.press_at[-1]]
            assert len(during) > PRESSES // 2, f"only {len(during)} of bob's presses came while alice labeled"
            seen = {a.name: await a.seen() for a in (alice, bob)}

            # What the store holds, read as a third process would.
            store = Project.open(project.root)
            rows = _labels(store)
            status = store.status()["by_annotator"]
            assert len(rows) == 2 * PRESSES, f"{len(rows)} standing labels, not {2 * PRESSES}"
            assert len({r["path"] for r in rows}) == 2 * PRESSES, "an image has two standing labels"
            assert sorted(r["author"] for r in rows) == ["alice"] * PRESSES + ["bob"] * PRESSES
            for a in (alice, bob):
                presses, _ = seen[a.name]
                assert len(presses) == PRESSES, f"{a.name}: {len(presses)} key presses seen by the page"
                _check_presses(a.name, presses, rows)
            shown_to = {name: set(shown) for name, (_, shown) in seen.items()}
            both = shown_to["alice"] & shown_to["bob"]
            assert not both, f"images shown to both annotators: {sorted(both)}"
            assert status == {"alice": PRESSES, "bob": PRESSES}, status

            # Server 1 dies (SIGKILL): nothing labeled goes with it, and bob goes on through server 2.
            servers[0][0].kill()
            servers[0][0].wait(30)
            rows = _labels(Project.open(project.root))
            assert len(rows) == 2 * PRESSES and {r["author"] for r in rows} == {"alice", "bob"}
            t = time.monotonic()
            await bob.label(range(PRESSES, PRESSES + MORE))
            timings["after_kill"] = time.monotonic() - t
            presses, shown = await bob.seen()
            store = Project.open(project.root)
            rows = _labels(store)
            assert len(rows) == 2 * PRESSES + MORE and len({r["path"] for r in rows}) == len(rows)
            _check_presses("bob", presses, rows)
            assert not set(shown) & shown_to["alice"], "bob was shown an image alice was shown"
            assert store.status()["by_annotator"] == {"alice": PRESSES, "bob": PRESSES + MORE}
            await browser.close()
            return {a.name: a.press_s for a in (alice, bob)}

    try:
        press_s = _run(story())
    finally:
        for proc, _ in servers:
            if proc.poll() is None:
                _stop_server(proc)
    for name, s in press_s.items():
        s = sorted(s)
        print(f"{name}: press to next image median {s[len(s) // 2]:.2f} s, max {s[-1]:.2f} s")
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()}, f"total {time.monotonic() - t0:.1f}")
