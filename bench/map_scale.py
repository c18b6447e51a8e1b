"""The Explore map's renderer at scale, outside Streamlit: prints figures, asserts nothing.

    python bench/map_scale.py [--sizes 50000,200000] [--hovers 40] [--runs 3]
                              [--lassos 3] [--lasso-points 1000] [--keep]
                              [--screenshots DIR] [--out FILE]

For each --sizes point count, a synthetic round's map (vaal_core.maps.geometry:
ten Gaussian blobs, one class each; about 5% labeled, two finished rounds
whose batches were picked, the second one's unlabeled rest the next batch;
sampler scores and discriminator values) is encoded with `geometry.encode`
and gzipped as the app's route sends it (`geometry.compressed`). A temporary
folder gets an index.html, the map's bundle (assets/build/latent_map.js,
built by `make map`), the payload and a few small JPEGs; Python's
http.server (a thread, a free port, HTTP/1.1) serves them: the payload with
Content-Encoding: gzip, one of the JPEGs for any /thumb/<id>. The page
imports the bundle as an ES module and calls its `mount()` with what
views/latent_map.py passes (colour by class, ten class colours, height 600),
and a `setStateValue` that only records the call: there is no Python round
trip here, so the lasso figure below is the browser's part of a selection
only (bench/app.py measures it up to the page's "N selected" heading).

Debian's Chromium, driven by Playwright, with the flags tests/test_browser.py
uses (headless, --disable-gpu: WebGL runs on the CPU, in SwiftShader).
Measured per size:

  - first frame: ms from navigation start to the map's `data-ready` (the first
    frame with every point drawn), over --runs page loads (the first apart;
    the bundle is in the browser's cache after it, the payload never is),
    with the component's own figure (`window.__vaalMapDrawnMs`, from mount);
  - payload bytes: raw and gzipped, and the Content-Length the page saw;
  - hover to thumbnail: over --hovers distinct points (after 2 unmeasured),
    the mouse moved onto the point in a few steps, then the in-page time
    from the last mousemove to the hover card's <img> having loaded
    (`window.__vaalHoverMs`, pushed by the map), p50 and p95, with the
    Python-side wall time per hover as a cross-check (with WebGL in software
    a redraw holds the main thread for tens of ms, and the card waits for it);
  - lasso: a rectangle-like lasso around about --lasso-points points (a box
    grown around the middle of the map until it holds that many), the ms from
    the mouseup to the map's selection being set (its "select" event and
    `vaalMap.selected`), median of --lassos tries (Clear selection between).

Writes bench/results/map-scale-cpu.json (or --out) beside the printed table.
The temporary folder and the server go away at the end unless --keep.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaal_core.maps import geometry  # noqa: E402

BUNDLE = ROOT / "assets" / "build" / "latent_map.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MAP = '[data-testid="vaal-map"]'
CLASS_COLORS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#332288",
                "#ee8866", "#44bb99"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# -- in-page instruments, shared with bench/app.py ------------------------------

# Polled on every animation frame until the map has drawn its first frame with
# the points; stamps that moment (ms since navigation start).
MAP_READY = """() => {
  const m = window.vaalMap;
  if (!m || !m.wrap || m.wrap.getAttribute('data-ready') !== 'true') return false;
  if (window.__tReady === undefined) window.__tReady = performance.now();
  return true;
}"""

# Two frames after ready: what was drawn, and the in-page figures.
MAP_FRAME = """() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => {
  const m = window.vaalMap;
  resolve({tReady: window.__tReady, tFrame: performance.now(),
           points: Number(m.wrap.getAttribute('data-points')), drawnMs: window.__vaalMapDrawnMs,
           mapBytes: window.__vaalMapBytes || 0, status: m.status.textContent,
           mounts: window.__vaalMapMounts || 0, longTasks: window.__long || [], marks: window.__marks || {}});
})))"""

# Every point's id and where it is drawn (page CSS px), the canvas's box and the window's size.
POSITIONS = """() => {
  const m = window.vaalMap;
  const ids = m.ids();
  const x = new Array(ids.length), y = new Array(ids.length);
  for (let k = 0; k < ids.length; k++) { const p = m.screenOf(ids[k]); x[k] = p ? p[0] : NaN; y[k] = p ? p[1] : NaN; }
  const r = m.canvas.getBoundingClientRect();
  return {ids, x, y, rect: [r.left, r.top, r.right, r.bottom], view: [window.innerWidth, window.innerHeight]};
}"""

# Stamps a lasso's mouseup and the map's "select" event after it (in ms since
# navigation start); `__lassoArm()` starts a new try. bench/app.py adds the
# moment the page's "N selected" heading appears.
LASSO_PROBE = """() => {
  if (window.__lassoProbe) return;
  window.__lassoProbe = true;
  window.__lassoArm = () => { window.__lasso = {up: null, select: null, n: null, heading: null, text: null}; };
  window.__lassoArm();
  window.addEventListener('mouseup', () => { const s = window.__lasso; if (s.up === null) s.up = performance.now(); },
                          true);
  window.vaalMap.plot.subscribe('select', ({points}) => {
    const s = window.__lasso;
    if (s.up !== null && s.select === null) { s.select = performance.now(); s.n = points.length; }
  });
}"""

CARD_IMG = '[data-testid="vaal-map-card"] img[data-item-id="{id}"][data-shown="true"]'


# -- numbers --------------------------------------------------------------------

def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def stats(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(pct(values, 50), 1), "p95_ms": round(pct(values, 95), 1),
            "mean_ms": round(statistics.fmean(values), 1), "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1)}


# -- the mouse on the map (shared with bench/app.py) -------------------------------

def map_in_view(page) -> None:
    """Scroll the map's canvas to the middle of the window (the mouse acts only on what is on screen)."""
    page.locator(f"{MAP} canvas").evaluate("c => c.scrollIntoView({block: 'center'})")
    time.sleep(0.3)


