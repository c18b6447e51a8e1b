"""The floor under every page's first frame: how long Streamlit itself takes to
show a bare page in this browser on this machine. Prints figures, asserts nothing.

    python bench/streamlit_floor.py [--visits 5] [--out FILE]

Two servers, one after the other: a bare Streamlit script (a title and a line
of text, nothing of ours) and the app on the digits demo project (built on
its first start). Each page is opened --visits times in a fresh browser
context (nothing cached: Streamlit's scripts are fetched and compiled, as on
a first visit) and --visits times in a new page of one context (its scripts
cached, as on a repeat visit). The figure is `performance.now()` when the page's heading
is on screen, ms from navigation start; medians and the spread.

Beside each: the round trip of a request on a kept-alive connection (the
median of 20 GET /_stcore/health on one connection, after its first), which
is what each of a first visit's ~60 script fetches costs: 44 ms where
Nagle's algorithm holds the response's body back for the browser's delayed
acknowledgement (Streamlit's own server), under 1 ms where the app's server
turns it off (views/server.py).

What it is for: bench/app.py's Explore first frame (navigation to the map's
first frame) includes this floor; the difference between the two rows here
is what the app's own page adds before its heading, less what its server
saves. Writes bench/results/streamlit-floor-cpu.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.app import CHROMIUM, CHROMIUM_ARGS, free_port, machine, start_server, stop_server  # noqa: E402

BARE = 'import streamlit as st\nst.title("Label")\nst.write("a bare Streamlit page")\n'


def serve(script: Path, home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    return start_server(port, home, None, log, script), f"http://localhost:{port}"


def heading_ms(page, url: str) -> float:
    page.goto(url)
    page.get_by_role("heading", name="Label").wait_for()
    return float(page.evaluate("() => performance.now()"))


def keep_alive_ms(url: str, n: int = 20) -> float:
    """Median ms of a request on a kept-alive connection (its first apart)."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    times = []
    for k in range(n + 1):
        t0 = time.perf_counter()
        conn.request("GET", "/_stcore/health")
        conn.getresponse().read()
        if k:
            times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return round(statistics.median(times), 2)


def measure(browser, url: str, visits: int) -> dict:
    keep_alive = keep_alive_ms(url)
    fresh = []
    for _ in range(visits):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        fresh.append(heading_ms(context.new_page(), url))
        context.close()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    cached = []
    for k in range(visits + 1):  # a new page each visit, as bench/app.py's repeat visits
        page = context.new_page()
        ms = heading_ms(page, url)
        if k:  # the first fills the context's cache: not counted
            cached.append(ms)
        page.close()
    context.close()
    return {"keep_alive_request_ms": keep_alive, "fresh_ms": [round(x) for x in fresh],
            "cached_ms": [round(x) for x in cached],
            "fresh_median_ms": round(statistics.median(fresh)), "cached_median_ms": round(statistics.median(cached))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visits", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "streamlit-floor-cpu.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    results: dict = {"machine": machine(), "visits": args.visits}
    with tempfile.TemporaryDirectory(prefix="vaal-bench-floor-") as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        (tmp / "bare.py").write_text(BARE)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for name, script in (("bare Streamlit page", tmp / "bare.py"), ("the app's Label page", ROOT / "app.py")):
                proc, url = serve(script, tmp / "home", tmp / f"{script.stem}.log")
                try:
                    if script.name == "app.py":  # the first start builds the digits demo; the root sends on to Label
                        first = browser.new_page()
                        first.set_default_timeout(180_000)
                        first.goto(url)
                        first.get_by_role("heading", name="Label").wait_for()
                        url = first.url
                        first.close()
                    results[name] = measure(browser, url, args.visits)
                finally:
                    stop_server(proc)
            browser.close()
    print(f"ms from navigation start to the page's heading on screen, {args.visits} visits, "
          f"{results['machine']['description']}, headless Chromium:")
    for name in ("bare Streamlit page", "the app's Label page"):
        r = results[name]
        print(f"  {name:22s} fresh context: median {r['fresh_median_ms']:5d} ({min(r['fresh_ms'])}-"
              f"{max(r['fresh_ms'])})   cached: median {r['cached_median_ms']:5d} ({min(r['cached_ms'])}-"
              f"{max(r['cached_ms'])})   kept-alive request: {r['keep_alive_request_ms']} ms")
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
