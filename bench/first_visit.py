"""Explore's first frame, side by side for several checkouts of the app (the
code before a change and after it): prints figures, asserts nothing.

    python bench/first_visit.py DIR[,DIR...] [--trials 3] [--items 50000]
                                [--home DIR] [--cifar DIR] [--out FILE]

Each DIR is a checkout of this repository with the map built (`make map`)
and a .venv (a git worktree with links to this checkout's .venv and
assets/build will do). One project of --items CIFAR-10 JPEGs with 1,000
labels, a `--fast` VAAL round and its UMAP is built once (in --home, kept
there for the next run when given). Then, --trials times, for each DIR in
turn (the order alternating from trial to trial, so that a machine getting
busier or quieter favours none): a `streamlit run app.py` of that DIR on the
project, the Label page opened once (the server's own imports), and then:

  - first visit, map not made: /explore opened in a fresh browser context
    (nothing cached), the round's payload not yet made by this server, as
    after a label (each label changes the payload); ms from navigation start
    to the map's first frame with every point, with the page's title shown
    and the map mounted;
  - first visit, map made: the same again, in another fresh context;
  - from the sidebar: the Label page open (its scripts loaded), a click on
    Explore in the sidebar (no page load: Streamlit switches pages in the
    tab), ms from the click to the map's first frame; the payload is made
    by then, as it is for anyone who opened Explore before in this state.

Medians per DIR are printed at the end. Writes --out (default
bench/results/first-visit-cpu.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.app import (CHROMIUM, CHROMIUM_ARGS, EXPLORE_INIT, cifar_folder, free_port, link_subset,  # noqa: E402
                       machine, make_project, prepare_explore, start_server, stop_server, wait_idle)
from bench.map_scale import MAP_FRAME, MAP_READY  # noqa: E402
from vaal_core.services import workspace  # noqa: E402

VIEW = {"width": 1400, "height": 1000}


def serve(code: Path, home: Path, project: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` of checkout `code` on `project`, ready."""
    port = free_port()
    return start_server(port, home, project, log, code=code), f"http://localhost:{port}"


def visit(browser, url: str, pid: str) -> dict:
    """/explore in a fresh context: ms from navigation start."""
    context = browser.new_context(viewport=VIEW)
    context.add_init_script(EXPLORE_INIT)
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/explore?project={pid}")
    page.wait_for_function(MAP_READY, polling="raf")
    frame = page.evaluate(MAP_FRAME)
    context.close()
    marks = frame["marks"]
    return {"frame_ms": round(frame["tReady"]), "title_ms": round(marks.get("title", -1)),
            "mounted_ms": round(marks.get("mapMounted", -1)), "points": frame["points"]}


def from_sidebar(browser, url: str, pid: str) -> int:
    """The Label page, then Explore by the sidebar: ms from the click."""
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/label?project={pid}")
    wait_idle(page)
    time.sleep(1.0)
    t0 = page.evaluate("() => performance.now()")
    page.locator('[data-testid="stSidebarNav"] a[href*="explore"]').first.click()
    page.wait_for_function(MAP_READY, polling="raf")
    ms = page.evaluate("() => window.__tReady") - t0
    context.close()
    return round(ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("codes", help="comma-separated checkouts of this repository")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--items", type=int, default=50000)
    ap.add_argument("--home", help="where the project is built (kept; reused when it is there)")
    ap.add_argument("--cifar", help="extracted CIFAR-10 folder (default: extract to the temp folder)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "first-visit-cpu.json"))
    args = ap.parse_args()
    codes = [Path(c).resolve() for c in args.codes.split(",")]
    for code in codes:
        if not (code / "app.py").is_file() or not (code / "assets" / "build" / "latent_map.js").is_file():
            raise SystemExit(f"{code}: not a checkout with the map built (make map)")
    home = Path(args.home or tempfile.mkdtemp(prefix="vaal-bench-first-visit-")).resolve()
    root = home / "projects" / f"explore-{args.items}"
    if not (root / "project.db").is_file():
        print(f"building the project in {root} (ingest, a --fast round, UMAP) ...", flush=True)
        images, gold = link_subset(cifar_folder(args.cifar), home / f"images-{args.items}", args.items)
        project, _ = make_project(root, images, gold)
        prepare_explore(project)
    pid = workspace.project_id(root)
    from playwright.sync_api import sync_playwright

    rows: dict[str, list[dict]] = {str(c): [] for c in codes}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for trial in range(args.trials):
            for code in codes if trial % 2 == 0 else codes[::-1]:
                proc, url = serve(code, home, root, home / "server.log")
                try:
                    context = browser.new_context(viewport=VIEW)  # the server's imports, not timed
                    page = context.new_page()
                    page.set_default_timeout(120_000)
                    page.goto(f"{url}/label?project={pid}")
                    wait_idle(page)
                    context.close()
                    row = {"not_made": visit(browser, url, pid), "made": visit(browser, url, pid),
                           "sidebar_ms": from_sidebar(browser, url, pid)}
                finally:
                    stop_server(proc)
                rows[str(code)].append(row)
                print(f"trial {trial + 1} {code}: {json.dumps(row)}", flush=True)
        browser.close()

    print(f"\nExplore, {args.items:,} points, ms (medians of {args.trials}; {machine()['description']}):")
    print(f"  {'checkout':40s} {'first visit, map not made':>26s} {'first visit, map made':>22s} "
          f"{'from the sidebar':>17s}")
    for code, got in rows.items():
        med = lambda f: round(statistics.median(f(r) for r in got))  # noqa: E731
        print(f"  {code[-40:]:40s} {med(lambda r: r['not_made']['frame_ms']):>26,d} "
              f"{med(lambda r: r['made']['frame_ms']):>22,d} {med(lambda r: r['sidebar_ms']):>17,d}")
    Path(args.out).write_text(json.dumps({"machine": machine(), "items": args.items, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
