"""App benchmark in a real browser: prints figures, asserts nothing.

    python bench/app.py [--items 10000] [--labels 100] [--warmup 5] [--pause 0.3]
                        [--explore-sizes 10000,50000] [--explore-runs 3]
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
  - Explore page: time from page.goto to the Plotly WebGL scatter drawn (the
    plot's traces present, then a frame rendered), with the projection
    already cached, for each --explore-sizes project; the first visit and
    the repeat visits apart. Each project gets 1,000 gold labels and a real
    `--fast` VAAL round (timed), and its UMAP is computed once beforehand
    (timed, with vaal_core.maps.cache.round_projection). Also: the points the
    page draws and the websocket bytes received until the plot is drawn.

Writes bench/results/app-cpu.json (app-cuda.json on a GPU machine) beside
the printed table. Temporary folders and the server go away at the end,
also on an error or Ctrl-C, unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from vaal_core.maps import cache as maps  # noqa: E402
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

# Long tasks (>50 ms on the main thread) from navigation on, for Explore.
# Installed before any page script on Explore: long tasks (>50 ms on the
# main thread) and when the page's title appeared, the plot element appeared
# and the first script run finished, all in ms since navigation start.
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
    if (document.querySelector('[data-testid="stMain"] .js-plotly-plot')) mark('plotElement');
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
})();
"""

PLOT_READY = """() => {
  const gd = document.querySelector('[data-testid="stMain"] .js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullData.length || !gd._fullLayout) return false;
  if (!gd.querySelector('canvas')) return false;
  const n = gd._fullData.reduce((s, t) => s + ((t.x && t.x.length) || 0), 0);
  if (!n) return false;
  if (window.__tPlot === undefined) window.__tPlot = performance.now();
  return true;
}"""

PLOT_FRAME = """() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
  const gd = document.querySelector('[data-testid="stMain"] .js-plotly-plot');
  const traces = gd._fullData.map((t) => ({name: t.name, points: (t.x && t.x.length) || 0}));
  const caption = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
    .map((c) => c.innerText).find((t) => t.includes('on the map')) || null;
  resolve({tPlot: window.__tPlot, tFrame: performance.now(), traces, caption,
           canvases: gd.querySelectorAll('canvas').length, longTasks: window.__long || [],
           marks: window.__marks || {}});
})))"""


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
    return {"seed_labels": int(len(chosen)), "round_id": result.round_id, "round_s": round(round_s, 2),
            "round_iterations": result.metrics.get("iterations"), "round_timings": result.timings,
            "umap_s": round(proj.seconds, 2), "umap_cached": proj.cached,
            "cached_read_s": round(again.seconds, 4), "cached_ok": again.cached}


# -- the server --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, home: Path, project_root: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "VAAL_HOME": str(home)}
    env.pop("VAAL_PROJECT", None)
    log = open(log_path, "w")
    # Its own process group, so stopping it takes any child it started too.
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false",
                             "--", "--project", str(project_root)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def bench_explore(browser, url: str, project: Project, runs: int, shots: Path | None) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(EXPLORE_INIT)
    visits = []
    for k in range(runs):
        page = context.new_page()
        page.set_default_timeout(120_000)
        received = {"bytes": 0, "frames": 0}

        def on_ws(ws, received=received):
            def frame(payload):
                received["bytes"] += len(payload)
                received["frames"] += 1
            ws.on("framereceived", frame)

        page.on("websocket", on_ws)
        t0 = time.perf_counter()
        page.goto(f"{url}/explore?project={workspace.project_id(project.root)}")
        page.wait_for_function(PLOT_READY, polling="raf")
        info = page.evaluate(PLOT_FRAME)
        wall_ms = (time.perf_counter() - t0) * 1000
        ws_bytes, ws_frames = received["bytes"], received["frames"]
        long_ms = sum(d for s, d in info["longTasks"] if s < info["tFrame"])
        drawn = sum(t["points"] for t in info["traces"] if t["name"] != "next batch")
        marks = {k: round(v, 1) for k, v in info["marks"].items()}
        if shots:
            page.screenshot(path=str(shots / f"explore-{len(project.items())}-{k + 1}.png"))
        visits.append({"wall_ms": round(wall_ms, 1), "frame_ms": round(info["tFrame"], 1),
                       "plot_ms": round(info["tPlot"], 1), "title_ms": marks.get("title"),
                       "plot_element_ms": marks.get("plotElement"), "first_run_done_ms": marks.get("runDone"),
                       "long_tasks_ms": round(long_ms, 1),
                       "ws_bytes": ws_bytes, "ws_frames": ws_frames, "drawn": drawn,
                       "traces": info["traces"], "caption": info["caption"]})
        wait_idle(page)
        page.close()
    context.close()
    rest = visits[1:] or visits
    med = lambda key: round(statistics.median(v[key] for v in rest if v[key] is not None), 1)  # noqa: E731
    return {"visits": visits, "first_frame_ms": visits[0]["frame_ms"],
            "repeat_frame_ms_median": med("frame_ms"), "repeat_title_ms_median": med("title_ms"),
            "repeat_run_done_ms_median": med("first_run_done_ms"), "repeat_plot_ms_median": med("plot_ms"),
            "repeat_long_tasks_ms_median": med("long_tasks_ms"),
            "drawn": visits[0]["drawn"], "ws_bytes": visits[0]["ws_bytes"], "caption": visits[0]["caption"]}


# -- report ------------------------------------------------------------------------

def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
        print("\nExplore page, projection cached; ms from navigation start (first visit / median of repeats):")
        print(f"  {'points':>8}{'drawn':>8}{'title':>13}{'run done':>13}{'plot drawn':>13}{'long tasks':>13}"
              f"{'ws MB':>7}{'round s':>9}{'UMAP s':>8}")
        for e in res["explore"]:
            v = e["visits"][0]
            both = lambda a, b: f"{a:,.0f}/{b:,.0f}" if a is not None and b is not None else "?"  # noqa: E731
            print(f"  {e['items']:>8,}{e['drawn']:>8,}{both(v['title_ms'], e['repeat_title_ms_median']):>13}"
                  f"{both(v['first_run_done_ms'], e['repeat_run_done_ms_median']):>13}"
                  f"{both(e['first_frame_ms'], e['repeat_frame_ms_median']):>13}"
                  f"{both(v['long_tasks_ms'], e['repeat_long_tasks_ms_median']):>13}"
                  f"{e['ws_bytes'] / 1e6:>7.2f}{e['round_s']:>9.1f}{e['umap_s']:>8.1f}")
        print("  (title: the page's heading shown; run done: the first script run finished; plot drawn: the "
              "frame after the WebGL\n  scatter has its traces; long tasks: main-thread tasks over 50 ms before "
              "that frame; round: the --fast vaal\n  round; UMAP: computing the projection once, before the page)")
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
                    e = bench_explore(browser, url, project, args.explore_runs, shots)
                    results["explore"].append({**info, **e})
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