def positions(page, margin: float = 6.0) -> dict:
    """The points drawn on screen: ids and x, y (page CSS px) of those inside
    both the canvas and the window, `margin` px in from their edges."""
    p = page.evaluate(POSITIONS)
    ids = np.asarray(p["ids"], dtype=np.int64)
    x = np.asarray(p["x"], dtype=float)
    y = np.asarray(p["y"], dtype=float)
    left, top, right, bottom = p["rect"]
    right, bottom = min(right, p["view"][0]), min(bottom, p["view"][1])
    left, top = max(left, 0.0), max(top, 0.0)
    box = (left + margin, top + margin, right - margin, bottom - margin)
    on = np.isfinite(x) & np.isfinite(y) & (x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])
    return {"ids": ids[on], "x": x[on], "y": y[on], "box": box, "all": len(ids)}


def hover_targets(pos: dict, n: int, rng: np.random.Generator) -> tuple[list[tuple[int, float, float]], float]:
    """`n` random distinct points on screen, preferring ones with no other point
    within 3 px (the map shows the point nearest the pointer); returns them and
    the spacing used."""
    from scipy.spatial import cKDTree

    xy = np.column_stack([pos["x"], pos["y"]])
    if len(xy) < 2:
        return [(int(i), float(a), float(b)) for i, a, b in zip(pos["ids"], pos["x"], pos["y"])][:n], 0.0
    d, _ = cKDTree(xy).query(xy, k=2)
    nearest = d[:, 1]
    for spacing in (3.0, 2.0, 1.0, 0.5):
        ok = np.flatnonzero(nearest >= spacing)
        if len(ok) >= n:
            break
    pick = rng.choice(ok, size=min(n, len(ok)), replace=False)
    return [(int(pos["ids"][k]), float(pos["x"][k]), float(pos["y"][k])) for k in pick], spacing


def hover_bench(page, n: int, rng: np.random.Generator, warmup: int = 2, timeout_ms: int = 10_000) -> dict:
    """Hover `warmup` + `n` distinct points; per measured one, the in-page ms
    (mousemove to thumbnail loaded, from `window.__vaalHoverMs`) and the
    Python-side wall ms (from the last mouse move to the card's <img> for that
    point shown)."""
    map_in_view(page)
    pos = positions(page)
    targets, spacing = hover_targets(pos, warmup + n, rng)
    in_page, wall, missed = [], [], []
    for k, (item_id, x, y) in enumerate(targets):
        # come from a little way off, in a few steps, then rest on the point
        page.mouse.move(x + 24, y + 16, steps=2)
        page.mouse.move(x + 6, y + 4, steps=2)
        t0 = time.perf_counter()
        page.mouse.move(x, y)
        try:
            page.locator(CARD_IMG.format(id=item_id)).wait_for(state="visible", timeout=timeout_ms)
        except Exception:  # noqa: BLE001 - another point took the hover: counted, not measured
            missed.append(item_id)
            continue
        ms_wall = (time.perf_counter() - t0) * 1000
        ms_page = page.evaluate("() => (window.__vaalHoverMs || []).slice(-1)[0]")
        if k >= warmup:
            wall.append(ms_wall)
            in_page.append(ms_page)
    page.mouse.move(2, 2)  # off the map: the card goes
    return {"measured": len(in_page), "warmup": warmup, "missed": len(missed), "spacing_px": spacing,
            "on_screen": len(pos["ids"]), "in_page": stats(in_page), "wall": stats(wall),
            "samples_in_page_ms": [round(v, 1) for v in in_page], "samples_wall_ms": [round(v, 1) for v in wall]}


