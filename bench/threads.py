"""CPU rounds on an idle and on a busy machine: prints figures, asserts nothing.

    python bench/threads.py [--pool 10000] [--repeats 3] [--cifar DIR]

A `--fast` VAAL round with the task model (the label suggestions) on a
pool of real CIFAR-10 JPEGs (1,000 of them labeled, budget 500), run as the
app runs it: `python -m vaal_core round` in its own process. Four
conditions, interleaved, `--repeats` times each:

    wait policy   OpenMP threads spin while idle (libgomp's default) or
                  sleep (OMP_WAIT_POLICY=PASSIVE, what `python -m vaal_core`
                  sets unless the user set a policy)
    machine       idle, or busy with another 2-thread PyTorch job (matrix
                  products on 2 threads, started before and stopped after)

For each: the round's wall time and its process's CPU time (user + system,
from the kernel's accounting of the child), medians over the repeats, and
the ratio busy / idle of the CPU time: how much CPU the round burns when it
has to share the cores. Writes bench/results/threads-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine import cifar_folder  # noqa: E402

BUSY = """
import torch
torch.set_num_threads(2)
a = torch.randn(768, 768)
while True:
    a = torch.tanh(a @ a)
"""


def make_project(cifar: Path, pool: int, out: Path) -> Path:
    """`pool` CIFAR-10 training JPEGs (equal per class), ingested, 1,000 of
    them (every class) labeled with their folder's class."""
    from vaal_core.data.ingest import init_project
    from vaal_core.store import Project

    folder = out / "images"
    per_class = pool // 10
    for cls in sorted(p.name for p in (cifar / "train").iterdir()):
        (folder / cls).mkdir(parents=True)
        for f in sorted((cifar / "train" / cls).iterdir())[:per_class]:
            shutil.copy(f, folder / cls / f.name)  # copies: a symlink out of the folder is refused
    root = out / "proj"
    init_project(root, folder, gold_from_folders=True)[0].close()
    project = Project.open(root)
    items = project.items()
    step = max(1, len(items) // 1000)
    project.set_labels([(it.id, it.gold) for it in items[::step][:1000]])
    return root


def one_round(root: Path, policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["OMP_WAIT_POLICY"] = policy or "ACTIVE"  # ACTIVE: spin, as libgomp does by default
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vaal_core", "round", str(root), "--sampler", "vaal", "--fast",
                             "--budget", "500", "--device", "cpu", "--fresh", "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"the round failed (status {status})")
    timings = json.loads(out)["timings"]
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cifar")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(cifar_folder(args.cifar), args.pool, Path(tmp))
        conditions = [(policy, load) for load in ("idle", "busy") for policy in ("ACTIVE", "PASSIVE")]
        runs: dict[str, list[dict]] = {f"{p}/{load}": [] for p, load in conditions}
        for r in range(args.repeats):
            for policy, load in conditions:
                busy = (subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.DEVNULL)
                        if load == "busy" else None)
                try:
                    if busy is not None:
                        time.sleep(2)  # the other job is up to speed
                    got = one_round(root, policy)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                runs[f"{policy}/{load}"].append(got)
                print(f"repeat {r + 1}: {policy:7s} {load:4s} wall {got['wall_s']:7.1f} s  cpu {got['cpu_s']:7.1f} s",
                      flush=True)

    table = {}
    for key, rs in runs.items():
        table[key] = {"wall_s": statistics.median(x["wall_s"] for x in rs),
                      "cpu_s": statistics.median(x["cpu_s"] for x in rs),
                      "train_s": statistics.median(x["timings"].get("train_s", 0) for x in rs),
                      "task_s": statistics.median(x["timings"].get("task_s", 0) for x in rs)}
    print(f"\n--fast round, {args.pool:,} images (1,000 labeled), budget 500, medians of {args.repeats}:")
    print(f"{'policy/machine':16s} {'wall s':>8s} {'cpu s':>8s} {'VAE s':>8s} {'task s':>8s}")
    for key, row in table.items():
        print(f"{key:16s} {row['wall_s']:8.1f} {row['cpu_s']:8.1f} {row['train_s']:8.1f} {row['task_s']:8.1f}")
    ratios = {p: round(table[f"{p}/busy"]["cpu_s"] / table[f"{p}/idle"]["cpu_s"], 2) for p in ("ACTIVE", "PASSIVE")}
    for p, v in ratios.items():
        print(f"CPU time busy / idle, {p}: {v:.2f}x")
    result = {"machine": f"{os.cpu_count()} CPU cores ({platform.machine()})", "pool": args.pool,
              "repeats": args.repeats, "medians": table, "cpu_busy_over_idle": ratios, "runs": runs}
    out = ROOT / "bench" / "results" / "threads-cpu.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
