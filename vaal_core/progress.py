"""Progress of long work, in one shape everywhere: a phase, the steps done of
a total, and the latest values (losses, accuracy, ...).

Every long job (ingest, a round's training and scoring, a UMAP map, a
simulation) reports `Event`s to a `Progress` callback. The phases are one
enum with a label each, so the pages and the CLI can name every phase the
engine sends without keeping their own list of strings. `Throttle` is the
one rate limiter: progress is cheap to make and expensive to store or
print, so each sink (the store, a JSON file, stderr) lets through at most
one event per interval, but always the first and the last of a phase.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Callable, Mapping


class Phase(StrEnum):
    """What a job is doing. The values are stored (round rows, simulation
    JSON), so they never change; add new members instead."""

    START = "start"
    WRITE = "write"
    DECODE = "decode"
    TASK = "task"
    PREDICT = "predict"
    TRAIN = "train"
    SCORE = "score"
    SELECT = "select"
    NEIGHBORS = "neighbors"
    LAYOUT = "layout"
    MAP = "map"
    CHART = "chart"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    FEATURES = "features"
    EMBED = "embed"
    PROBE = "probe"

    @property
    def label(self) -> str:
        """The phase in words, for a progress bar: 'training the task model'."""
        return _LABELS[self]

    @property
    def unit(self) -> str:
        """What its steps count, for 'step 40 of 150'."""
        return _UNITS.get(self, "step")


_LABELS = {
    Phase.START: "starting",
    Phase.WRITE: "writing the image files",
    Phase.DECODE: "reading the images",
    Phase.TASK: "training the task model",
    Phase.PREDICT: "task model predictions",
    Phase.TRAIN: "training the VAE and discriminator",
    Phase.SCORE: "scoring the pool with the VAE",
    Phase.SELECT: "selecting the batch",
    Phase.NEIGHBORS: "finding neighbours",
    Phase.LAYOUT: "laying out the map",
    Phase.MAP: "mapping the picks",
    Phase.CHART: "drawing the chart",
    Phase.DONE: "done",
    Phase.STOPPED: "stopped",
    Phase.FAILED: "failed",
    Phase.FEATURES: "training the feature space (self-supervised)",
    Phase.EMBED: "embedding the images",
    Phase.PROBE: "fitting the suggestions' linear probe",
}
_UNITS = {Phase.WRITE: "image", Phase.DECODE: "image", Phase.TRAIN: "iteration", Phase.PREDICT: "batch", Phase.SCORE: "batch",
          Phase.EMBED: "batch",
          Phase.NEIGHBORS: "point", Phase.LAYOUT: "epoch"}


@dataclass(frozen=True)
class Event:
    """One report of progress. `values` holds what the phase measures (the
    losses of the last step, an accuracy) and tags a caller adds (which
    seed, sampler and round of a simulation)."""

    phase: Phase
    done: int = 0
    total: int | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    per_s: float | None = None  # items (images, points) per second
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def with_values(self, **values: Any) -> "Event":
        return replace(self, values={**self.values, **values})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for the store and progress files."""
        out: dict[str, Any] = {"phase": self.phase.value, "done": self.done, "total": self.total}
        for key in ("elapsed_s", "eta_s", "per_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.values:
            out["values"] = dict(self.values)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Event":
        return cls(Phase(data["phase"]), int(data.get("done") or 0), data.get("total"), data.get("elapsed_s"),
                   data.get("eta_s"), data.get("per_s"), dict(data.get("values") or {}))

    def describe(self, sentence: bool = False) -> str:
        """'training the task model: step 120 of 600, about 14 s left'
        ('Training ...' with sentence=True)."""
        text = self.phase.label
        if self.total:
            text += f": {self.phase.unit} {self.done:,} of {self.total:,}"
        if self.eta_s is not None and not self.finished:
            text += f", about {self.eta_s:.0f} s left"
        return text[:1].upper() + text[1:] if sentence else text


Progress = Callable[[Event], None]


def phase_label(value: str | None, sentence: bool = False) -> str:
    """The label of a stored phase value ('task' -> 'training the task
    model'); a value from another version is shown as it is."""
    try:
        text = Phase(value).label
    except ValueError:
        text = str(value)
    return text[:1].upper() + text[1:] if sentence else text


class Throttle:
    """Lets a call through at most once per `interval_s`; `ready(force=True)`
    always passes (and restarts the interval)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._last = float("-inf")

    def ready(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self._last = now
            return True
        return False


class Steps:
    """Counts the steps of one phase and reports them with elapsed time, ETA
    and rate: `steps(done, **values)`. The first and the last step always go
    through, others at most one per `interval_s`."""

    def __init__(self, progress: Progress | None, phase: Phase, total: int, items_per_step: int = 1,
                 interval_s: float = 0.1):
        self.progress, self.phase, self.total = progress, phase, int(total)
        self.items_per_step = items_per_step
        self.start = time.perf_counter()
        self._throttle = Throttle(interval_s)

    def __call__(self, done: int, **values: Any) -> None:
        if self.progress is None or not self._throttle.ready(force=done in (0, self.total)):
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 and done else 0.0
        self.progress(Event(
            self.phase, int(done), self.total, round(elapsed, 2),
            round((self.total - done) / rate, 1) if rate else None,
            round(rate * self.items_per_step, 1) if rate else None,
            {k: _plain(v) for k, v in values.items()}))


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars as Python floats, rounded for the store."""
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    try:
        return round(float(value), 5)
    except (TypeError, ValueError):
        return value


def announce(progress: Progress | None, phase: Phase, **values: Any) -> None:
    """A phase that has begun, before its first counted step (or a phase
    with no steps to count)."""
    if progress is not None:
        progress(Event(phase, values={k: _plain(v) for k, v in values.items()}))


_LOSSES = {"vae_loss": "vae", "disc_loss": "disc", "task_loss": "loss", "rank_loss": "rank"}


def losses_text(event: Event) -> str:
    """The losses of a training step, 'vae 0.1234  disc 1.3862' ('' for none)."""
    return "  ".join(f"{short} {event.values[key]:.4f}" for key, short in _LOSSES.items() if key in event.values)


def describe_with_losses(event: Event) -> str:
    """A round's progress line: the phase, and the losses of its last step."""
    losses = losses_text(event)
    return event.describe() + (f"  {losses}" if losses else "")


def stderr_printer(quiet: bool = False, describe: Callable[[Event], str] = Event.describe) -> Progress:
    """Progress lines on stderr (so stdout stays parseable): every phase's
    start and end, and in between at most one line a second."""
    throttle, phase = Throttle(1.0), [None]

    def show(event: Event) -> None:
        new = event.phase != phase[0]
        phase[0] = event.phase
        if quiet or not throttle.ready(force=new or event.finished):
            return
        print(describe(event), file=sys.stderr, flush=True)
    return show
