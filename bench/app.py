"""App benchmark in a real browser: prints figures, asserts nothing.

    python bench/app.py [--items 10000] [--labels 100] [--warmup 5] [--pause 0.3]
                        [--explore-sizes 10000,50000] [--explore-runs 3]
                        [--hovers 60] [--lassos 3] [--lasso-points 1000]
                        [--keep] [--port PORT] [--cifar DIR] [--screenshots DIR]
                        [--out FILE]

Drives Debian's Chromium with Playwright against a real `streamlit run
app.py` server, on projects built from real CIFAR-10 JPEGs in a temporary
VAAL_HOME:

  - Label page: keypress-to-next-image latency over --labels labels (after
    --warmup unmeasured ones) on an --items project. Each key is the shown
    image's own class (its folder), as a careful labeler would press. Times
    are taken inside the page (performance.now()): from the keydown event to
    (a) the shown path text changing, (b) the new <img> having loaded, (c)
    the next animation frame after that, (d) the script run having finished. The store is checked afterwards: label
    count and that every label went to the image it was meant for.
  - Explore page, the WebGL map (views/latent_map.py, frontend/latent_map),
    for each --explore-sizes project. Each project gets 1,000 gold labels
    and a real `--fast` VAAL round (timed), and its UMAP is computed once
    beforehand (timed, with vaal_core.maps.cache.round_projection), so the
    page finds the projection cached. Over --explore-runs visits (the first
    apart from the median of the rest; one browser context, so the map's
    payload and bundle are in the browser's cache after the first):
      * points drawn: the map's `data-points`, checked against the round's
        map (vaal_core.maps.geometry: its count and its ids);
      * first frame: ms from navigation start to the map's `data-ready`
        (its first frame with every point drawn), with the page's title
        shown, the first script run finished, and main-thread long tasks
        before that frame;
      * bytes: websocket bytes received until that frame, plus the map's
        payload from /vaal/map/ (its Content-Length: gzipped, as sent, and
        what came over the network), and the map's JS bundle apart (fetched
        on the first visit only);
    then, on the last visit's page:
      * hover to thumbnail: --hovers distinct points on screen (after 2
        unmeasured), the mouse moved onto each in a few steps (to where
        `vaalMap.screenOf(id)` says it is drawn) until the hover card shows
        that point's thumbnail; the in-page ms from the last mousemove to the
        <img> having loaded (`window.__vaalHoverMs`), p50 and p95, with the
        Python-side wall time per hover as a cross-check;
      * lasso: the Lasso tool round a box holding about --lasso-points
        points (grown around the middle of the map), the ms from the mouseup
        to the page's "N selected" heading (a script run with the selection)
        and to the map's own selection before it, median of --lassos tries
        (Clear selection between); N and the points inside the box.
    The targets, at 50,000 points, are printed beside the figures: first
    frame <= 2.0 s, bytes <= 1.5 MB, hover p95 <= 150 ms, a lasso of about
    1,000 points <= 1.0 s. (bench/map_scale.py measures the map alone, up to
    200,000 points.)

Writes bench/results/app-cpu.json (app-cuda.json on a GPU machine) beside
the printed table. Temporary folders and the server go away at the end,
also on an error or Ctrl-C, unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.map_scale import (LASSO_PROBE, MAP, MAP_FRAME, MAP_READY, clear_selection, cpu_model,  # noqa: E402
                             drag_lasso, hover_bench, lasso_box, map_in_view, positions)
from vaal_core.maps import cache as maps  # noqa: E402
from vaal_core.maps import geometry  # noqa: E402
from vaal_core.services import workspace  # noqa: E402
from vaal_core.data.ingest import init_project  # noqa: E402
from vaal_core.store import Project  # noqa: E402
from vaal_core.loop.round import RoundConfig, run_round  # noqa: E402

CIFAR_TAR = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEYS = [str(k) for k in range(1, 10)] + ["0"]
SEED_LABELS = 1000  # gold labels given to each Explore project before its round

# -- in-page instruments ---------------------------------------------------------

# Installed once on the Label page. A capture-phase keydown listener stamps
# the press; a MutationObserver (plus capture-phase image load events)
# stamps, without any Python round trip, the moment the path text changes,
# the new image has loaded, and the script run is over.
LABEL_PROBE = """() => {
  if (window.__probe) return;
  window.__probe = true;
  const text = () => { const t = document.querySelector('[data-testid="stMain"] [data-testid="stText"]');
                       return t ? t.innerText.trim() : null; };
  const img = () => document.querySelector('[data-testid="stMain"] img.vaal-shown');  // views/keyboard.py draws it
  const state = () => { const a = document.querySelector('[data-testid="stApp"]');
                        return a ? a.getAttribute('data-test-script-state') : null; };
  window.__shown = () => { const i = img(); return {text: text(), src: i ? i.src : null}; };
  window.__arm = (prev) => { window.__b = {prev: prev.text, prevSrc: prev.src, t0: null, text: null,
                                             tText: null, tImg: null, tFrame: null, tIdle: null}; };
  window.addEventListener('keydown', () => { const b = window.__b; if (b && b.t0 === null) b.t0 = performance.now(); },
                          true);
  const check = () => {
    const b = window.__b;
    if (!b || b.t0 === null) return;
    const now = performance.now();
    if (b.tText === null) {
      const t = text();
      if (t !== null && t !== b.prev) { b.tText = now; b.text = t; }
    }
    if (b.tText !== null && b.tImg === null) {
      const i = img();
      if (i && i.src !== b.prevSrc && i.complete && i.naturalWidth > 0) {
        b.tImg = now;
        requestAnimationFrame(() => { b.tFrame = performance.now(); });  // the frame that shows it
      }
    }
    if (b.tText !== null && b.tIdle === null && state() === 'notRunning') b.tIdle = now;
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      characterData: true});
  document.addEventListener('load', check, true);
}"""

LABEL_DONE = "() => window.__b && window.__b.tImg !== null && window.__b.tFrame !== null && window.__b.tIdle !== null"

# Installed before any page script on Explore: long tasks (>50 ms on the
# main thread) and, in ms since navigation start, when the page's title
# appeared, the map component was mounted (window.vaalMap) and the first
# script run finished; and, for a lasso armed by map_scale.LASSO_PROBE, when
# the page's "N selected" heading appeared. (A MutationObserver on the
# document does not see into the map's shadow root: the map's own moments
# come from map_scale.MAP_READY and the map's hooks.)
EXPLORE_INIT = """
window.__long = [];
window.__marks = {};
try {
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push([e.startTime, e.duration]); })
    .observe({type: 'longtask', buffered: true});
} catch (e) {}
(() => {
  let seenRunning = false;
  const mark = (name) => { if (window.__marks[name] === undefined) window.__marks[name] = performance.now(); };
  const check = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (app) {
      const state = app.getAttribute('data-test-script-state');
      if (state === 'running') seenRunning = true;
      else if (seenRunning && state === 'notRunning') mark('runDone');
    }
    const h1 = document.querySelector('[data-testid="stMain"] h1');
    if (h1 && h1.innerText.includes('Explore')) mark('title');
    if (window.vaalMap) mark('mapMounted');
    const s = window.__lasso;
    if (s && s.up !== null && s.heading === null) {
      for (const h of document.querySelectorAll('[data-testid="stMain"] h3')) {
        const t = h.innerText.trim();
        if (/^[0-9,]+ selected/.test(t)) { s.heading = performance.now(); s.text = t; break; }
      }
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true,
                                                 characterData: true});
})();
"""

SELECTED_HEADING = re.compile(r"^\s*([0-9,]+) selected")


# -- data and projects --------------------------------------------------------------

def cifar_folder(given: str | None) -> Path:
    if given:
        return Path(given)
    out = Path(tempfile.gettempdir()) / "cifar10"
    if not (out / "train").is_dir():
        print(f"extracting {CIFAR_TAR} to {out} ...", file=sys.stderr, flush=True)
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(out, filter="data")
    return out


def link_subset(cifar: Path, dest: Path, n: int) -> tuple[Path, dict[str, str]]:
    """`n` train images, the same number from each class (the first ones),
    as hard links (copies across file systems) in one flat folder named
    `<class>_<file>`, with {file: class} as hidden gold labels. The app masks
    a class *folder* named after an image's gold label, so the bench reads
    the answer from the file name instead. Not symlinks: the app shows a
    file only if its real path is inside the image folder."""
    class_dirs = sorted(d for d in (cifar / "train").iterdir() if d.is_dir())
    per_class = n // len(class_dirs)
    dest.mkdir(parents=True, exist_ok=True)
    gold = {}
    for cls_dir in class_dirs:
        files = sorted(cls_dir.iterdir())
        if per_class > len(files):
            raise SystemExit(f"error: {n} images need {per_class} per class; {cls_dir} has {len(files)}")
        for f in files[:per_class]:
            name = f"{cls_dir.name}_{f.name}"
            gold[name] = cls_dir.name
            try:
                os.link(f, dest / name)
            except OSError:
                shutil.copy(f, dest / name)
    return dest, gold


def answer(path: str) -> str:
    """The class of a bench image, from its file name (see link_subset)."""
    return path.rsplit("/", 1)[-1].split("_", 1)[0]


def make_project(root: Path, images: Path, gold: dict[str, str]) -> tuple[Project, dict]:
    classes = sorted(set(gold.values()))
    t0 = time.perf_counter()
    project, report, _ = init_project(root, images, classes, gold=gold)
    info = {"items": len(project.items()), "skipped": len(report.skipped),
            "ingest_s": round(time.perf_counter() - t0, 2)}
    return project, info


def prepare_explore(project: Project) -> dict:
    """Seed labels, a real --fast VAAL round, and its UMAP, all timed."""
    items = project.items()
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(items), min(SEED_LABELS, len(items) // 2), replace=False)
    project.set_labels([(items[i].id, items[i].gold) for i in chosen])
    t0 = time.perf_counter()
    result = run_round(project, RoundConfig(sampler="vaal", budget=500, fast=True, device="cpu"))
    round_s = time.perf_counter() - t0
    proj = maps.round_projection(project, result.round_id)
    again = maps.round_projection(project, result.round_id)
    on_map = geometry.geometry(project, again)  # what /vaal/map/ sends: the points the page must draw
    return {"map_points": len(on_map), "map_ids": sorted(int(i) for i in on_map.columns["ids"]),
            "map_not_on_map": on_map.not_on_map,
            "seed_labels": int(len(chosen)), "round_id": result.round_id, "round_s": round(round_s, 2),
            "round_iterations": result.metrics.get("iterations"), "round_timings": result.timings,
            "umap_s": round(proj.seconds, 2), "umap_cached": proj.cached,
            "cached_read_s": round(again.seconds, 4), "cached_ok": again.cached}


# -- the server --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, home: Path, project_root: Path | None, log_path: Path,
                 script: Path | str = "app.py", code: Path = ROOT) -> subprocess.Popen:
    """`streamlit run` of `script` (the app, opening `project_root` if given),
    ready to serve; `code`: the checkout it runs from, with its own .venv
    when it is not this one (bench/first_visit.py)."""
    python = sys.executable if code == ROOT else str(code / ".venv" / "bin" / "python")
    env = {**os.environ, "VAAL_HOME": str(home)}
    env.pop("VAAL_PROJECT", None)
    log = open(log_path, "w")
    project = [] if project_root is None else ["--", "--project", str(project_root)]
    # Its own process group, so stopping it takes any child it started too.
    proc = subprocess.Popen([python, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false", *project],
                            cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2).read() == b"ok":
                    return proc
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Streamlit server did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
    except BaseException:  # Ctrl-C while waiting, too: the caller has no handle yet
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen | None) -> None:
    """SIGTERM to the server's process group (it and anything it started),
    SIGKILL after 10 s."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:  # already gone
        pass