def lasso_box(pos: dict, target: int) -> tuple[tuple[float, float, float, float], int]:
    """A box (x0, y0, x1, y1), page px, around about `target` on-screen points:
    grown (bisection on its half-side) around the on-screen point nearest the
    points' median, inside the visible part of the canvas, then rounded out
    to whole pixels; and the count inside it."""
    x, y = pos["x"], pos["y"]
    bx0, by0, bx1, by1 = pos["box"]
    if len(x) <= target:
        return (bx0, by0, bx1, by1), len(x)
    mx, my = float(np.median(x)), float(np.median(y))
    c = int(np.argmin((x - mx) ** 2 + (y - my) ** 2))
    cx, cy = float(x[c]), float(y[c])

    def box(h: float) -> tuple[float, float, float, float]:
        return max(bx0, cx - h), max(by0, cy - h), min(bx1, cx + h), min(by1, cy + h)

    def count(b) -> int:
        return int(np.count_nonzero((x > b[0]) & (x < b[2]) & (y > b[1]) & (y < b[3])))

    lo, hi = 1.0, float(max(bx1 - bx0, by1 - by0))
    for _ in range(40):
        mid = (lo + hi) / 2
        if count(box(mid)) < target:
            lo = mid
        else:
            hi = mid
    b = box(hi)
    # whole pixels: the mouse events the page gets are at whole CSS pixels
    b = (float(np.floor(b[0])), float(np.floor(b[1])), float(np.ceil(b[2])), float(np.ceil(b[3])))
    return b, count(b)


def drag_lasso(page, b: tuple[float, float, float, float], step_s: float = 0.015) -> None:
    """Go round the box with the lasso tool: press 5 px above-left of its
    top-left corner, move to that corner (where the lasso starts), then
    round the box, one mouse move every `step_s` (the lasso takes a point at
    most every 10 ms), ending 1 px below the corner (a release within 3 px of
    the press would also be a click, which selects the one point under it).
    The caller releases (mouse.up)."""
    x0, y0, x1, y1 = b
    corners = [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]
    page.mouse.move(x0 - 5, y0 - 5)
    page.mouse.down()
    page.mouse.move(x0, y0)
    time.sleep(step_s)
    here = (x0, y0)
    for cx, cy in corners:
        steps = 6
        for s in range(1, steps + 1):
            page.mouse.move(here[0] + (cx - here[0]) * s / steps, here[1] + (cy - here[1]) * s / steps)
            time.sleep(step_s)
        here = (cx, cy)


def clear_selection(page) -> None:
    page.locator(f'{MAP} button', has_text="Clear selection").click()
    page.wait_for_function("() => window.vaalMap.selected.length === 0")


# -- the synthetic map --------------------------------------------------------------

