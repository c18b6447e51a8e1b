"""Demo runs: oracle simulations started from the app, one folder each under
the home's demo-runs/ (sim.json, sim.html, the latents and their map, the
worker's log), so a run survives a refresh and can be reopened later.

The simulation itself is `python -m vaal_core simulate` in a background
worker; the Demo page polls sim.json, which it rewrites after every round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vaal_core.services import worker, workspace
from vaal_core.errors import BadImageFolder, BadInput
from vaal_core.loop.simulate import read_result

RESULT = "sim.json"
WORKER = "simulate"


@dataclass(frozen=True)
class DemoRun:
    folder: Path

    @property
    def result_path(self) -> Path:
        return self.folder / RESULT

    @property
    def name(self) -> str:
        return self.folder.name

    def result(self) -> dict[str, Any] | None:
        return read_result(self.result_path)

    def worker(self) -> worker.WorkerState | None:
        return worker.state(self.folder, WORKER)

    def running(self) -> bool:
        job = self.worker()
        return job is not None and job.running


def start(images: Path, samplers: Sequence[str], init: int, budget: int, rounds: int, seeds: int,
          subset: int | None = None, fast: bool = True, device: str = "auto") -> DemoRun:
    """Check what can be checked at once, then start the simulation in the
    background; the rest (class folders, sizes) fails fast in the worker
    and shows as its error."""
    images = Path(images).expanduser()
    if not images.is_dir():
        raise BadImageFolder(f"image folder {images} does not exist or is not a folder")
    if not samplers:
        raise BadInput("pick at least one sampler (random is always run beside it)")
    folder = workspace.demo_runs_dir() / f"{worker.file_stamp()}-{images.name}"
    folder.mkdir(parents=True, exist_ok=True)
    args = ["simulate", "--images", str(images), "--samplers", ",".join(samplers), "--init", str(init),
            "--budget", str(budget), "--rounds", str(rounds), "--seeds", str(seeds), "--out",
            str(folder / RESULT), "--device", device, "--map", "--json"]
    args += ["--fast"] if fast else []
    args += ["--subset", str(subset)] if subset else []
    worker.launch(folder, WORKER, args)
    return DemoRun(folder)


def runs() -> list[DemoRun]:
    """Every demo run, newest first."""
    root = workspace.demo_runs_dir()
    if not root.is_dir():
        return []
    return [DemoRun(p) for p in sorted(root.iterdir(), reverse=True) if p.is_dir()]


def stop(run: DemoRun) -> bool:
    """Stop a running simulation; what it finished stays in sim.json."""
    return worker.stop(run.folder, WORKER)


@dataclass(frozen=True)
class PicksMap:
    xy: np.ndarray  # (n_pool, 2)
    rows: np.ndarray  # (n_pool,) decoded rows of the pool
    classes: list[str]
    y: np.ndarray  # (n_pool,) class index (the oracle's answer)
    picked_in: dict[str, np.ndarray]  # sampler -> (n_pool,) round it was picked in (seed 0), -1 never


def picks_map(run: DemoRun, result: dict[str, Any]) -> PicksMap | None:
    """The pool's latent map and, per sampler, the round each image was
    picked in (seed 0; round 0 = the random initial set), or None when the
    run kept no latents or its map is not computed yet."""
    from vaal_core.maps.cache import cached_projection_of

    name = result.get("latents_file")
    if not name or not result.get("map_ready"):
        return None
    latents = run.folder / name
    data = np.load(latents)
    xy = cached_projection_of(latents, seed=0)  # computed by the worker: a cache hit here
    rows = data["rows"].astype(np.int64)
    where = {int(r): k for k, r in enumerate(rows)}
    picked: dict[str, np.ndarray] = {}
    for sampler, by_seed in result["results"].items():
        rounds = by_seed.get("0") or []
        when = np.full(len(rows), -1, dtype=np.int64)
        for record in rounds:
            for r in record["picked"]:
                if int(r) in where and when[where[int(r)]] < 0:
                    when[where[int(r)]] = record["round"]
        picked[sampler] = when
    return PicksMap(xy, rows, list(result["classes"]), data["y"].astype(np.int64), picked)
