"""vc.Labeler's key-press latency in a real JupyterLab: prints figures, asserts nothing.

    python bench/notebook.py [--labels 60] [--warmup 5] [--pause 0.2] [--port PORT] [--out FILE]

Builds the 1,797 handwritten digits as a project (their folders as hidden
gold classes) with one `--fast` round (auto), starts `jupyter lab` on
127.0.0.1 with a token, opens a notebook showing `vc.Labeler(p)` in Debian's
Chromium, and presses the shown image's true class --labels times (after
--warmup unmeasured presses), as a careful labeler would. Times are taken
inside the page (performance.now()): from the keydown to (a) the widget
showing the next image's <img>, (b) that image decoded, (c) the next
animation frame after it. The store is checked afterwards: every label went
to the image it was pressed on.

Writes bench/results/notebook-cpu.json beside the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
# Installed before the first press: keydown time (capture phase, so before the widget's own
# listener), then the moment the widget's <img> names another item, its decode, the next frame.
PROBE = """() => {
  window.__presses = [];
  const root = document.querySelector('.vaal-labeler');
  document.addEventListener('keydown', () => {
    const img = root.querySelector('.vaal-image img');
    window.__presses.push({t0: performance.now(), from: img && img.dataset.item});
  }, true);
  new MutationObserver(() => {
    const p = window.__presses[window.__presses.length - 1];
    const img = root.querySelector('.vaal-image img');
    if (!p || p.shown || !img || img.dataset.item === p.from) return;
    p.shown = performance.now() - p.t0;
    img.decode().then(() => {
      p.decoded = performance.now() - p.t0;
      requestAnimationFrame(() => { p.frame = performance.now() - p.t0; });
    });
  }).observe(root, {childList: true, subtree: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_project(base: Path):
    import vaal_core as vc
    from vaal_core.data.digits import DIGIT_CLASSES, write_digits

    images = write_digits(base / "digits")
    p = vc.create_project(base / "digits-project", images=images, classes=DIGIT_CLASSES, gold_from_folders=True,
                          progress=False)
    t = time.perf_counter()
    p.round(budget=100, fast=True, progress=False)
    return p, time.perf_counter() - t


def start_lab(folder: Path, project_root: Path, port: int, token: str) -> subprocess.Popen:
    import nbformat

    cell = f"import vaal_core as vc\nlab = vc.Labeler(vc.open_project({str(project_root)!r}))\nlab"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}}),
                   folder / "bench.ipynb")
    settings = folder / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_CONFIG_DIR": str(folder / "config"),
           "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "VAAL_HOME": str(folder / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.user_settings_dir={folder / 'settings'}", "--LabApp.news_url=",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=open(folder / "lab.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"JupyterLab did not start; see {folder / 'lab.log'}")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between a press's frame and the next press")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "notebook-cpu.json")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from vaal_core.data.digits import DIGIT_CLASSES
    from vaal_core.store import Project

    base = Path(tempfile.mkdtemp(prefix="vaal-bench-notebook-"))
    proc = None
    try:
        os.environ["VAAL_HOME"] = str(base / "home")
        p, round_s = build_project(base)
        root = p.root
        p.close()
        gold = {it.id: it.gold for it in Project.open(root).items()}
        port, token = args.port or free_port(), secrets.token_hex(16)
        proc = start_lab(base, root, port, token)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/bench.ipynb?token={token}", wait_until="commit")
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            time.sleep(1.0)
            if page.locator(".jp-Dialog .jp-mod-accept").count():
                page.click(".jp-Dialog .jp-mod-accept")
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_selector(".vaal-labeler .vaal-image img", timeout=120_000)
            page.click(".vaal-labeler .vaal-path")
            page.evaluate(PROBE)
            pressed: dict[int, str] = {}
            for k in range(args.warmup + args.labels):
                item = int(page.get_attribute(".vaal-labeler .vaal-image img", "data-item"))
                key = str((DIGIT_CLASSES.index(gold[item]) + 1) % 10)
                page.keyboard.press(key)
                page.wait_for_function("() => { const p = window.__presses.at(-1); return p && p.frame; }",
                                       timeout=30_000)
                pressed[item] = gold[item]
                time.sleep(args.pause)
            presses = page.evaluate("() => window.__presses")[args.warmup:]
            browser.close()
        with Project.open(root) as store:
            labels = store.labels()
        right = sum(labels.get(i) == g for i, g in pressed.items())
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)

    table = {}
    for what in ("shown", "decoded", "frame"):
        values = [p_[what] for p_ in presses]
        table[what] = {"median_ms": round(statistics.median(values), 1), "p95_ms": round(pct(values, 0.95), 1),
                       "max_ms": round(max(values), 1)}
    result = {"machine": f"{os.cpu_count()} CPU cores, {platform.machine()}", "images": len(gold),
              "labels_timed": len(presses), "warmup": args.warmup, "pause_s": args.pause,
              "round_fast_vaal_s": round(round_s, 1), "key_to": table,
              "store": {"labels": len(labels), "on_the_image_pressed": right, "presses": len(pressed)}}
    print(f"vc.Labeler in JupyterLab, {len(gold):,} images, {len(presses)} timed presses (after {args.warmup}):")
    for what, row in table.items():
        print(f"  key -> {what:8s} median {row['median_ms']:6.1f} ms   p95 {row['p95_ms']:6.1f} ms   "
              f"max {row['max_ms']:6.1f} ms")
    print(f"  store: {len(labels)} labels, {right} of {len(pressed)} on the image shown at the press")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
