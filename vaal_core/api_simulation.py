"""`vc.simulate` and its result, `vc.Simulation`: the Python face of
`python -m vaal_core simulate` (loop/simulate.py), the Demo page's engine.
api.py re-exports both, so `vc.simulate` and `vaal_core.api.simulate` are
this one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaal_core.progress_bars import round_bar

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

SUMMARY_COLUMNS = ["sampler", "round", "labeled", "mean", "std", "min", "max", "n_seeds"]


class Simulation:
    """What `simulate` measured. `.raw` is the results JSON as a dict (the
    file is `.out`, its chart `.out.with_suffix('.html')`); `.summary`,
    `.figure` and `.headline` read from it."""

    def __init__(self, raw: dict[str, Any], out: Path):
        self.raw, self.out = raw, out

    @property
    def headline(self) -> str:
        """The result in one sentence per point (' | ' between them)."""
        return self.raw["headline"]

    @cached_property
    def summary(self) -> "pd.DataFrame":
        """Test accuracy per sampler and round: a row each, with the mean,
        std, min and max over the seeds (as fractions) and n_seeds."""
        import pandas as pd

        rows = [{"sampler": name, **row} for name, rows in self.raw["summary"].items() for row in rows]
        return pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)

    @cached_property
    def figure(self) -> "go.Figure":
        """Accuracy against labels, a line per sampler (the Demo page's chart)."""
        from vaal_core.loop.chart import chart_figure

        return chart_figure(self.raw)

    def __repr__(self) -> str:
        return f"<vaal_core simulation: {self.headline or 'no results'}; files: {self.out.parent}>"


def simulate(images: str | os.PathLike, samplers: Sequence[str] | str, *, init: int, budget: int, rounds: int,
             seeds: int = 1, fast: bool = False, out: str | os.PathLike | None = None, device: str = "auto",
             image_size: int = 32, test_fraction: float = 0.2, subset: int | None = None, evaluate: str = "own",
             pretrained: str | None = None, map: bool = False, progress: bool = True) -> Simulation:
    """Play active learning with an oracle on a folder with a subfolder
    per class: from `init` random labels, each sampler picks `budget` more
    per round for `rounds` rounds (random is always added as the baseline),
    on `seeds` seeds, measuring test accuracy on a held-out split. As
    `python -m vaal_core simulate`; the files (results JSON, chart HTML)
    go to the folder `out` (default: a new temporary folder).

        >>> sim = vc.simulate("data/digits", ["vaal", "entropy"], init=50, budget=50, rounds=4, fast=True)
        >>> sim.summary.head(3)
          sampler  round  labeled   mean   std   min   max  n_seeds
        0  random      0       50  0.612   0.0  0.612  0.612       1
        ...
        >>> sim.figure.show()
    """
    from vaal_core.loop.simulate import SimConfig, rounds_total
    from vaal_core.loop.simulate import simulate as run

    names = [s.strip() for s in samplers.split(",") if s.strip()] if isinstance(samplers, str) else list(samplers)
    cfg = SimConfig(samplers=tuple(names), init=init, budget=budget, rounds=rounds, seeds=seeds, fast=fast,
                    device=device, image_size=image_size, test_fraction=test_fraction, subset=subset, map=map,
                    evaluate=evaluate, pretrained=pretrained)
    total = rounds_total(cfg)  # an unknown sampler is refused before a folder is made
    folder = Path(out).expanduser() if out is not None else Path(tempfile.mkdtemp(prefix="vaal-simulation-"))
    folder.mkdir(parents=True, exist_ok=True)
    with round_bar(progress, total) as show:
        raw = run(Path(images).expanduser(), cfg, folder / "simulation.json", progress=show)
    return Simulation(raw, folder / "simulation.json")