def synthetic(n: int, seed: int = 0) -> geometry.Geometry:
    """`n` points in ten Gaussian blobs (a class each); about 5% labeled
    (seed labels, shown from step 0), two finished rounds (1 and 2) each
    picking n/100 points: round 1's batch all labeled, round 2's a third
    labeled and the rest the next batch."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    centres = rng.uniform(-10, 10, (k, 2))
    spread = rng.uniform(0.7, 2.0, k)
    cls_true = rng.integers(0, k, n)
    xy = centres[cls_true] + rng.normal(size=(n, 2)) * spread[cls_true, None]
    ids = np.arange(1, n + 1, dtype=np.int32)
    order = rng.permutation(n)
    batch = max(50, n // 100)
    seed_rows, r1, r2 = order[:n // 20], order[n // 20:n // 20 + batch], order[n // 20 + batch:n // 20 + 2 * batch]
    r2_labeled = r2[:len(r2) // 3]

    cls = np.full(n, -1, dtype=np.int16)
    shown = np.full(n, -1, dtype=np.int16)
    picked = np.full(n, -1, dtype=np.int16)
    flags = np.zeros(n, dtype=np.uint8)
    for rows, step in ((seed_rows, 0), (r1, 1), (r2_labeled, 2)):
        cls[rows] = cls_true[rows]
        shown[rows] = step
    picked[r1], picked[r2] = 0, 1
    flags[r2[len(r2) // 3:]] = geometry.NEXT_BATCH

    score = np.zeros(n, dtype=np.uint8)
    unlabeled = np.flatnonzero(cls < 0)
    ranked = rng.permutation(unlabeled)
    score[ranked] = (255 - np.round(np.arange(len(ranked)) / max(len(ranked) - 1, 1) * 254)).astype(np.uint8)
    disc = np.round(np.clip(rng.beta(2, 5, n), 0, 1) * 254).astype(np.uint8)

    def scaled(v: np.ndarray) -> np.ndarray:
        return np.round((v - v.min()) / (v.max() - v.min()) * 65535).astype(np.uint16)

    columns = {"ids": ids, "x": scaled(xy[:, 0]), "y": scaled(xy[:, 1]), "cls": cls, "picked": picked,
               "shown": shown, "score": score, "disc": disc, "flags": flags}
    return geometry.Geometry(columns, list(CLASSES), [1, 2], 2, 0)


def thumbnails(count: int = 8) -> list[bytes]:
    """A few small JPEGs (96 px, as vaal_core.data.thumbs makes them)."""
    from PIL import Image, ImageDraw

    out = []
    for k in range(count):
        img = Image.new("RGB", (96, 96), tuple(int(CLASS_COLORS[k % 10][i:i + 2], 16) for i in (1, 3, 5)))
        draw = ImageDraw.Draw(img)
        draw.ellipse((20 + k, 20, 76, 76 - k), fill=(255, 255, 255))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>VAAL map at scale</title></head>
<body style="margin:0;padding:24px;font-family:sans-serif">
<h3 style="margin:0 0 8px 0">{n:,} points</h3>
<div id="host" style="width:1200px"></div>
<script type="module">
import {{ mount }} from './latent_map.js';
window.__setState = [];
// a shadow root, as Streamlit mounts the component (isolate_styles=True)
mount({{parentElement: document.getElementById('host').attachShadow({{mode: 'open'}}), data: {data},
        setStateValue: (key, value) => window.__setState.push([key, value.length, performance.now()])}});
</script>
</body></html>
"""


def write_site(folder: Path, g: geometry.Geometry) -> dict:
    """index.html, the bundle, the payload (gzipped) and the thumbnails in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"map_url": "/map.bin", "thumb_url": "/thumb", "colour": "class", "class_colors": CLASS_COLORS,
            "selected": [], "height": 600, "texts": {"score_high": "picked first", "score_low": "picked last"}}
    (folder / "index.html").write_text(PAGE.format(n=len(g), data=json.dumps(data)))
    shutil.copy(BUNDLE, folder / "latent_map.js")
    raw = geometry.encode(g)
    gz = geometry.compressed(g)
    header, cols = geometry.decode(gz)
    assert header["n"] == len(g) and np.array_equal(cols["ids"], g.columns["ids"])  # the bench's own sanity check
    (folder / "map.bin").write_bytes(gz)
    thumbs = folder / "thumbs"
    thumbs.mkdir(exist_ok=True)
    for k, jpeg in enumerate(thumbnails()):
        (thumbs / f"{k}.jpg").write_bytes(jpeg)
    return {"raw_bytes": len(raw), "gzip_bytes": len(gz)}


class Site(http.server.BaseHTTPRequestHandler):
    """Serves one folder written by write_site: the payload gzipped, any
    /thumb/<id> as one of the JPEGs. Files are read once, at start."""
    protocol_version = "HTTP/1.1"  # keep-alive, as the app's server does
    files: dict[str, tuple[bytes, str, dict]] = {}
    thumbs: list[bytes] = []

    @classmethod
    def load(cls, folder: Path) -> type:
        html = (folder / "index.html").read_bytes()
        files = {"/": (html, "text/html; charset=utf-8", {}),
                 "/index.html": (html, "text/html; charset=utf-8", {}),
                 "/latent_map.js": ((folder / "latent_map.js").read_bytes(), "text/javascript",
                                    {"Cache-Control": "private, max-age=31536000, immutable"}),  # as the app's
                 "/map.bin": ((folder / "map.bin").read_bytes(), "application/octet-stream",
                              {"Content-Encoding": "gzip", "Cache-Control": "no-store"})}
        thumbs = [p.read_bytes() for p in sorted((folder / "thumbs").glob("*.jpg"))]
        return type("SiteFor", (cls,), {"files": files, "thumbs": thumbs})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/thumb/(\d+)", path)
        if m:
            found = (self.thumbs[int(m.group(1)) % len(self.thumbs)], "image/jpeg",
                     {"Cache-Control": "private, max-age=3600"})
        else:
            found = self.files.get(path)
        if found is None:
            body, ctype, headers, status = b"not found", "text/plain", {}, 404
        else:
            (body, ctype, headers), status = found, 200
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the browser went away (closed at the end)
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # a reset connection at the end: not news
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Site.load(folder))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# -- one size -----------------------------------------------------------------------

def bench_size(browser, n: int, folder: Path, args, shots: Path | None) -> dict:
    t0 = time.perf_counter()
    g = synthetic(n)
    sizes = write_site(folder, g)
    made_s = time.perf_counter() - t0
    server, url = serve(folder)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_init_script("""window.__long = [];
