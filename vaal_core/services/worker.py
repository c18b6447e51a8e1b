"""Background workers: long jobs (a training round, a UMAP projection, a
simulation) run as separate `python -m vaal_core ...` processes, never inside
a Streamlit script run, so the page keeps serving while they work.

A worker is described by a small JSON file in the folder it works on
(`<name>.worker.json`: pid, command, log file, start time), so any process,
including a restarted app server, can tell whether it still runs and read
why it failed. Progress itself is not here: rounds write it to the store,
projections and simulations to files beside their output, and pages poll
those.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vaal_core.errors import WorkerBusy
from vaal_core.files import write_json_atomic
from vaal_core.store import Project, now

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding vaal_core/
_CHILDREN: dict[int, subprocess.Popen] = {}  # started by this process: polled so they never linger as zombies


@dataclass(frozen=True)
class WorkerState:
    name: str
    pid: int
    command: list[str]
    log: Path
    started_at: str
    running: bool
    error: str | None  # the worker's one-line "error: ..." once it has ended with one

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def file_stamp() -> str:
    """The time now as a sortable, filename-safe stamp: 20261123T110701."""
    return now().replace(":", "").replace("-", "").replace(".", "")[:15]


def _info_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.worker.json"


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell it from a
    later process that got the same pid; None where /proc is absent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return False  # Linux, and the process is gone
        try:  # elsewhere (macOS): signal 0 only checks that the pid exists
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has finished its work
        return False
    return start is None or fields[19] == start


def launch(folder: Path, name: str, args: Sequence[str], processes: int = 1) -> WorkerState:
    """Start `python -m vaal_core ARGS` in the background, its output in
    folder/logs/<name>-<time>.log; with `processes` > 1, as that many ranks
    under torchrun (`python -m torch.distributed.run --standalone`: a free
    local port for their rendezvous). Refuses (WorkerBusy) while a worker of
    the same name in the same folder is still running."""
    folder = Path(folder)
    current = state(folder, name)
    if current is not None and current.running:
        raise WorkerBusy(f"a {name} job is already running in {folder} (process {current.pid}); "
                         "wait for it or cancel it")
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}-{file_stamp()}.log"
    launcher = (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(processes)}"]
                if processes > 1 else [])
    command = [sys.executable, *launcher, "-m", "vaal_core", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                      os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        # A session of its own: a Ctrl-C in the app's terminal or the app
        # server's exit does not kill a round half-way.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=PACKAGE_ROOT, env=env, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    info = {"name": name, "pid": proc.pid, "proc_start": _proc_start(proc.pid), "command": command,
            "log": str(log), "started_at": now()}
    write_json_atomic(_info_path(folder, name), info)
    return state(folder, name)


def state(folder: Path, name: str) -> WorkerState | None:
    """The latest worker of this name in this folder, or None if none ran."""
    try:
        info: dict[str, Any] = json.loads(_info_path(Path(folder), name).read_text())
    except (OSError, ValueError):
        return None
    running = _alive(info["pid"], info.get("proc_start"))
    log = Path(info["log"])
    error = None if running else _last_error(log)
    return WorkerState(name, info["pid"], info["command"], log, info["started_at"], running, error)


def _last_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    if errors:
        return errors[-1]
    if any(ln.startswith("Traceback") for ln in lines):  # a crash, not a user error
        return lines[-1] if lines else "the worker crashed (see its log)"
    return None


def stop(folder: Path, name: str) -> bool:
    """Ask a running worker to stop (SIGTERM: the CLI turns it into a clean
    interruption). Returns whether one was running."""
    current = state(folder, name)
    if current is None or not current.running:
        return False
    try:
        os.kill(current.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# -- rounds -----------------------------------------------------------------

def start_round(project: Project, sampler: str, budget: int | None, device: str = "auto",
                fast: bool = False, seed: int = 0, fresh: bool = False,
                devices: dict[str, Any] | None = None, audit: float = 0.05, processes: int = 1) -> WorkerState:
    """Check the request, then train the round in a background process.
    Raises WorkerBusy when a round of this project is training already (in
    this app or from the command line), and the checks' BadInput errors.
    `devices` (a `learn.devices.probe` answer) lets the check refuse a
    device the machine lacks without loading PyTorch here. `audit`: the
    share of the batch drawn at random (`loop/audit.py`). `processes` > 1:
    the round runs as that many torchrun ranks (one per GPU on a CUDA
    machine; learn/distributed.py)."""
    from vaal_core.loop.round import RoundConfig, check_round

    check_processes(processes, device, devices)
    if project.is_training():
        raise WorkerBusy(f"a round of {project.root.name} is training already; wait for it or cancel it")
    cfg = RoundConfig(sampler=sampler, budget=budget, seed=seed, device=device, fast=fast, fresh=fresh, audit=audit)
    budget = check_round(project, cfg, devices)
    args = ["round", str(project.root), "--sampler", sampler, "--budget", str(budget), "--device", device,
            "--seed", str(seed), "--audit", repr(float(audit)), "--json"]
    args += ["--fast"] if fast else []
    args += ["--fresh"] if fresh else []
    return launch(project.root, "round", args, processes=processes)


def check_processes(processes: int, device: str, devices: dict[str, Any] | None) -> None:
    """A round on N processes asks for N GPUs on CUDA (one each); on a CPU
    the ranks share its cores (useful for testing the path, rarely faster)."""
    from vaal_core.errors import BadInput

    if not isinstance(processes, int) or processes < 1:
        raise BadInput(f"processes must be a whole number of at least 1, got {processes!r}")
    if processes > 1 and devices is not None and device in ("auto", "cuda") and devices.get("cuda"):
        if processes > len(devices["cuda"]):
            raise BadInput(f"{processes} processes need {processes} GPUs; this machine has "
                           f"{len(devices['cuda'])}")


def round_worker(project: Project) -> WorkerState | None:
    return state(project.root, "round")


def cancel_round(project: Project) -> bool:
    """Cancel the training round: through the store's flag when the round
    has started (it stops within a second and keeps the old queue), or by
    stopping the worker while it is still starting up."""
    if project.request_cancel():
        return True
    return stop(project.root, "round")


# -- projections --------------------------------------------------------------

def start_embed(project: Project, round_id: int) -> WorkerState:
    """Compute a round's UMAP map in the background (the Explore page polls
    `maps.cache.projection_progress` meanwhile). A second start for the same
    project while one runs is refused; the cache lock covers the CLI too."""
    return launch(project.root, "embed", ["embed", str(project.root), "--round", str(round_id), "--json"])


def embed_worker(project: Project) -> WorkerState | None:
    return state(project.root, "embed")
