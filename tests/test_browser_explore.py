"""Explore in a real browser: the map draws every image; a lasso selects
what it goes round, and a bulk action asks first, naming its count, and
acts on exactly the images it named; a click opens why the image was
picked and labels it; the pointer resting on a point shows its image;
replay steps through the rounds; the map's routes serve only this
project's images, by id; no path on the page gives a hidden gold label away.

Debian's Chromium driven by Playwright against a real `streamlit run
app.py`; 80 real CIFAR-10 JPEGs ingested with their class folders kept as
hidden gold labels (as a folder opened for evaluation is); two real
rounds (random, then `--fast` VAAL) and the map computed by the CLI, as the
app's worker does; the SQLite store checked after every step. Screenshots at 1280x720 go to
test-artifacts/explore-*.png.
"""

from __future__ import annotations

import gzip
import random
import re
import time
import urllib.error
import urllib.request

import pytest

from vaal_core.data.images import shown_path
from vaal_core.data.thumbs import SIDE
from vaal_core.data.ingest import init_project
from vaal_core.maps import geometry
from vaal_core.store import Project

from conftest import CLASSES, make_subset, run_cli
from test_browser import ARTIFACTS, _ready, _remember, _start_server, _stop_server
from test_browser import browser  # noqa: F401  (the fixture: one Chromium per module)

pytestmark = pytest.mark.browser

PER_CLASS = 8
MAP = '[data-testid="vaal-map"]'
# The map's selection, as item ids in the order selected.
SELECTED_JS = "() => window.vaalMap.selected.map(i => window.vaalMap.m.cols.ids[i])"
# Every point drawn: [x px, y px, item id] in page coordinates.
POINTS_JS = "() => window.vaalMap.ids().map(id => [...window.vaalMap.screenOf(id), id])"


@pytest.fixture(scope="module")
def explore(cifar_root, tmp_path_factory):
    """A home with one project of 80 CIFAR JPEGs (8 per class, the class
    folders kept as gold), 2 labels per class, two finished rounds (random,
    then `--fast` vaal; 5 of the first round's batch labeled between them)
    and the second round's map; a server on it."""
    tmp = tmp_path_factory.mktemp("explore")
    home = tmp / "home"
    images = make_subset(cifar_root, tmp / "photos", per_class=PER_CLASS)
    project, _, _ = init_project(home / "projects" / "map", images, CLASSES, gold_from_folders=True)
    project.set_labels([(it.id, it.gold) for it in project.items() if it.path.endswith(("0000.jpg", "0001.jpg"))],
                       source="csv")
    # round 1 random (it trains nothing, and keeps no map), round 2 VAAL: the map, its reconstructions and
    # suggestions are round 2's; the replay has both
    run_cli("round", project.root, "--sampler", "random", "--budget", "8", "--no-suggest", "--device", "cpu")
    first = [q["item_id"] for q in project.queue()][:5]
    project.set_labels([(i, project.item(i).gold) for i in first], source="ui")
    run_cli("round", project.root, "--fast", "--sampler", "vaal", "--budget", "8", "--device", "cpu")
    run_cli("embed", project.root)
    project_id = _remember(home, project.root)
    proc, url = _start_server(home)
    yield {"url": url, "id": project_id, "project": project}
    _stop_server(proc)


def _open(chromium, explore, height: int = 720):
    pg = chromium.new_page(viewport={"width": 1280, "height": height})
    pg.set_default_timeout(60_000)
    pg.goto(f"{explore['url']}/explore?project={explore['id']}")
    _drawn(pg)
    return pg


def _drawn(pg) -> None:
    """The map has drawn its points and the script run is over."""
    pg.locator(f'{MAP}[data-ready="true"]').wait_for()
    _ready(pg)


def _tool(pg, name: str) -> None:
    """Colour by: a segmented control's option."""
    pg.get_by_test_id("stButtonGroup").get_by_text(name, exact=True).click()
    _ready(pg)


def _map_in_view(pg) -> None:
    """Scroll the map to the middle of the window (the mouse acts only on what is on screen)."""
    pg.locator(f"{MAP} canvas").evaluate("c => c.scrollIntoView({block: 'center'})")
    time.sleep(0.3)


