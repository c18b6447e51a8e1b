"""Progress for Python callers (vaal_core/api.py): tqdm's bar, a notebook
widget in Jupyter, per phase of a round or over a simulation's rounds; the
CLI's lines on stderr where tqdm is not installed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vaal_core.progress import Event, Progress, losses_text, stderr_printer


def _tqdm():
    """tqdm's notebook bar in Jupyter, its text bar elsewhere; None if it is
    not installed (it comes with umap-learn, not as our own dependency)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


@contextmanager
def phase_bars(show: bool, describe: Callable[[Event], str] = Event.describe) -> Iterator[Progress | None]:
    """A bar per phase of the work (reading the images, training, scoring),
    the losses beside it; lines on stderr without tqdm; nothing with
    show=False."""
    if not show:
        yield None
        return
    tqdm = _tqdm()
    if tqdm is None:
        yield stderr_printer(describe=describe)
        return
    now: dict[str, Any] = {"phase": None, "bar": None}

    def on_event(event: Event) -> None:
        bar = now["bar"]
        if event.phase != now["phase"]:
            if bar is not None:
                bar.close()
            # A phase with nothing to count (selecting the batch) is its name alone, not "0step [00:00]".
            bar = now["bar"] = tqdm(total=event.total, desc=event.phase.label, unit=event.phase.unit,
                                    bar_format=None if event.total else "{desc}")
            now["phase"] = event.phase
        if event.total and bar.total != event.total:
            bar.total, bar.bar_format = event.total, None
        losses = losses_text(event)
        if losses:
            bar.set_postfix_str(losses, refresh=False)
        bar.update(event.done - bar.n)

    try:
        yield on_event
    finally:
        if now["bar"] is not None:
            now["bar"].close()


@contextmanager
def round_bar(show: bool, total: int) -> Iterator[Progress | None]:
    """One bar over a simulation's rounds, the last round's accuracy beside
    it; a line per round on stderr without tqdm (as the CLI)."""
    from vaal_core.loop.simulate import print_round, round_line

    if not show:
        yield None
        return
    tqdm = _tqdm()
    if tqdm is None:
        yield print_round
        return
    bar = tqdm(total=total, desc="simulating", unit="round")

    def on_event(event: Event) -> None:
        if event.values.get("done"):
            line = round_line(event)
            if line:
                bar.set_postfix_str(line, refresh=False)
            bar.update(1)

    try:
        yield on_event
    finally:
        bar.close()
