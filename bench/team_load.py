"""A team labeling at once: labels per second and latency per label, on SQLite and PostgreSQL.

    python bench/team_load.py [--annotators 1,5,20] [--backends sqlite,postgresql]
                              [--handles shared,own] [--servers 2] [--duration 10]
                              [--think-ms 0] [--items 10000] [--labeled 1000]
                              [--budget 500] [--classes 10] [--repeats 1]
                              [--no-analyze] [--pg-fsync] [--out FILE]

N simulated annotators label on one project through the calls the Label
page makes per image, in --servers app-server processes (the annotators
split evenly between them, one thread each). `--handles shared`: each
process opens ONE `Project` that its annotators' threads share, as the
Streamlit server shares one handle between sessions; `own`: one handle (one
connection) per annotator. Where a process holds a single annotator the two
are the same, and only `shared` runs. By default nobody pauses between
labels (the worst case: a closed loop, so latency ~ N / throughput once the
CPUs are saturated); --think-ms T pauses T x uniform(0.5, 1.5) after each
label (and up to T before the first), a person's pace.

Per press, timed from its start to the label's commit (the table below the
main one gives the mean ms of each):

    order_version           the page's check of its cached order (Project.order_stamp; the order itself
                            is cached per handle)
    labeled_ids, postponed_ids
    next_for                needs_opinion, held_by_others, claim (the lease: one transaction that
                            takes the first free of the next 32 candidates), and its own Python
    item, suggestions       what the page reads to draw the image
    set_label               token, seen={item: None}: one transaction

A LabelConflict from set_label (someone labeled that image since) is
counted, not retried; the annotator moves on. A None from next_for while
images are left is counted too ("no img"), and the annotator presses again. Each annotator labels for --duration
seconds after all of them are ready (a barrier), then stops.

The project: --items placeholder items (no images are read), --classes
classes, --labeled of them labeled by an import beforehand, and one finished
"random" round over the rest: --budget ranked (the batch), the rest scored,
with a suggestion per item; every annotator opens the Label page at the top
of that queue, so they start out racing for the same images. A fresh
project per measurement. On PostgreSQL: a throwaway server from
tests/pg_server.py (fsync off, as the tests run it, unless --pg-fsync) on
this same machine, sharing its CPUs with the app servers; the project's
tables are ANALYZEd after it is made, as autovacuum does within a minute of
an ingest (--no-analyze: measure before that, when the planner has no
statistics and picks worse plans).

Per backend, handles and N: labels/s (successful set_label calls over the
run's span), p50/p95/p99 ms per press, conflicts, claims lost to a race,
and the CPU seconds over the run of the app servers, of PostgreSQL (all its
processes) and of the whole machine, with the share of the machine other
people's jobs took meanwhile (the machine is shared: a point where that is
large says little). Checked afterwards (a failed check is printed and
recorded, never hidden): labeled items == successful set_label calls + the
import, no item has two label rows, each annotator's rows == their
successes, at most one lease standing per annotator.

With --repeats R every point runs R times (interleaved) and the table shows
medians. Writes bench/results/team-load-cpu.json (or --out) beside the
printed table. The target the table is read against: 20 annotators at p95
<= 100 ms per label on PostgreSQL on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.map_scale import cpu_model  # noqa: E402  (the CPU's name, as every bench records it)

TARGET = {"annotators": 20, "backend": "postgresql", "p95_ms": 100.0}
# The store calls of one press, in the order they run; next_for's own apart (labeled_ids and
# held_by_others are next_for's reads of them).
STEPS = ("order_version", "labeled_ids", "postponed_ids", "needs_opinion", "held_by_others", "claim",
         "next_for_python", "item", "suggestions", "set_label")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- numbers --------------------------------------------------------------------------

def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


# -- the project ------------------------------------------------------------------------

def make_project(root: Path, url: str | None, items: int, labeled: int, budget: int, n_classes: int,
                 analyze: bool = True) -> None:
    from vaal_core.store import Project

    classes = [CLASSES[k] if k < len(CLASSES) else f"class{k}" for k in range(n_classes)]
    rng = np.random.default_rng(0)
    with Project.create(root, root / "images", 32, classes, database=url) as p:
        p.add_items([dict(path=f"{i}.jpg", size_bytes=1, sha1=str(i), width=32, height=32, cache_index=i)
                     for i in range(items)])
        ids = sorted(p.paths())
        gold = ids[:labeled]
        if gold:
            p.set_labels([(i, classes[k % n_classes]) for k, i in enumerate(gold)], author="import", source="import")
        pool = ids[labeled:]
        scores = rng.random(len(pool))
        top = np.argsort(-scores)[:budget]
        ranks: list[int | None] = [None] * len(pool)
        for r, k in enumerate(top, 1):
            ranks[k] = r
        guesses = [(classes[int(c)], float(conf)) for c, conf in
                   zip(rng.integers(0, n_classes, len(pool)), rng.uniform(0.2, 1.0, len(pool)))]
        rid = p.start_round("random", budget, 0, {})
        p.finish_round(rid, pool, scores.tolist(), ranks, len(gold), {}, {}, suggestions=guesses)
        if url is not None and analyze:  # what autovacuum does within a minute of an ingest: the planner's statistics
            for r in p.db.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                               (p.db.schema,)):
                p.db.execute(f'ANALYZE "{p.db.schema}"."{r[0]}"')


# -- one app server: a process, its annotators its threads -------------------------------

_local = threading.local()


def _timed(project, name: str, step: str | None = None) -> None:
    """Wrap one of the handle's methods (on the instance: the store is
    untouched) to add its time to the calling thread's current press, under
    `step` (default: its name)."""
    inner, step = getattr(project, name), step or name

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            out = inner(*args, **kwargs)
        finally:
            _local.steps[step] += time.perf_counter() - t
        if step == "claim":  # one lease transaction over the next candidates (claim_first)
            _local.claims += 1
            _local.lost += 0 if out is not None else 1
        return out

    setattr(project, name, wrapper)


def _open(root: str):
    from vaal_core.services import labeling
    from vaal_core.store import Project

    project = Project.open(root)
    for name in ("labeled_ids", "needs_opinion", "held_by_others"):
        _timed(project, name)
    _timed(project, "claim_first", "claim")
    return project, labeling.label_order(project)  # the page caches its order per server (st.cache_resource)


def annotate(name: str, project, order, duration: float, think_s: float, barrier, out: dict) -> None:
    from vaal_core.errors import LabelConflict
    from vaal_core.services import labeling

    lat, per_step = [], []
    ok = conflicts = presses = gave_up = 0
    _local.claims = _local.lost = 0
    start, exhausted = 0, False
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    barrier.wait()
    t_begin = time.perf_counter()
    deadline = t_begin + duration
    if think_s:
        time.sleep(rng.uniform(0, think_s))  # people do not press in step
    while True:
        t0 = time.perf_counter()
        if t0 >= deadline:
            break
        steps = _local.steps = dict.fromkeys(STEPS, 0.0)
        t = time.perf_counter()
        labeling.order_version(project)
        t1 = time.perf_counter()
        labeled = project.labeled_ids()
        t2 = time.perf_counter()
        postponed = project.postponed_ids(order.round_id)
        t3 = time.perf_counter()
        pos = labeling.next_for(project, order, name, labeled, postponed, start)
        t4 = time.perf_counter()
        steps["order_version"], steps["postponed_ids"] = t1 - t, t3 - t2
        again = steps["labeled_ids"] - (t2 - t1)  # next_for's own reads of the labels (after a lost race)
        steps["next_for_python"] = ((t4 - t3) - again - steps["needs_opinion"] - steps["held_by_others"]
                                    - steps["claim"])
        if pos is None:
            if len(project.labeled_ids()) >= project.item_count()[0]:
                exhausted = True  # every image is labeled: this annotator is done
                break
            gave_up += 1  # next_for found nothing while images are left: the press again
            continue
        item_id = order.ids[pos]
        project.item(item_id)
        t5 = time.perf_counter()
        guess = project.suggestions([item_id], order.round_id).get(item_id)
        t6 = time.perf_counter()
        label = guess.label if guess is not None else CLASSES[0]
        try:
            project.set_label(item_id, label, author=name, source="ui", token=f"{name}-{uuid.uuid4().hex}",
                              seen={item_id: None})
            ok += 1
        except LabelConflict:
            conflicts += 1
        t7 = time.perf_counter()
        steps["item"], steps["suggestions"], steps["set_label"] = t5 - t4, t6 - t5, t7 - t6
        presses += 1
        lat.append(t7 - t0)
        per_step.append([steps[s] for s in STEPS])
        start = pos + 1
        if think_s:
            time.sleep(think_s * rng.uniform(0.5, 1.5))
    out[name] = {"lat": lat, "steps": per_step, "ok": ok, "conflicts": conflicts, "presses": presses,
                 "gave_up": gave_up,
                 "claims": _local.claims, "lost": _local.lost, "exhausted": exhausted,
                 "begin": t_begin, "end": time.perf_counter()}


def app_server(root: str, names: list[str], handles: str, duration: float, think_s: float, barrier,
               results, release) -> None:
    """One app-server process: opens the project (once, or per annotator),
    runs one thread per annotator, sends back what each measured, and keeps
    its connections open until `release` (so the parent can read the
    database server's CPU time while its backends still exist)."""
    opened = []
    try:
        if handles == "shared":
            shared = _open(root)
            opened = [shared] * len(names)
        else:
            opened = [_open(root) for _ in names]
        out: dict = {}
        threads = [threading.Thread(target=annotate, args=(n, p, o, duration, think_s, barrier, out), daemon=True)
                   for n, (p, o) in zip(names, opened)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        missing = [n for n in names if n not in out]
        if missing:
            raise RuntimeError(f"annotators {missing} ended without a result (see stderr)")
        results.put({"ok": True, "annotators": out})
        release.wait(timeout=120)
    except BaseException:
        try:
            barrier.abort()
        except Exception:
            pass
        results.put({"ok": False, "error": traceback.format_exc()})
    finally:
        for p in {id(p): p for p, _ in opened}.values():
            p.close()


def tree_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children (psutil)."""
    import psutil

    total, seen = 0.0, set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def run_load(root: Path, n: int, servers: int, handles: str, duration: float, think_s: float = 0.0,
             db_pid: int | None = None) -> dict:
    ctx = mp.get_context("spawn")  # no connection or lock inherited from this process
    servers = max(1, min(servers, n))
    names = [f"annotator{k + 1:02d}" for k in range(n)]
    groups = [names[k::servers] for k in range(servers)]
    barrier = ctx.Barrier(n + 1)
    results, release = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=app_server, args=(str(root), g, handles, duration, think_s, barrier, results,
                                                  release), daemon=True) for g in groups]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=180)  # every annotator has its handle and its order
    except threading.BrokenBarrierError:
        pass
    busy0, total0 = cpu_ticks()
    client0 = tree_cpu_s([p.pid for p in procs])
    db0 = tree_cpu_s([db_pid]) if db_pid else 0.0
    got = []
    try:
        for _ in procs:
            got.append(results.get(timeout=duration + 180))
        busy1, total1 = cpu_ticks()  # every annotator has stopped; their connections are still open
        client1 = tree_cpu_s([p.pid for p in procs])
        db1 = tree_cpu_s([db_pid]) if db_pid else 0.0
    except queue_mod.Empty:
        raise RuntimeError("an app-server process sent nothing back") from None
    finally:
        release.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [g["error"] for g in got if not g["ok"]]
    if errors:
        raise RuntimeError("an app-server process failed:\n" + errors[0])
    per = {k: v for g in got for k, v in g["annotators"].items()}
    lat = [x for a in per.values() for x in a["lat"]]
    steps = np.asarray([s for a in per.values() for s in a["steps"]], dtype=float).reshape(-1, len(STEPS))
    span = max(a["end"] for a in per.values()) - min(a["begin"] for a in per.values())
    ok = sum(a["ok"] for a in per.values())
    out = {
        "annotators": n, "servers": servers, "handles": handles, "span_s": round(span, 2),
        "labels": ok, "labels_per_s": round(ok / span, 1) if span > 0 else 0.0,
        "presses": sum(a["presses"] for a in per.values()),
        "p50_ms": round(pct(lat, 50) * 1e3, 1), "p95_ms": round(pct(lat, 95) * 1e3, 1),
        "p99_ms": round(pct(lat, 99) * 1e3, 1), "max_ms": round(max(lat) * 1e3, 1) if lat else float("nan"),
        "conflicts": sum(a["conflicts"] for a in per.values()),
        "claims": sum(a["claims"] for a in per.values()), "claims_lost": sum(a["lost"] for a in per.values()),
        "exhausted": sum(a["exhausted"] for a in per.values()),
        "gave_up": sum(a["gave_up"] for a in per.values()),
        "per_annotator_labels": {k: per[k]["ok"] for k in sorted(per)},
        "step_mean_ms": {s: round(float(steps[:, k].mean()) * 1e3, 2) if len(steps) else None
                         for k, s in enumerate(STEPS)},
        "step_p95_ms": {s: round(pct(steps[:, k], 95) * 1e3, 2) if len(steps) else None
                        for k, s in enumerate(STEPS)},
        # CPU seconds over the run: the app servers, the PostgreSQL server (all its processes), the whole
        # machine (from /proc/stat; what is neither is someone else's: the machine is shared)
        "client_cpu_s": round(client1 - client0, 1),
        "db_cpu_s": round(db1 - db0, 1) if db_pid else None,
        "machine_cpu_s": round((busy1 - busy0) / os.sysconf("SC_CLK_TCK"), 1),
        "machine_busy_pct": round(100.0 * (busy1 - busy0) / (total1 - total0), 1) if total1 > total0 else None,
        "machine_capacity_cpu_s": round((total1 - total0) / os.sysconf("SC_CLK_TCK"), 1),
    }
    # the share of the machine's CPU that neither the app servers nor PostgreSQL used: other people's jobs
    mine = out["client_cpu_s"] + (out["db_cpu_s"] or 0.0)
    out["others_cpu_pct"] = (round(100.0 * max(out["machine_cpu_s"] - mine, 0.0) / out["machine_capacity_cpu_s"], 1)
                             if out["machine_capacity_cpu_s"] else None)
    return out


def check(root: Path, result: dict, imported: int) -> dict:
    """The store after the run: what was written is exactly what succeeded."""
    from vaal_core.store import Project

    with Project.open(root) as p:
        doubled = p.db.rows("SELECT item_id, COUNT(*) AS n FROM labels GROUP BY item_id HAVING COUNT(*) > 1")
        labeled = len(p.labeled_ids())
        by_author = {r["author"]: int(r["n"]) for r in p.db.rows(
            "SELECT author, COUNT(*) AS n FROM labels WHERE author <> 'import' GROUP BY author")}
        leases = len(p.leases())
    expected = {k: v for k, v in result["per_annotator_labels"].items() if v}
    out = {"items_doubly_labeled": len(doubled), "labeled_items": labeled,
           "expected_labeled": result["labels"] + imported, "rows_by_author_match": by_author == expected,
           "leases_standing": leases}
    out["ok"] = (not doubled and labeled == result["labels"] + imported and by_author == expected
                 and leases <= result["annotators"])
    return out


# -- the run ------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", default="1,5,20", help="comma-separated N (default 1,5,20)")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--handles", default="shared,own", help="shared: one Project per process; own: one per annotator")
    ap.add_argument("--servers", type=int, default=2, help="app-server processes (default 2)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds each annotator labels (default 10)")
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--labeled", type=int, default=1000, help="items labeled by an import beforehand")
    ap.add_argument("--budget", type=int, default=500, help="the round's ranked batch")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="pause after each label at every --annotators point (default 0: as fast as the store allows)")
    ap.add_argument("--paced", default="20:1000",
                    help="extra points N:MS (shared handles) pausing MS after each label; default 20:1000, '' for none")
    ap.add_argument("--no-analyze", action="store_true",
                    help="PostgreSQL: measure before the first ANALYZE (a project just ingested)")
    ap.add_argument("--pg-fsync", action="store_true", help="PostgreSQL with fsync on (the test server has it off)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "team-load-cpu.json"))
    args = ap.parse_args()
    ns = [int(x) for x in args.annotators.split(",") if x.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    handles = [h.strip() for h in args.handles.split(",") if h.strip()]
    t_all = time.perf_counter()

    pg = None
    if "postgresql" in backends:
        sys.path.insert(0, str(ROOT / "tests"))
        from pg_server import PgServer, find_binaries

        if find_binaries() is None:
            print("PostgreSQL is not installed: the postgresql rows are left out", flush=True)
            backends.remove("postgresql")
        else:
            pg = PgServer().start()
            os.environ["PGPASSWORD"] = pg.password
            if args.pg_fsync:
                pg._admin("ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
                          "SELECT pg_reload_conf()")
            pg_url = pg.new_database("team_load")

    # (backend, N, handles, think ms): the closed loop at every N, then the paced points
    points = [(b, n, h, args.think_ms) for b in backends for n in ns for h in handles
              if h == "shared" or n > max(1, min(args.servers, n))]  # own == shared with one annotator per process
    for spec in (x for x in args.paced.split(",") if x.strip()):
        n_text, _, ms_text = spec.partition(":")
        points += [(b, int(n_text), "shared", float(ms_text or 1000)) for b in backends]
    points = list(dict.fromkeys(points))

    def key_of(b: str, n: int, h: str, think: float) -> str:
        return f"{b}/{h}/{n}" + (f"/think{think:g}ms" if think else "")

    runs: dict[str, list[dict]] = {key_of(*pt): [] for pt in points}
    tmp = Path(tempfile.mkdtemp(prefix="vaal-team-load-"))
    try:
        for r in range(args.repeats):
            for b, n, h, think in points:
                root = tmp / f"{b}-{h}-{n}-{think:g}-{r}"
                make_project(root, pg_url if b == "postgresql" else None, args.items, args.labeled, args.budget,
                             args.classes, analyze=not args.no_analyze)
                res = run_load(root, n, args.servers, h, args.duration, think / 1e3,
                               db_pid=pg._postmaster_pid() if pg is not None and b == "postgresql" else None)
                res["think_ms"], res["backend"] = think, b
                res["check"] = check(root, res, args.labeled)
                runs[key_of(b, n, h, think)].append(res)
                c = res["check"]
                print(f"repeat {r + 1}: {b:10s} {h:6s} N={n:<3d} think {think:5g} ms "
                      f"{res['labels_per_s']:7.1f} labels/s  p95 {res['p95_ms']:6.1f} ms  "
                      f"conflicts {res['conflicts']}  lost claims {res['claims_lost']}  "
                      f"others {res['others_cpu_pct']:.0f}%  check {'ok' if c['ok'] else 'FAILED ' + json.dumps(c)}",
                      flush=True)
                if b == "postgresql":
                    from vaal_core.store import Project

                    with Project.open(root) as p:
                        p.db.drop()  # the next project's ANALYZE and caches see only its own tables
                shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if pg is not None:
            pg.stop()

    def med(rs: list[dict], key: str) -> float:
        return float(statistics.median(x[key] for x in rs))

    table = {}
    for key, rs in runs.items():
        row = {"backend": rs[0]["backend"], "handles": rs[0]["handles"], "annotators": rs[0]["annotators"],
               "think_ms": rs[0]["think_ms"]}
        for k in ("labels_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "client_cpu_s", "machine_cpu_s",
                  "machine_busy_pct", "others_cpu_pct"):
            row[k] = med(rs, k)
        row["db_cpu_s"] = med(rs, "db_cpu_s") if rs[0]["db_cpu_s"] is not None else None
        for k in ("conflicts", "claims_lost", "exhausted", "gave_up"):
            row[k] = sum(x[k] for x in rs)
        row["step_mean_ms"] = {s: round(statistics.median(x["step_mean_ms"][s] for x in rs), 2) for s in STEPS}
        row["checks_ok"] = all(x["check"]["ok"] for x in rs)
        table[key] = row

    print(f"\n{args.items:,} items ({args.labeled:,} labeled before), {args.classes} classes, "
          f"{args.servers} app-server processes, {args.duration:g} s per point, "
          f"{'medians of ' + str(args.repeats) if args.repeats > 1 else 'one run each'}; "
          f"{os.cpu_count()} CPU cores ({cpu_model()}), PostgreSQL fsync {'on' if args.pg_fsync else 'off'}:")
    head = (f"{'backend':10s} {'handles':7s} {'N':>3s} {'think':>5s} {'labels/s':>9s} {'p50 ms':>7s} "
            f"{'p95 ms':>7s} {'p99 ms':>7s} {'conflicts':>9s} {'lost':>5s} {'no img':>6s} {'app cpu':>7s} "
            f"{'db cpu':>6s} {'all cpu':>7s} {'others':>6s} {'checks':>6s}")
    print(head)
    print("-" * len(head))
    for row in table.values():
        print(f"{row['backend']:10s} {row['handles']:7s} {row['annotators']:3d} {row['think_ms']:5g} "
              f"{row['labels_per_s']:9.1f} "
              f"{row['p50_ms']:7.1f} {row['p95_ms']:7.1f} {row['p99_ms']:7.1f} {row['conflicts']:9d} "
              f"{row['claims_lost']:5d} {row['gave_up']:6d} {row['client_cpu_s']:7.1f} "
              f"{row['db_cpu_s'] if row['db_cpu_s'] is not None else float('nan'):6.1f} {row['machine_cpu_s']:7.1f} "
              f"{row['others_cpu_pct']:5.0f}% "
              f"{'ok' if row['checks_ok'] else 'FAILED':>6s}")
    print("(think: ms a person pauses after each label, 0: none, the closed loop; "
          "conflicts: LabelConflict from set_label; lost: claims another annotator won; no img: next_for "
          "returned None while images were left; cpu: CPU seconds over the run, app servers / PostgreSQL / "
          "the whole machine; others: the machine's capacity other people's jobs took meanwhile)")
    print("\nmean ms per press by store call (medians over repeats):")
    short = {"order_version": "version", "labeled_ids": "labeled", "postponed_ids": "postponed",
             "needs_opinion": "opinion", "held_by_others": "held", "claim": "claim", "next_for_python": "nf.py",
             "item": "item", "suggestions": "suggest", "set_label": "set_label"}
    print(f"{'backend':10s} {'handles':7s} {'N':>3s} {'think':>5s} " + " ".join(f"{short[s]:>9s}" for s in STEPS))
    for row in table.values():
        print(f"{row['backend']:10s} {row['handles']:7s} {row['annotators']:3d} {row['think_ms']:5g} "
              + " ".join(f"{row['step_mean_ms'][s]:9.2f}" for s in STEPS))
    verdicts = {}
    for key, row in table.items():
        if (row["backend"], row["handles"], row["annotators"]) != (TARGET["backend"], "shared", TARGET["annotators"]):
            continue
        verdicts[key] = met = row["p95_ms"] <= TARGET["p95_ms"]
        pace = f"pausing {row['think_ms']:g} ms after each label" if row["think_ms"] else "with no pause (closed loop)"
        print(f"target: {TARGET['annotators']} annotators at p95 <= {TARGET['p95_ms']:g} ms on PostgreSQL, {pace}: "
              f"p95 {row['p95_ms']:.1f} ms at {row['labels_per_s']:.1f} labels/s -> {'met' if met else 'MISSED'}")
    if verdicts:
        print(f"(on {os.cpu_count()} cores shared with PostgreSQL and with other people's jobs; shared handles)")
    failed = [k for k, row in table.items() if not row["checks_ok"]]
    if failed:
        print(f"CHECKS FAILED: {failed}")

    result = {
        "machine": f"{os.cpu_count()} CPU cores ({cpu_model()}, {platform.machine()})",
        "load_average_at_end": list(os.getloadavg()),
        "command": "PYTHONPATH=. " + " ".join(shlex.quote(x) for x in [".venv/bin/python", "bench/team_load.py",
                                                                           *sys.argv[1:]]),
        "python": platform.python_version(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "postgresql": None if pg is None else {"fsync": args.pg_fsync, "same_machine": True,
                                               "server": "tests/pg_server.py"},
        "target": {**TARGET, "met": verdicts},
        "steps": list(STEPS),
        "table": table,
        "runs": runs,
        "wall_s": round(time.perf_counter() - t_all, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out} ({result['wall_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