def _lasso(pg, x0: float, x1: float, y0: float = 0.01, y1: float = 0.99) -> int:
    """Draw a lasso around the map's box x0..x1, y0..y1 (fractions of its
    size), starting at (x0, y0); the count the page says is selected."""
    _map_in_view(pg)
    pg.locator(f'{MAP} button[data-tool="freeform"]').click()
    heading = pg.get_by_role("heading", name=re.compile(r"^\d+ selected$"))
    before = heading.inner_text() if heading.count() else None
    area = pg.locator(f"{MAP} canvas").bounding_box()
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


def _inside(pg, x0: float, x1: float, y0: float, y1: float, margin: float = 4) -> tuple[set[int], set[int]]:
    """(ids surely inside, ids surely outside) the map's box x0..x1, y0..y1:
    points within `margin` px of its edge are neither."""
    area = pg.locator(f"{MAP} canvas").bounding_box()
    left, right = area["x"] + x0 * area["width"], area["x"] + x1 * area["width"]
    top, bottom = area["y"] + y0 * area["height"], area["y"] + y1 * area["height"]
    inside, outside = set(), set()
    for x, y, item_id in pg.evaluate(POINTS_JS):
        if left + margin < x < right - margin and top + margin < y < bottom - margin:
            inside.add(item_id)
        elif not (left - margin < x < right + margin and top - margin < y < bottom + margin):
            outside.add(item_id)
    return inside, outside


