"""A project: a folder holding `project.db` (the store), the decoded image
cache, checkpoints and per-round files. A team's project keeps its store on
a PostgreSQL server instead: the folder then holds `database.json` (the
server's URL, never a password, and the project's schema there) in place of
`project.db`, and everything else as before, on a path every app server can
read (`store/postgres.py`).

`Project` is the one handle the CLI, the pages and the engine use. It owns
the folder's layout, the project's settings and event log, and `status()`;
everything else it hands to the part of the store that holds it, one
module per concern: `classes`, `items`, `labels` (with undo and "not now"),
`rounds` (lifecycle and the training lock) and `queue` (scores, suggestions,
pushes). Every action is one transaction, so a crash, a refresh or a second
process never loses or half-writes what a user made, and readers in other
processes (the app while a worker trains) see the last committed state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import EllipsisType
from typing import Any, Collection, ContextManager, Iterable, Mapping, Sequence

from vaal_core.errors import ProjectExists
from vaal_core.store.classes import Classes
from vaal_core.store.location import (DATABASE_FILE, DB_NAME, database_url, is_project, open_database,
                                      record_database, store_file)
from vaal_core.store.items import PRESENCE, Item, Items, now
from vaal_core.store.labels import Labels
from vaal_core.store.queue import Queue, Suggestion
from vaal_core.store.rounds import CURRENT, Rounds
from vaal_core.store.team import LEASE_S, REVIEW, Team
from vaal_core.store.schema import MIGRATIONS

TRAIN_LOCK = "train.lock"

__all__ = ["DATABASE_FILE", "DB_NAME", "Item", "Project", "Suggestion", "is_project", "now", "store_file"]


class Project:
    """A handle on one project folder. Safe to share between threads of one
    process (Streamlit) and to open from several processes at once."""

    def __init__(self, root: str | os.PathLike, _create: bool = False, _url: str | None = None):
        self.root = Path(root)
        self.db = open_database(self.root, _create, _url)
        self.db.migrate(MIGRATIONS)
        if not _create and self.db.value("SELECT value FROM meta WHERE key = ?", ("image_root",)) is None:
            self.db.close()  # a schema but no settings: not a project create() finished
            raise self.db.corrupt_error()
        where = str(self.root)
        self._classes = Classes(self.db)
        self._items = Items(self.db, where)
        self._rounds = Rounds(self.db, self._classes, where, self.root / TRAIN_LOCK)
        self._queue = Queue(self.db, where, self._rounds.current_id)
        self._labels = Labels(self.db, self._classes, where, self._rounds.current_id)
        self._team = Team(self.db, self.meta, self._set_meta)

    @classmethod
    def create(cls, root: str | os.PathLike, image_root: str | os.PathLike, image_size: int = 32,
               classes: Sequence[str] = (), database: str | None = None) -> "Project":
        """A new project at `root`; its store on the PostgreSQL server at
        `database` (a URL without password; default $VAAL_DATABASE_URL),
        else in the folder's own SQLite file."""
        root = Path(root)
        if (root / DB_NAME).exists() or (root / DATABASE_FILE).exists():
            raise ProjectExists(f"a project already exists at {root}")
        url = database_url(database)
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root, _create=True, _url=url)
        try:
            with project.db.atomic():
                project._set_meta("image_root", str(Path(image_root).resolve()))
                project._set_meta("image_size", str(int(image_size)))
                project._set_meta("created_at", now())
                project.add_classes(classes)
                project.log_event("create", {"image_root": str(image_root), "image_size": image_size})
            if url is not None:  # written last: the folder names a schema only once it is whole
                record_database(root, url, project.db.schema)
        except BaseException:
            if url is not None:
                project.db.drop()
            project.close()
            raise
        return project

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.db.kind

    def store_key(self) -> str:
        """Names this project's store, to tell a project made again at the
        same path from the old one (views key their caches by it)."""
        f = store_file(self.root)
        return f"{f}|{f.stat().st_ino}|{getattr(self.db, 'schema', '')}"

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        return cls(root)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def atomic(self) -> ContextManager[None]:
        """One transaction around several calls (nested ones join it)."""
        return self.db.atomic()

    # -- settings and the folder's layout ---------------------------------------------

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def meta(self, key: str, default: str | None = None) -> str | None:
        value = self.db.value("SELECT value FROM meta WHERE key = ?", (key,))
        return default if value is None else value

    def settings(self) -> dict[str, Any]:
        """The user's saved choices for this project (sampler, budget, ...)."""
        return json.loads(self.meta("settings") or "{}")

    def save_settings(self, **values: Any) -> dict[str, Any]:
        with self.db.atomic():
            merged = {**self.settings(), **values}
            self._set_meta("settings", json.dumps(merged))
        return merged

    @property
    def image_root(self) -> Path:
        return Path(self.meta("image_root"))

    def move_image_root(self, new_root: Path, check: Mapping[str, Any]) -> None:
        """Read the images from `new_root` from now on (the folder moved;
        data/relocate.py checked it first), recorded with that check's
        counts, in one transaction."""
        with self.db.atomic():
            old = self.meta("image_root")
            self._set_meta("image_root", str(new_root))
            self.log_event("moved", {"from": old, "to": str(new_root), **check})

    @property
    def image_size(self) -> int:
        return int(self.meta("image_size"))

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    def round_dir(self, round_id: int) -> Path:
        return self.root / "rounds" / str(round_id)

    def log_event(self, kind: str, payload: dict[str, Any]) -> None:
        self.db.insert("INSERT INTO events(at, kind, payload) VALUES (?, ?, ?)", (now(), kind, json.dumps(payload)))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        return [{"id": r["id"], "at": r["at"], "kind": r["kind"], "payload": json.loads(r["payload"])}
                for r in self.db.rows(sql, (kind,) if kind else ())]

    # -- classes (store/classes.py) -------------------------------------------------------

    def classes(self) -> list[str]:
        return self._classes.names()

    def add_classes(self, names: Iterable[str]) -> list[str]:
        return self._classes.add(names)

    def rename_class(self, old: str, new: str) -> None:
        self._classes.rename(old, new)

    def reorder_classes(self, names: Sequence[str]) -> None:
        self._classes.reorder(names)

    def remove_class(self, name: str) -> None:
        self._classes.remove(name)

    # -- items and ingest bookkeeping (store/items.py) ----------------------------------------

    def items(self, ids: Sequence[int] | None = None, status: str | None = "ok") -> list[Item]:
        return self._items.list(ids, status)

    def item(self, item_id: int) -> Item:
        return self._items.get(item_id)

    def item_ids(self) -> list[int]:
        return self._items.ids()

    def item_id(self, path: str) -> int:
        return self._items.id_of(path, str(self.image_root))

    def paths(self) -> dict[int, str]:
        return self._items.paths()

    def item_count(self) -> tuple[int, int]:
        return self._items.count()

    def add_items(self, rows: Sequence[dict[str, Any]]) -> None:
        self._items.add(rows)

    def known_files(self) -> tuple[dict[str, int], dict[str, str]]:
        return self._items.known_files()

    def fingerprints(self) -> list[tuple[str, int, str]]:
        return self._items.fingerprints()

    def cache_rows(self) -> int:
        return self._items.cache_rows()

    def rename_items(self, moves: Mapping[str, str]) -> None:
        self._items.rename(moves)

    def set_missing(self, present_paths: set[str]) -> int:
        return self._items.set_missing(present_paths)

    def set_skipped_files(self, skipped: Sequence[tuple[str, str]]) -> None:
        self._items.set_skipped_files(skipped)

    def skipped_files(self) -> list[dict[str, str]]:
        return self._items.skipped_files()

    # -- labels, undo and "not now" (store/labels.py) ----------------------------------------

    def set_label(self, item_id: int, label: str | None, author: str = "user", source: str = "ui",
                  token: str | None = None, seen: Mapping[int, str | None] | None = None) -> int | None:
        return self._labels.set(item_id, label, author, source, token, seen)

    def set_labels(self, pairs: Sequence[tuple[int, str]], author: str = "user", source: str = "import",
                   token: str | None = None, seen: Mapping[int, str | None] | None = None) -> int | None:
        return self._labels.set_many(pairs, author, source, token, seen)

    def postpone(self, item_ids: int | Sequence[int], author: str = "user", token: str | None = None) -> None:
        self._labels.postpone(item_ids, author, token)

    def postponed_ids(self, round_id: int | None | EllipsisType = ...) -> set[int]:
        return self._labels.postponed_ids(round_id)

    def undo(self, only: int | None = None, author: str | None = None) -> dict[str, Any] | None:
        return self._labels.undo(only, author)

    def latest_action(self, author: str | None = None) -> int | None:
        return self._labels.latest_action(author)

    def label_history(self, item_id: int) -> list[dict[str, Any]]:
        return self._labels.history(item_id)

    def labels(self) -> dict[int, str]:
        return self._labels.current()

    def labels_of(self, item_ids: Sequence[int]) -> dict[int, str | None]:
        return self._labels.of(item_ids)

    def label_rows(self) -> list[dict[str, Any]]:
        return self._labels.current_rows()

    def labeled_ids(self) -> set[int]:
        return self._labels.labeled_ids()

    def first_labeled_at(self) -> dict[int, str]:
        return self._labels.first_labeled_at()

    def label_version(self) -> tuple[int, int]:
        return self._labels.version()

    def training_labels(self) -> dict[int, str]:
        """`labels()` less the doubled images whose annotators disagree and
        no reviewer has resolved (store/team.py): what a round learns from."""
        conflicts = {c["item_id"] for c in self._team.conflicts()}
        return {i: name for i, name in self.labels().items() if i not in conflicts}

    # -- several annotators (store/team.py) ----------------------------------------------------

    def claim(self, annotator: str, item_ids: Sequence[int], ttl_s: float = LEASE_S,
              labeled_ok: Collection[int] = ()) -> list[int]:
        return self._team.claim(annotator, item_ids, ttl_s, labeled_ok)

    def claim_first(self, annotator: str, item_ids: Sequence[int], ttl_s: float = LEASE_S,
                    labeled_ok: Collection[int] = ()) -> int | None:
        return self._team.claim_first(annotator, item_ids, ttl_s, labeled_ok)

    def held_by_others(self, annotator: str) -> set[int]:
        return self._team.held_by_others(annotator)

    def leases(self) -> list[dict[str, Any]]:
        return self._team.leases()

    def overlap(self) -> float:
        return self._team.overlap()

    def set_overlap(self, fraction: float) -> None:
        with self.db.atomic():
            self._team.set_overlap(fraction)
            self.log_event("overlap", {"fraction": float(fraction)})

    def needs_opinion(self, annotator: str) -> set[int]:
        return self._team.needs_opinion(annotator)

    def conflicts(self) -> list[dict[str, Any]]:
        return self._team.conflicts()

    def agreement(self) -> list[dict[str, Any]]:
        return self._team.agreement()

    def resolve_conflict(self, item_id: int, label: str, reviewer: str) -> int | None:
        """A reviewer's answer to a conflict: an ordinary label (history kept,
        undoable) with source 'review', which training then uses."""
        return self._labels.set(item_id, label, author=reviewer, source=REVIEW)

    def labels_by_annotator(self) -> dict[str, int]:
        return self._team.by_annotator()

    # -- rounds (store/rounds.py) ------------------------------------------------------------

    def training_lock(self):
        return self._rounds.training_lock()

    def is_training(self) -> bool:
        return self._rounds.is_training()

    def start_round(self, sampler: str, budget: int, seed: int, settings: dict[str, Any]) -> int:
        return self._rounds.start(sampler, budget, seed, settings)

    def set_progress(self, round_id: int, progress: dict[str, Any]) -> None:
        self._rounds.set_progress(round_id, progress)

    def finish_round(self, round_id: int, item_ids: Sequence[int], scores: Sequence[float],
                     ranks: Sequence[int | None], n_labeled: int, timings: dict[str, float], metrics: dict[str, Any],
                     suggestions: Sequence[tuple[str, float] | None] | None = None,
                     audit: Sequence[int] = ()) -> None:
        self._rounds.finish(round_id, item_ids, scores, ranks, n_labeled, timings, metrics, suggestions, audit)

    def fail_round(self, round_id: int, error: str, status: str = "failed") -> None:
        self._rounds.fail(round_id, error, status)

    def request_cancel(self) -> int:
        return self._rounds.request_cancel()

    def cancel_requested(self, round_id: int) -> bool:
        return self._rounds.cancel_requested(round_id)

    def rounds(self) -> list[dict[str, Any]]:
        return self._rounds.list()

    def round(self, round_id: int) -> dict[str, Any]:
        return self._rounds.get(round_id)

    def last_round(self) -> dict[str, Any] | None:
        return self._rounds.last()

    def current_round_id(self) -> int | None:
        return self._rounds.current_id()

    # -- the queue (store/queue.py) ------------------------------------------------------------

    def queue(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self._queue.items(limit)

    def round_order(self) -> list[tuple[int, float, int | None]]:
        return self._queue.round_order()

    def round_order_ids(self) -> list[int]:
        return self._queue.round_order_ids()

    def ranked_ids(self) -> list[int]:
        return self._queue.ranked_ids()

    def suggestions(self, item_ids: Sequence[int] | None = None,
                    round_id: int | None | EllipsisType = ...) -> dict[int, Suggestion]:
        return self._queue.suggestions(item_ids, round_id)

    def audit_ids(self) -> set[int]:
        return self._queue.audit_ids()

    def round_batches(self) -> list[dict[str, Any]]:
        return self._queue.batches()

    def push_to_front(self, item_ids: Sequence[int]) -> int:
        return self._queue.push_to_front(item_ids)

    def priority_ids(self) -> list[int]:
        return self._queue.pushed_ids()

    def order_stamp(self) -> tuple:
        """Changes whenever the Label page's order would (services/labeling.py):
        a round finished, items came or went, a push. Cheap (indexed reads
        only): the page asks on every key, each annotator of a team too."""
        row = self.db.one(f"SELECT ({CURRENT}) AS round_id, {PRESENCE}")
        return row["round_id"], row["items_top"], row["items_moved"], tuple(self.priority_ids())

    # -- summary ------------------------------------------------------------------------------

    def status(self, team: bool = True) -> dict[str, Any]:
        """Counts of items, labels and rounds; with `team`, also labels per
        annotator, the overlap and the conflicts to review (a read of every
        label row when an overlap is set: the sidebar, redrawn every few
        seconds, leaves them out)."""
        counts = self._items.counts()
        last = self._rounds.last_seen()  # a killed round shows as 'interrupted', as on the Train page
        return {
            "project": str(self.root),
            "image_root": str(self.image_root),
            "image_size": self.image_size,
            "items": counts["ok"],
            "labeled": counts["labeled"],
            "unlabeled": counts["ok"] - counts["labeled"],
            "missing": counts["missing"],
            "skipped": self._items.skipped_file_count(),  # files the ingest could not use
            "classes": self.classes(),
            "per_class": self._labels.per_class(),
            "backend": self.backend,
            "rounds": self._rounds.count(),
            "current_round": self.current_round_id(),
            "queue": self._queue.length(),
            "training": self.is_training(),
            "last_round": None if last is None else {
                k: last[k] for k in ("id", "sampler", "budget", "status", "error", "progress")},
            **({"by_annotator": self._team.by_annotator(), "overlap": self._team.overlap(),
                "conflicts": len(self._team.conflicts())} if team else {}),
        }