try { new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push([e.startTime, e.duration]); })
        .observe({type: 'longtask', buffered: true}); } catch (e) {}""")
        visits, page = [], None
        for k in range(args.runs):
            if page is not None:
                page.close()
            page = context.new_page()
            page.set_default_timeout(180_000)
            seen = []
            page.on("response", lambda r, seen=seen: seen.append(r) if "/map.bin" in r.url else None)
            page.goto(url + "/")
            page.wait_for_function(MAP_READY, polling="raf")
            info = page.evaluate(MAP_FRAME)
            wire = sum(int(r.headers.get("content-length") or 0) for r in seen)
            long_ms = sum(d for s, d in info["longTasks"] if s < info["tReady"])
            visits.append({"ready_ms": round(info["tReady"], 1), "frame_ms": round(info["tFrame"], 1),
                           "component_drawn_ms": round(info["drawnMs"], 1), "long_tasks_ms": round(long_ms, 1),
                           "points": info["points"], "map_content_length": wire, "map_bytes_in_page": info["mapBytes"]})
            if shots and k == 0:
                page.screenshot(path=str(shots / f"map-scale-{n}.png"))
        page.evaluate(LASSO_PROBE)
        rng = np.random.default_rng(n)
        hover = hover_bench(page, args.hovers, rng)

        # lasso: about --lasso-points points, the selection set in the browser (no Python here)
        page.locator(f'{MAP} button[data-tool="freeform"]').click()
        map_in_view(page)
        pos = positions(page)
        b, expected = lasso_box(pos, args.lasso_points)
        tries = []
        for k in range(args.lassos):
            page.evaluate("() => window.__lassoArm()")
            drag_lasso(page, b)
            t1 = time.perf_counter()
            page.mouse.up()
            page.wait_for_function("() => window.vaalMap.selected.length > 0 && window.__lasso.select !== null")
            wall = (time.perf_counter() - t1) * 1000
            s = page.evaluate("() => ({...window.__lasso, selected: window.vaalMap.selected.length,"
                              " sent: (window.__setState.slice(-1)[0] || [null, 0])[1]})")
            tries.append({"in_page_ms": round(s["select"] - s["up"], 1), "wall_ms": round(wall, 1),
                          "selected": s["selected"], "sent_to_python": s["sent"]})
            if shots and k == 0:
                page.screenshot(path=str(shots / f"map-scale-{n}-lasso.png"))
            clear_selection(page)
        page.close()
        context.close()
    finally:
        server.shutdown()
        server.server_close()
    rest = visits[1:] or visits
    med = lambda key: round(statistics.median(t[key] for t in tries), 1) if tries else None  # noqa: E731
    return {"points": n, "made_s": round(made_s, 2), **sizes, "visits": visits,
            "first_ready_ms": visits[0]["ready_ms"],
            "repeat_ready_ms_median": round(statistics.median(v["ready_ms"] for v in rest), 1),
            "first_component_drawn_ms": visits[0]["component_drawn_ms"],
            "repeat_component_drawn_ms_median": round(statistics.median(v["component_drawn_ms"] for v in rest), 1),
            "points_drawn": visits[0]["points"], "points_ok": visits[0]["points"] == n,
            "hover": hover,
            "lasso": {"box_px": [round(v, 1) for v in b], "expected": expected, "tries": tries,
                      "selected": tries[0]["selected"] if tries else None,
                      "in_page_ms_median": med("in_page_ms"), "wall_ms_median": med("wall_ms")}}


# -- report -------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's name, as /proc/cpuinfo says it (bench/app.py too)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    model = cpu_model()
    return {"cpu_cores": os.cpu_count(), "cpu": model,
            "description": f"{os.cpu_count()} CPU cores ({model}); Chromium with --disable-gpu (WebGL in software)"}


def print_table(res: dict) -> None:
    print()
    print(f"machine: {res['machine']['description']}; chromium {res['chromium']}")
    print("\nThe map's renderer alone (no Streamlit), synthetic maps; first / median of repeat page loads:")
    print(f"  {'points':>8}{'drawn':>9}{'gzip MB':>9}{'raw MB':>8}{'first frame ms':>17}{'drawn ms':>15}"
          f"{'hover p50/p95':>15}{'wall p50/p95':>14}{'lasso n':>9}{'lasso ms':>10}")
    for r in res["sizes"]:
        h, la = r["hover"], r["lasso"]
        pair = lambda a, b: f"{a:,.0f}/{b:,.0f}"  # noqa: E731
        hp = pair(h["in_page"]["p50_ms"], h["in_page"]["p95_ms"]) if h["in_page"]["n"] else "-"
        hw = pair(h["wall"]["p50_ms"], h["wall"]["p95_ms"]) if h["wall"]["n"] else "-"
        lasso_ms = f"{la['in_page_ms_median']:,.0f}" if la["in_page_ms_median"] is not None else "-"
        print(f"  {r['points']:>8,}{r['points_drawn']:>9,}{r['gzip_bytes'] / 1e6:>9.2f}{r['raw_bytes'] / 1e6:>8.2f}"
              f"{pair(r['first_ready_ms'], r['repeat_ready_ms_median']):>17}"
              f"{pair(r['first_component_drawn_ms'], r['repeat_component_drawn_ms_median']):>15}"
              f"{hp:>15}{hw:>14}{la['selected'] or 0:>9,}{lasso_ms:>10}")
    print("  (first frame: navigation start to data-ready; drawn: the component's own figure, from mount; hover: "
          "mousemove to\n  thumbnail loaded, in page, over {} points, and the Python-side wall time; lasso: "
          "mouseup to the map's selection\n  set, median of {} tries, in the browser only: no Python round trip "
          "here, see bench/app.py for that)".format(res["args"]["hovers"], res["args"]["lassos"]))
    print("  targets (the app at 50,000 points): first frame <= 2,000 ms, bytes <= 1.5 MB, hover p95 <= 150 ms, "
          "lasso of ~1,000 <= 1,000 ms")
    for r in res["sizes"]:
        h, la = r["hover"], r["lasso"]
        if h["missed"] or not r["points_ok"] or (la["tries"] and la["selected"] != la["expected"]):
            print(f"  {r['points']:,}: {h['missed']} hovers took another point; drawn {r['points_drawn']:,} of "
                  f"{r['points']:,}; lasso selected {la['selected']} of {la['expected']} inside its box")
    print(f"total benchmark time: {res['total_s']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50000,200000", help="comma-separated point counts")
    ap.add_argument("--hovers", type=int, default=40, help="hovers measured per size")
    ap.add_argument("--runs", type=int, default=3, help="page loads per size")
    ap.add_argument("--lassos", type=int, default=3, help="lasso tries per size")
    ap.add_argument("--lasso-points", type=int, default=1000, help="about how many points each lasso goes round")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--screenshots", metavar="DIR", help="save a screenshot of each map (and its lasso)")
    ap.add_argument("--out", help="results file (default: bench/results/map-scale-cpu.json)")
    args = ap.parse_args()
    if not BUNDLE.is_file():
        raise SystemExit(f"error: {BUNDLE} is missing: run `make map`")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    shots = Path(args.screenshots).resolve() if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="vaal-bench-map-"))
    results: dict = {"machine": machine(), "args": vars(args), "sizes": []}
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results["chromium"] = browser.version
            try:
                for n in sizes:
                    print(f"[{time.perf_counter() - t_start:5.0f} s] {n:,} points", flush=True)
                    results["sizes"].append(bench_size(browser, n, tmp / f"map-{n}", args, shots))
            finally:
                browser.close()
        results["total_s"] = round(time.perf_counter() - t_start, 1)
        print_table(results)
        out = Path(args.out) if args.out else ROOT / "bench" / "results" / "map-scale-cpu.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