def _isolated(pg, among: set[int] | None = None) -> tuple[float, float, int]:
    """The point farthest from its nearest neighbour (of `among`, if given):
    a click or a hover on it cannot land on another."""
    _map_in_view(pg)
    points = pg.evaluate(POINTS_JS)
    return max((p for p in points if among is None or p[2] in among),
               key=lambda p: min((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 for q in points if q[2] != p[2]))


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
        # every image is drawn (no sample), each once
        ids = pg.evaluate("() => window.vaalMap.ids()")
        assert sorted(ids) == sorted(it.id for it in project.items())
        assert pg.locator(MAP).get_attribute("data-points") == str(len(ids))

        inside, outside = _inside(pg, 0.01, 0.6, 0.01, 0.99)
        n = _lasso(pg, 0.01, 0.6)
        assert 24 < n < len(project.items()), n  # more than one page, not everything
        ids = pg.evaluate(SELECTED_JS)
        assert len(ids) == n and inside <= set(ids) and not (outside & set(ids))  # what the lasso went round
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

        # Another tab labels one of them between the question and the answer: the answer is refused, naming
        # that image and who labeled it, and nothing is labeled from here.
        n = _lasso(pg, 0.01, 0.6)
        ids = pg.evaluate(SELECTED_JS)
        _choose(pg, "ship")
        pg.get_by_role("button", name=f"Label {n} images as ship…").click()
        pg.get_by_role("button", name=f"Yes, label {n} as ship").wait_for()
        other = project.item(ids[0])
        project.set_label(other.id, "cat", source="ui")
        pg.get_by_role("button", name=f"Yes, label {n} as ship").click()
        _ready(pg)
        pg.get_by_text("Nothing was labeled: look at the selection again.").wait_for()
        assert "was labeled cat" in pg.get_by_test_id("stAlertContentError").inner_text()
        assert _labels(project) == {**before, other.id: "cat"}
        project.undo()
        assert _labels(project) == before
        pg.reload()  # the page as a person would find it after that undo, in the same colours
        _drawn(pg)
        _tool(pg, "Class")

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


def test_a_click_opens_why_it_was_picked_and_labels_it(browser, explore):  # noqa: F811
    """Click a point of the next batch: its image, its rank and what the
    sampler's score means, its nearest labeled images, the VAE's
    reconstruction, the task model's suggestion; then label it there."""
    project = explore["project"]
    before = _labels(project)
    queue = {q["item_id"]: q["rank"] for q in project.queue()}
    pg = _open(browser, explore)
    try:
        x, y, item_id = _isolated(pg, among=set(queue))  # so the click cannot land on a neighbour
        pg.mouse.move(x - 4, y - 4)
        pg.mouse.move(x, y, steps=3)
        time.sleep(0.3)
        pg.mouse.click(x, y)
        pg.get_by_role("heading", name="1 selected: why it is where it is").wait_for()
        _ready(pg)
        item = project.item(item_id)
        main = pg.get_by_test_id("stMain")
        assert pg.evaluate(SELECTED_JS) == [item_id]
        assert main.get_by_test_id("stText").first.inner_text().strip() == shown_path(item.path, item.gold)
        assert item.gold not in main.get_by_test_id("stText").first.inner_text()
        card = main.get_by_test_id("stExpander").filter(has_text="Why this image?")
        text = card.inner_text()
        round_id = project.current_round_id()
        size = sum(1 for b in project.round_batches() if b["round_id"] == round_id)
        assert f"Rank {queue[item_id]} of {size} in round {round_id}'s batch" in text
        assert "discriminator" in text and "Its nearest labeled images in the VAE's latent space" in text
        # the nearest labeled images, with their labels as the store has them now
        labels_now = set(project.labels().values())
        near = re.findall(r"^(.+) · \d+\.\d\d\s*$", text, re.M)
        assert len(near) == 3 and set(near) <= labels_now, (near, text)
        assert card.get_by_text("the VAE's reconstruction").count() == 1  # kept for the batch's images
        assert main.get_by_text(re.compile(rf"Suggested: .* \(round {round_id}'s task model\)")).count() == 1
        _shot(pg, "why-1280x720")
        assert _labels(project) == before

        _choose(pg, "frog")
        pg.get_by_role("button", name="Label as frog").click()
        _ready(pg)
        assert _labels(project) == {**before, item_id: "frog"}
        assert project.label_history(item_id)[-1]["source"] == "explore"
        # the map redraws with it labeled (a new state of the store, so a new payload)
        pg.wait_for_function(f"() => window.vaalMap.shownAs().labeled.includes({item_id})")
        project.undo()
        assert _labels(project) == before
    finally:
        pg.close()


def test_hover_shows_the_image_and_replay_steps_through_the_rounds(browser, explore):  # noqa: F811
    """Resting the pointer on a point shows that image's thumbnail (by its
    item id, from the project's decoded cache) and what it is, no path.
    Replay shows, round by round, the labels each round trained on and the
    batch it picked, as the store recorded them; then today's state."""
    project = explore["project"]
    rounds = [r for r in project.rounds() if r["status"] == "done"]
    batches = {r["id"]: {b["item_id"] for b in project.round_batches() if b["round_id"] == r["id"]} for r in rounds}
    first_label = project.first_labeled_at()
    pg = _open(browser, explore)
    try:
        points = pg.evaluate(POINTS_JS)
        for item_id in random.Random(0).sample([p[2] for p in points], 5):
            x, y, _ = _isolated(pg, among={item_id})
            pg.mouse.move(x - 30, y - 30)
            pg.mouse.move(x, y, steps=4)
            img = pg.locator(f'[data-testid="vaal-map-card"] img[data-item-id="{item_id}"][data-shown="true"]')
            img.wait_for(timeout=10_000)
            assert img.evaluate("i => i.naturalWidth") == SIDE
            assert img.evaluate("i => new URL(i.src).pathname") == f"/vaal/thumb/{explore['id']}/{item_id}"
            words = pg.locator('[data-testid="vaal-map-card"]').inner_text()
            label = project.labels().get(item_id)
            assert words.startswith(f"#{item_id} · {label or 'unlabeled'}"), words
            assert not any(f"{c}/" in words for c in CLASSES)
        _shot(pg, "hover-1280x720")
        assert len(pg.evaluate("() => window.__vaalHoverMs")) >= 5
        pg.mouse.move(5, 5)  # off the map: the card goes
        pg.locator('[data-testid="vaal-map-card"]').wait_for(state="hidden")

        pg.locator('[data-testid="vaal-replay-play"]').click()
        for k, r in enumerate(rounds):
            pg.get_by_test_id("vaal-replay-step").get_by_text(f"round {r['id']} ({k + 1} of {len(rounds)})").wait_for()
            shown = pg.evaluate("() => window.vaalMap.shownAs()")
            before_round = {i for i, at in first_label.items() if at < r["created_at"]}
            assert shown["step"] == k and set(shown["labeled"]) == before_round
            assert set(shown["batch"]) == batches[r["id"]] - before_round
            if k == 0:
                _shot(pg, "replay-1280x720")
        pg.get_by_test_id("vaal-replay-step").get_by_text(f"now (after {len(rounds)} rounds)").wait_for()
        shown = pg.evaluate("() => window.vaalMap.shownAs()")
        assert set(shown["labeled"]) == set(project.labels())
        assert set(shown["batch"]) == {q["item_id"] for q in project.queue()}
        assert len(rounds) == 2 and batches[rounds[0]["id"]] & set(project.labels())  # the fixture's history
    finally:
        pg.close()


def test_the_map_routes_serve_only_this_projects_images_by_id(explore, tmp_path):
    """The payload holds every point and no path; thumbnails are served by
    item id for a project the server knows, nothing else; a foreign Host is
    refused like every other request."""
    project, url, pid = explore["project"], explore["url"], explore["id"]

    def get(path: str, host: str | None = None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(url + path, headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as err:
            return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}

    round_id = max(r["id"] for r in project.rounds() if r["status"] == "done")
    status, body, headers = get(f"/vaal/map/{pid}/{round_id}")
    assert status == 200 and headers["content-encoding"] == "gzip"
    header, cols = geometry.decode(body)
    assert header["n"] == len(project.items()) and sorted(cols["ids"]) == sorted(i.id for i in project.items())
    labels = project.labels()
    assert {int(i): header["classes"][c] for i, c in zip(cols["ids"], cols["cls"]) if c >= 0} == labels
    raw = gzip.decompress(body)
    assert not any(it.path.encode() in raw or it.path.rsplit("/", 1)[-1].encode() in raw
                   for it in project.items())  # no path, no file name: the browser knows images by id
    item = project.items()[0]
    status, jpeg, headers = get(f"/vaal/thumb/{pid}/{item.id}")
    assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    for bad in (f"/vaal/thumb/{pid}/999999", f"/vaal/thumb/{pid}/..%2F..%2Fproject.db", "/vaal/thumb/0000000000/1",
                f"/vaal/map/{pid}/999", f"/vaal/map/{pid}/x", "/vaal/map/nope/1"):
        status, body, _ = get(bad)
        assert status in (400, 404) and not body.startswith((b"\xff\xd8", b"SQLite")), (bad, status)
    assert get(f"/vaal/thumb/{pid}/{item.id}", host="evil.example")[0] == 403
    status, js, _ = get("/vaal/js/latent_map.js")
    assert status == 200 and b"regl" in js


def test_a_load_of_explore_asks_for_the_maps_scripts_while_streamlit_boots(browser, explore):  # noqa: F811
    """/explore is Streamlit's page with the map's scripts asked for in its
    head (Streamlit's widget scripts the page draws, the map's bundle), each
    fetched once: the map's own import takes the preloaded module rather
    than asking again; the map's WebGL is set up ahead. Other pages are
    Streamlit's page as it is."""
    url, pid = explore["url"], explore["id"]
    with urllib.request.urlopen(f"{url}/explore?project={pid}", timeout=30) as r:
        page = r.read().decode()
        assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
    with urllib.request.urlopen(f"{url}/label?project={pid}", timeout=30) as r:
        plain_page = r.read().decode()
    hinted = re.findall(r'<link rel="modulepreload" crossorigin href="([^"]+)">', page)
    assert len(hinted) > len(re.findall('rel="modulepreload"', plain_page))
    extra = [h for h in hinted if h not in plain_page]
    assert any("/vaal/js/latent_map.js?v=" in h for h in extra)
    for widget in ("BidiComponent", "Selectbox", "ButtonGroup"):
        assert any(f"/static/js/{widget}." in h for h in extra), widget
    for h in extra:  # every hint names a file the server has
        with urllib.request.urlopen(url + h.lstrip("."), timeout=30) as r:
            assert r.status == 200 and r.read(), h

    pg = browser.new_page(viewport={"width": 1280, "height": 720})
    pg.set_default_timeout(60_000)
    asked: list[str] = []
    pg.on("request", lambda req: asked.append(req.url.split("?")[0]))
    try:
        pg.goto(f"{url}/explore?project={pid}")
        _drawn(pg)
        pg.wait_for_function("() => window.__vaalMapPrepared === true")  # its WebGL set up ahead, in idle time
        for name in ("/vaal/js/latent_map.js", "/static/js/BidiComponent."):
            assert sum(name in a for a in asked) == 1, (name, [a for a in asked if name in a])
    finally:
        pg.close()
    try:  # behind the Host check like every other address
        urllib.request.urlopen(urllib.request.Request(f"{url}/explore", headers={"Host": "evil.example"}), timeout=30)
        raise AssertionError("a foreign Host got the page")
    except urllib.error.HTTPError as err:
        assert err.code == 403