# -- measurements ------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary(values: list[float]) -> dict:
    return {"median_ms": round(statistics.median(values), 1), "p95_ms": round(pct(values, 95), 1),
            "mean_ms": round(statistics.fmean(values), 1), "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1)}


def wait_idle(page) -> None:
    page.wait_for_function("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
                           " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }")


def bench_label(browser, url: str, project: Project, classes: list[str], warmup: int, n: int,
                pause: float, shots: Path | None) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    t0 = time.perf_counter()
    page.goto(f"{url}/?project={workspace.project_id(project.root)}")
    page.wait_for_selector('[data-testid="stMain"] [data-testid="stText"]')
    page.wait_for_selector('[data-testid="stMain"] img.vaal-shown')
    wait_idle(page)
    first_load_s = time.perf_counter() - t0
    page.evaluate(LABEL_PROBE)
    time.sleep(1.0)
    rows, pressed = [], []
    for k in range(warmup + n):
        shown = page.evaluate("() => window.__shown()")
        gold = answer(shown["text"])
        key = KEYS[classes.index(gold)]
        page.evaluate("(prev) => window.__arm(prev)", shown)
        page.keyboard.press(key)
        page.wait_for_function(LABEL_DONE, polling=50)
        b = page.evaluate("() => window.__b")
        pressed.append(shown["text"])
        if k >= warmup:
            rows.append({"text_ms": b["tText"] - b["t0"], "image_ms": b["tImg"] - b["t0"],
                         "frame_ms": b["tFrame"] - b["t0"], "run_done_ms": b["tIdle"] - b["t0"]})
        time.sleep(pause)
    wait_idle(page)
    if shots:
        page.screenshot(path=str(shots / "label.png"))
    page.close()
    # The store's view: every press is one label in SQLite, on the image shown.
    with Project.open(project.root) as p:
        labels = p.labels()
        by_path = {it.path: it for it in p.items()}
        ui_rows = p.db.value("SELECT COUNT(*) FROM labels WHERE source = 'ui' AND undone_at IS NULL")
    right = sum(labels.get(by_path[path].id) == answer(path) for path in pressed)
    out = {"warmup": warmup, "measured": n, "pause_s": pause, "first_load_s": round(first_load_s, 2),
           "labels_in_sqlite": len(labels), "label_rows_from_ui": ui_rows, "expected": warmup + n,
           "distinct_images_pressed": len(set(pressed)), "labels_on_the_shown_image": right}
    for what in ("text_ms", "image_ms", "frame_ms", "run_done_ms"):
        out[what] = summary([r[what] for r in rows])
    out["samples"] = [{k: round(v, 1) for k, v in r.items()} for r in rows]
    return out


def _map_http(responses) -> dict:
    """Bytes of the map's payload and bundle responses a page got: the
    Content-Length header (the compressed bytes, as sent; the bundle, which
    the server gzips on the fly, has none) and the encoded body bytes that
    came over the network (Playwright's request.sizes(); 0 for one served
    from the browser's cache, where Chromium reports a negative size)."""
    out = {"map_content_length": 0, "map_wire_bytes": 0, "bundle_content_length": 0, "bundle_wire_bytes": 0,
           "responses": []}
    for r in responses:
        kind = "map" if "/vaal/map/" in r.url else "bundle"
        length = int(r.headers.get("content-length") or 0)
        try:
            body = int(r.request.sizes()["responseBodySize"])
        except Exception:  # noqa: BLE001 - a figure, not a requirement
            body = length
        cached = body < 0
        wire = 0 if cached else body
        out[f"{kind}_content_length"] += length
        out[f"{kind}_wire_bytes"] += wire
        out["responses"].append({"kind": kind, "status": r.status, "content_length": length, "wire_bytes": wire,
                                 "from_cache": cached, "encoding": r.headers.get("content-encoding")})
    return out


def lasso_bench(page, tries: int, target: int, shots: Path | None, name: str) -> dict:
    """`tries` lassos around about `target` points (the same box each time):
    ms from the mouseup to the page's "N selected" heading (stamped in the
    page, and the Python-side wall time), and to the map's own selection
    (its "select" event, before the script run); Clear selection between."""
    page.locator(f'{MAP} button[data-tool="freeform"]').click()
    map_in_view(page)
    pos = positions(page)
    box, expected = lasso_box(pos, target)
    heading = page.locator('[data-testid="stMain"] h3').filter(has_text=SELECTED_HEADING)
    rows = []
    for k in range(tries):
        heading.first.wait_for(state="detached")
        wait_idle(page)
        page.evaluate("() => window.__lassoArm()")
        drag_lasso(page, box)
        t0 = time.perf_counter()
        page.mouse.up()
        heading.first.wait_for()
        wall_ms = (time.perf_counter() - t0) * 1000
        page.wait_for_function("() => window.__lasso.heading !== null && window.__lasso.select !== null")
        s = page.evaluate("() => ({...window.__lasso, js: window.vaalMap.selected.length})")
        shown = int(SELECTED_HEADING.match(heading.first.inner_text()).group(1).replace(",", ""))
        rows.append({"heading_ms": round(s["heading"] - s["up"], 1), "select_ms": round(s["select"] - s["up"], 1),
                     "wall_ms": round(wall_ms, 1), "heading_n": shown, "map_selected": s["js"]})
        wait_idle(page)
        if shots and k == 0:
            page.screenshot(path=str(shots / f"{name}-lasso.png"), full_page=True)
        clear_selection(page)
    heading.first.wait_for(state="detached")
    med = lambda key: round(statistics.median(r[key] for r in rows), 1) if rows else None  # noqa: E731
    return {"tries": rows, "box_px": [round(v, 1) for v in box], "expected": expected,
            "selected": rows[0]["heading_n"] if rows else None, "heading_ms_median": med("heading_ms"),
            "select_ms_median": med("select_ms"), "wall_ms_median": med("wall_ms")}


def bench_explore(browser, url: str, project: Project, info: dict, runs: int, hovers: int, lassos: int,
                  lasso_points: int, shots: Path | None) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(EXPLORE_INIT)
    name = f"explore-{len(project.items())}"
    visits, page = [], None
    for k in range(runs):
        if page is not None:
            page.close()
        page = context.new_page()
        page.set_default_timeout(120_000)
        received = {"bytes": 0, "frames": 0}
        http = []

        def on_ws(ws, received=received):
            def frame(payload):
                received["bytes"] += len(payload)
                received["frames"] += 1
            ws.on("framereceived", frame)

        page.on("websocket", on_ws)
        page.on("response", lambda r, http=http: http.append(r)
                if "/vaal/map/" in r.url or "/vaal/js/latent_map.js" in r.url else None)
        t0 = time.perf_counter()
        page.goto(f"{url}/explore?project={workspace.project_id(project.root)}")
        page.wait_for_function(MAP_READY, polling="raf")
        ws_bytes, ws_frames = received["bytes"], received["frames"]  # until the map's first frame
        wall_ms = (time.perf_counter() - t0) * 1000
        frame = page.evaluate(MAP_FRAME)
        sizes = _map_http(http)
        long_ms = sum(d for s, d in frame["longTasks"] if s < frame["tReady"])
        marks = {key: round(v, 1) for key, v in frame["marks"].items()}
        visit = {"wall_ms": round(wall_ms, 1), "ready_ms": round(frame["tReady"], 1),
                 "frame_ms": round(frame["tFrame"], 1), "component_drawn_ms": round(frame["drawnMs"], 1),
                 "title_ms": marks.get("title"), "map_mounted_ms": marks.get("mapMounted"),
                 "first_run_done_ms": marks.get("runDone"), "long_tasks_ms": round(long_ms, 1),
                 "ws_bytes": ws_bytes, "ws_frames": ws_frames, "map_bytes_in_page": frame["mapBytes"], **sizes,
                 "sent_bytes": ws_bytes + sizes["map_wire_bytes"], "drawn": frame["points"],
                 "status": frame["status"]}
        if k == 0:
            drawn_ids = sorted(page.evaluate("() => window.vaalMap.ids()"))
            visit["ids_match_map"] = drawn_ids == info["map_ids"]
        wait_idle(page)
        if shots:
            page.screenshot(path=str(shots / f"{name}-{k + 1}.png"))
        visits.append(visit)

    # the pointer and the lasso, on the last visit's page
    page.evaluate(LASSO_PROBE)
    hover = hover_bench(page, hovers, np.random.default_rng(len(project.items())))
    lasso = lasso_bench(page, lassos, lasso_points, shots, name)
    page.close()
    context.close()
    first, rest = visits[0], visits[1:] or visits
    med = lambda key: round(statistics.median(v[key] for v in rest if v[key] is not None), 1)  # noqa: E731
    return {"visits": visits, "first_frame_ms": first["ready_ms"],
            "repeat_frame_ms_median": med("ready_ms"), "repeat_title_ms_median": med("title_ms"),
            "repeat_run_done_ms_median": med("first_run_done_ms"),
            "repeat_component_drawn_ms_median": med("component_drawn_ms"),
            "repeat_long_tasks_ms_median": med("long_tasks_ms"),
            "drawn": first["drawn"], "drawn_ok": first["drawn"] == info["map_points"] and first["ids_match_map"],
            "ws_bytes": first["ws_bytes"], "map_bytes": first["map_wire_bytes"],
            "sent_bytes": first["sent_bytes"], "bundle_bytes": first["bundle_wire_bytes"],
            "repeat_sent_bytes_median": med("sent_bytes"), "status": first["status"],
            "hover": hover, "lasso": lasso}


# -- report ------------------------------------------------------------------------

def machine() -> dict:
    model = cpu_model()
    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a description, not a requirement
        gpu = None
    return {"cpu_cores": os.cpu_count(), "cpu": model, "gpu": gpu or "none",
            "description": f"{os.cpu_count()} CPU cores ({model}), " + (f"GPU {gpu}" if gpu else "no GPU")}


def versions(browser_version: str | None) -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "chromium": browser_version}
    for name in ("streamlit", "playwright", "plotly", "torch", "umap-learn", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def print_table(res: dict) -> None:
    lab = res.get("label")
    print()
    print(f"machine: {res['machine']['description']}; streamlit {res['versions']['streamlit']}, "
          f"chromium {res['versions']['chromium']}")
    if lab:
        print(f"\nLabel page, {res['label_project']['items']:,} items, {lab['measured']} labels "
              f"(after {lab['warmup']} warm-up), keydown to ...")
        print(f"  {'':<28}{'median ms':>10}{'p95 ms':>10}{'max ms':>10}")
        for what, name in (("text_ms", "path text changes"), ("image_ms", "new image loaded"),
                           ("frame_ms", "frame after image load"), ("run_done_ms", "script run finished")):
            s = lab[what]
            print(f"  {name:<28}{s['median_ms']:>10.0f}{s['p95_ms']:>10.0f}{s['max_ms']:>10.0f}")
        ok = "ok" if lab["labels_in_sqlite"] == lab["expected"] == lab["labels_on_the_shown_image"] else "MISMATCH"
        print(f"  store check: {lab['labels_in_sqlite']} labels in SQLite for {lab['expected']} presses "
              f"({lab['label_rows_from_ui']} label rows from the UI; {lab['labels_on_the_shown_image']} on the "
              f"image shown at the press): {ok}")
    if res.get("explore"):
        both = lambda a, b: f"{a:,.0f}/{b:,.0f}" if a is not None and b is not None else "?"  # noqa: E731
        print("\nExplore page, the WebGL map, projection cached; ms from navigation start (first visit / median "
              "of repeats):")
        print(f"  {'points':>8}{'drawn':>8}{'title':>13}{'run done':>13}{'first frame':>13}{'long tasks':>13}"
              f"{'ws kB':>7}{'map kB':>8}{'JS kB':>7}{'round s':>9}{'UMAP s':>8}")
        for e in res["explore"]:
            v = e["visits"][0]
            drawn = f"{e['drawn']:,}" + ("" if e["drawn_ok"] else "!")
            print(f"  {e['items']:>8,}{drawn:>8}{both(v['title_ms'], e['repeat_title_ms_median']):>13}"
                  f"{both(v['first_run_done_ms'], e['repeat_run_done_ms_median']):>13}"
                  f"{both(e['first_frame_ms'], e['repeat_frame_ms_median']):>13}"
                  f"{both(v['long_tasks_ms'], e['repeat_long_tasks_ms_median']):>13}"
                  f"{e['ws_bytes'] / 1e3:>7.0f}{e['map_bytes'] / 1e3:>8.0f}{e['bundle_bytes'] / 1e3:>7.0f}"
                  f"{e['round_s']:>9.1f}{e['umap_s']:>8.1f}")
        print("  (drawn: the map's data-points, '!' where it or the ids drawn differ from the round's map;\n"
              "  title: the page's heading shown; run done: the first script run finished; first frame: the map's\n"
              "  data-ready, its first frame with every point; long tasks: main-thread tasks over 50 ms before it;\n"
              "  ws: websocket bytes until then; map: the payload's gzipped bytes over the network (first visit;\n"
              "  the browser caches it after); JS: the map's bundle, gzipped, fetched on the first visit only;\n"
              "  round: the --fast vaal round; UMAP: computing the projection once, before the page)")
        print("\nExplore page, pointer and lasso (in the page; Python-side wall time in brackets):")
        print(f"  {'points':>8}{'hovers':>8}{'hover p50 ms':>20}{'hover p95 ms':>20}"
              f"{'lasso n (box)':>17}{'to heading ms':>20}{'to map ms':>11}")
        for e in res["explore"]:
            h, la = e["hover"], e["lasso"]
            hp = lambda q: (f"{h['in_page'][q]:,.0f} ({h['wall'][q]:,.0f})"  # noqa: E731
                            if h["in_page"]["n"] else "-")
            n = f"{la['selected']:,} ({la['expected']:,})" if la["selected"] is not None else "-"
            lm = (f"{la['heading_ms_median']:,.0f} ({la['wall_ms_median']:,.0f})"
                  if la["heading_ms_median"] is not None else "-")
            sm = f"{la['select_ms_median']:,.0f}" if la["select_ms_median"] is not None else "-"
            print(f"  {e['items']:>8,}{h['measured']:>8}{hp('p50_ms'):>20}{hp('p95_ms'):>20}{n:>17}{lm:>20}{sm:>11}"
                  + (f"  ({h['missed']} hovers took another point)" if h["missed"] else ""))
        print("  (hover: from the pointer's last move onto a point to its thumbnail loaded in the card; lasso: a "
              "box-like lasso\n  round about 1,000 points, from the mouseup to the page's \"N selected\" heading "
              "(the script run included) and to\n  the map's own selection; median of the tries; n: the heading's "
              "count, with the points inside the box in brackets)")
        print("\nTargets (at 50,000 points), first visit:")
        print(f"  {'points':>8}{'first frame <= 2.0 s':>24}{'bytes <= 1.5 MB':>20}{'hover p95 <= 150 ms':>24}"
              f"{'lasso ~1,000 <= 1.0 s':>26}")
        for e in res["explore"]:
            def verdict(value, limit, fmt):
                return "-" if value is None else f"{fmt(value)} {'met' if value <= limit else 'MISSED'}"
            p95 = e["hover"]["in_page"].get("p95_ms")
            print(f"  {e['items']:>8,}{verdict(e['first_frame_ms'] / 1000, 2.0, lambda v: f'{v:.2f} s'):>24}"
                  f"{verdict(e['sent_bytes'] / 1e6, 1.5, lambda v: f'{v:.2f} MB'):>20}"
                  f"{verdict(p95, 150, lambda v: f'{v:.0f} ms'):>24}"
                  f"{verdict(e['lasso']['heading_ms_median'], 1000, lambda v: f'{v:.0f} ms'):>26}")
        print("  (bytes: websocket bytes until the first frame plus the map's payload, the JS bundle apart)")
    load = res.get("load_avg", {})
    if load:
        print("\nload average (1 min) before / after Label / after Explore: "
              + " / ".join(f"{v[0]:.1f}" for v in load.values())
              + f" on {res['machine']['cpu_cores']} cores (others' work shares this machine)")
    print(f"total benchmark time: {res['total_s']:.0f} s")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# -- main --------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10000, help="images in the Label page's project")
    ap.add_argument("--labels", type=int, default=100, help="labels measured")
    ap.add_argument("--warmup", type=int, default=5, help="labels given first and not measured")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between a finished label and the next key")
    ap.add_argument("--explore-sizes", default="10000,50000", help="comma-separated point counts ('' for none)")
    ap.add_argument("--explore-runs", type=int, default=3, help="page visits per Explore size")
    ap.add_argument("--hovers", type=int, default=60, help="hovers measured per Explore size")
    ap.add_argument("--lassos", type=int, default=3, help="lasso tries per Explore size")
    ap.add_argument("--lasso-points", type=int, default=1000, help="about how many points each lasso goes round")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--out", help="results file (default: bench/results/app-cpu.json, app-cuda.json on a GPU)")
    ap.add_argument("--screenshots", metavar="DIR", help="save a screenshot of each page measured here")
    ap.add_argument("--cifar", help="extracted CIFAR-10 folder (default: extract to the temp folder)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.explore_sizes.split(",") if s.strip()]
    shots = Path(args.screenshots).resolve() if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)

    # Ctrl-C (even when started in the background, where SIGINT comes in
    # ignored) and SIGTERM end the run with KeyboardInterrupt, so the finally
    # below always stops the server and removes the temporary folders.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="vaal-bench-app-"))
    server = None
    results: dict = {"machine": machine(), "args": vars(args)}
    try:
        cifar = cifar_folder(args.cifar)
        home = tmp / "home"
        folders: dict[int, tuple[Path, dict[str, str]]] = {}

        def folder(n: int) -> tuple[Path, dict[str, str]]:
            if n not in folders:
                folders[n] = link_subset(cifar, tmp / f"images-{n}", n)
            return folders[n]

        print(f"[{time.perf_counter() - t_start:5.0f} s] Label project: {args.items:,} images", flush=True)
        label_project, info = make_project(home / "projects" / f"label-{args.items}", *folder(args.items))
        classes = label_project.classes()
        results["label_project"] = info
        explore_projects = []
        for n in sizes:
            print(f"[{time.perf_counter() - t_start:5.0f} s] Explore project: {n:,} images, a --fast vaal round, "
                  f"UMAP", flush=True)
            project, info = make_project(home / "projects" / f"explore-{n}", *folder(n))
            info.update(prepare_explore(project))
            print(f"         ingest {info['ingest_s']} s, round {info['round_s']} s, UMAP {info['umap_s']} s",
                  flush=True)
            explore_projects.append((project, info))

        port = args.port or free_port()
        print(f"[{time.perf_counter() - t_start:5.0f} s] server on port {port}", flush=True)
        server = start_server(port, home, label_project.root, tmp / "server.log")
        url = f"http://localhost:{port}"
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results["versions"] = versions(browser.version)
            try:
                print(f"[{time.perf_counter() - t_start:5.0f} s] Label page: {args.warmup} + {args.labels} labels",
                      flush=True)
                results["load_avg"] = {"before_label": os.getloadavg()}
                results["label"] = bench_label(browser, url, label_project, classes, args.warmup, args.labels,
                                               args.pause, shots)
                results["load_avg"]["after_label"] = os.getloadavg()
                results["explore"] = []
                for project, info in explore_projects:
                    print(f"[{time.perf_counter() - t_start:5.0f} s] Explore page: {info['items']:,} points",
                          flush=True)
                    e = bench_explore(browser, url, project, info, args.explore_runs, args.hovers, args.lassos,
                                      args.lasso_points, shots)
                    results["explore"].append({**{k: v for k, v in info.items() if k != "map_ids"}, **e})
            finally:
                browser.close()
        results["load_avg"]["after_explore"] = os.getloadavg()
        results["total_s"] = round(time.perf_counter() - t_start, 1)
        print_table(results)
        out = Path(args.out) if args.out else \
            ROOT / "bench" / "results" / f"app-{'cuda' if results['machine']['gpu'] != 'none' else 'cpu'}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
    finally:
        stop_server(server)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
