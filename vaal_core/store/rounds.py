"""Rounds: their lifecycle (running, then done, failed or cancelled), live
progress, the cancel flag, and the lock that lets one process at a time
train a project.

A round's scores (and the task model's suggestions) are written together
with its 'done' mark in one transaction, so a failed, cancelled or crashed
round leaves the previous queue in place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from vaal_core.errors import BadInput, WorkerBusy
from vaal_core.files import LockBusy, file_lock, is_locked
from vaal_core.store.classes import Classes
from vaal_core.store.db import Database, Row
from vaal_core.store.items import now

_JSON_COLUMNS = ("settings", "progress", "timings", "metrics")
ENDED = "the training process ended before the round finished (killed, or the machine stopped)"


def _round_dict(row: Row) -> dict[str, Any]:
    d = dict(row)
    for key in _JSON_COLUMNS:
        d[key] = json.loads(d[key]) if d[key] else None
    return d


CURRENT = "SELECT MAX(id) FROM rounds WHERE status = 'done'"  # the round whose scores are the queue


class Rounds:
    def __init__(self, db: Database, classes: Classes, where: str, lock_path: Path):
        self.db, self.classes, self.where, self.lock_path = db, classes, where, lock_path

    # -- one process trains at a time -----------------------------------------------

    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held by the one process training this project. An OS file lock, so
        a crashed worker can never leave the project locked."""
        with ExitStack() as held:
            try:
                held.enter_context(file_lock(self.lock_path, wait=False))
            except LockBusy:
                running = self.db.one("SELECT id, pid FROM rounds WHERE status = 'running' ORDER BY id DESC")
                who = f" (round {running['id']}, process {running['pid']})" if running else ""
                raise WorkerBusy(f"project {self.where} is already being trained{who}; "
                                 "wait for that round to finish or cancel it") from None
            # With the lock held, a round still 'running' is an orphan.
            self.db.execute("UPDATE rounds SET status = 'failed', finished_at = ?, error = ? WHERE status = 'running'",
                            (now(), f"interrupted: {ENDED}"))
            yield

    def is_training(self) -> bool:
        return is_locked(self.lock_path)

    # -- lifecycle --------------------------------------------------------------------

    def start(self, sampler: str, budget: int, seed: int, settings: dict[str, Any]) -> int:
        return self.db.insert(
            "INSERT INTO rounds(sampler, budget, seed, status, settings, pid, created_at) "
            "VALUES (?, ?, ?, 'running', ?, ?, ?)", (sampler, budget, seed, json.dumps(settings), os.getpid(), now()))

    def set_progress(self, round_id: int, progress: dict[str, Any]) -> None:
        self.db.execute("UPDATE rounds SET progress = ? WHERE id = ?", (json.dumps(progress), round_id))

    def finish(self, round_id: int, item_ids: Sequence[int], scores: Sequence[float], ranks: Sequence[int | None],
               n_labeled: int, timings: dict[str, float], metrics: dict[str, Any],
               suggestions: Sequence[tuple[str, float] | None] | None = None,
               audit: Collection[int] = ()) -> None:
        """Write the round's scores (and the task model's suggestions, aligned
        with `item_ids`, when it trained one) and mark it done in one
        transaction: the new queue replaces the old one atomically. `audit`:
        the ids of the batch's random audit picks (they must have a rank)."""
        guesses = suggestions if suggestions is not None else [None] * len(item_ids)
        if len(guesses) != len(item_ids):
            raise ValueError(f"{len(guesses)} suggestions for {len(item_ids)} items")
        audit = {int(i) for i in audit}
        ranked = {int(i) for i, r in zip(item_ids, ranks) if r is not None}
        if not audit <= ranked:
            raise ValueError(f"audit picks {sorted(audit - ranked)[:5]} are not in the round's batch")
        with self.db.atomic():
            class_ids = self.classes.ids()
            self.db.executemany(
                "INSERT INTO scores(round_id, item_id, score, rank, suggestion_class_id, confidence, audit) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(round_id, int(i), float(s), None if r is None else int(r),
                  None if g is None else class_ids.get(g[0]), None if g is None else float(g[1]),
                  int(int(i) in audit))
                 for i, s, r, g in zip(item_ids, scores, ranks, guesses)])
            self.db.execute(
                "UPDATE rounds SET status = 'done', n_labeled = ?, n_pool = ?, timings = ?, metrics = ?, "
                "finished_at = ? WHERE id = ?",
                (n_labeled, len(item_ids), json.dumps(timings), json.dumps(metrics), now(), round_id))

    def fail(self, round_id: int, error: str, status: str = "failed") -> None:
        self.db.execute("UPDATE rounds SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                        (status, error, now(), round_id))

    def request_cancel(self) -> int:
        """Ask the running round (in whatever process) to stop; it checks this
        flag twice a second. Returns how many running rounds were flagged."""
        return self.db.execute("UPDATE rounds SET cancel_requested = 1 WHERE status = 'running'")

    def cancel_requested(self, round_id: int) -> bool:
        return bool(self.db.value("SELECT cancel_requested FROM rounds WHERE id = ?", (round_id,)))

    # -- reading ----------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        return [_round_dict(r) for r in self.db.rows("SELECT * FROM rounds ORDER BY id")]

    def get(self, round_id: int) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM rounds WHERE id = ?", (round_id,))
        if row is None:
            raise BadInput(f"no round {round_id} in {self.where}")
        return _round_dict(row)

    def last(self) -> dict[str, Any] | None:
        """The newest round, whatever its status. Pages poll this every
        second or two: it parses one row, not every round's curves."""
        row = self.db.one("SELECT * FROM rounds ORDER BY id DESC LIMIT 1")
        return None if row is None else _round_dict(row)

    def last_seen(self) -> dict[str, Any] | None:
        """The newest round as the CLI and the pages show it: one still
        'running' while no process holds the training lock is 'interrupted'
        (its process was killed; the next round marks it failed)."""
        last = self.last()
        if last is None or last["status"] != "running" or self.is_training():
            return last
        last = self.get(last["id"])  # read again: it may have finished between the two reads
        if last["status"] == "running":
            last.update(status="interrupted", error=f"{ENDED}; the previous queue is kept")
        return last

    def current_id(self) -> int | None:
        """The latest finished round: its scores are the queue."""
        return self.db.value(CURRENT)

    def count(self) -> int:
        return int(self.db.value("SELECT COUNT(*) FROM rounds"))
