"""The project store: one SQLite file, `PROJECT/project.db`, in WAL mode.

Everything a user makes (classes, labels, rounds, queues) lives here and is
written in one transaction per action, so a crash, a refresh or a second
process never loses or half-writes it. Readers in other processes (the app
while a worker trains) see the last committed state.

Items are identified by stable integer ids; `cache_index` is their row in the
decoded image cache (see `ingest`). Current labels are kept denormalised on
`items.label_class_id` for fast queries and always written in the same
transaction as the history row in `labels` that explains them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from vaal_core.errors import (
    BadInput,
    ProjectExists,
    ProjectNotFound,
    SchemaTooNew,
    UnknownClass,
    UnknownItem,
    WorkerBusy,
)

DB_NAME = "project.db"

# Each entry upgrades the schema from version (n - 1) to n; never edit an
# entry once released, add the next one.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the image root, '/' separated
        size_bytes INTEGER NOT NULL,
        sha1 TEXT NOT NULL UNIQUE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        cache_index INTEGER NOT NULL UNIQUE,
        gold TEXT,                          -- hidden oracle label (evaluation only)
        status TEXT NOT NULL DEFAULT 'ok',  -- 'ok' | 'missing'
        label_class_id INTEGER REFERENCES classes(id),
        added_at TEXT NOT NULL
    );
    CREATE INDEX items_label ON items(label_class_id);
    CREATE TABLE labels (                   -- append-only history
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id),
        class_id INTEGER REFERENCES classes(id),   -- NULL: label cleared
        previous_class_id INTEGER REFERENCES classes(id),
        author TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        undone_at TEXT
    );
    CREATE INDEX labels_item ON labels(item_id);
    CREATE TABLE skipped (
        path TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        sampler TEXT NOT NULL,
        budget INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,               -- running | done | failed | cancelled
        settings TEXT NOT NULL,
        n_labeled INTEGER,
        n_pool INTEGER,
        progress TEXT,
        timings TEXT,
        metrics TEXT,
        error TEXT,
        pid INTEGER,
        created_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE scores (
        round_id INTEGER NOT NULL REFERENCES rounds(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        score REAL NOT NULL,
        rank INTEGER,                       -- 1..budget for the queue, NULL otherwise
        PRIMARY KEY (round_id, item_id)
    );
    CREATE INDEX scores_rank ON scores(round_id, rank);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    """,
    # 2: the app. An action groups the label rows one user gesture wrote (a
    # keypress, a grid batch, a lasso selection) so undo reverts the gesture
    # whole; skips are actions too, so undo brings a skipped image back.
    # Existing label rows become one action each, with the same ids.
    2: """
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                 -- 'label' | 'skip'
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        undone_at TEXT
    );
    INSERT INTO actions(id, kind, author, created_at, undone_at)
        SELECT id, 'label', author, created_at, undone_at FROM labels;
    ALTER TABLE labels ADD COLUMN action_id INTEGER REFERENCES actions(id);
    UPDATE labels SET action_id = id;
    CREATE INDEX labels_action ON labels(action_id);
    CREATE TABLE skips (                    -- 'not now': to the back of this round's order
        action_id INTEGER NOT NULL REFERENCES actions(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        round_id INTEGER                    -- the queue it was skipped in (NULL: before any round)
    );
    CREATE INDEX skips_item ON skips(item_id);
    CREATE TABLE priorities (               -- pushed to the front of the queue by the user
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        position INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    ALTER TABLE rounds ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the task model. Its top class and confidence for each item a round
    # scored, stored beside the score so the suggestion and the queue it
    # belongs to are swapped in by the same transaction.
    3: """
    ALTER TABLE scores ADD COLUMN suggestion_class_id INTEGER;
    ALTER TABLE scores ADD COLUMN confidence REAL;
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


class Suggestion(NamedTuple):
    """The task model's guess for one item: its top class and softmax
    probability, from the round that made the current queue."""

    label: str
    confidence: float
    round_id: int


@dataclass(frozen=True)
class Item:
    id: int
    path: str
    cache_index: int
    gold: str | None
    label: str | None
    width: int
    height: int


class Project:
    """A handle on one project folder. Safe to share between threads of one
    process (Streamlit) and to open from several processes at once."""

    def __init__(self, root: str | os.PathLike, _create: bool = False):
        self.root = Path(root)
        db_path = self.root / DB_NAME
        if not _create and not db_path.is_file():
            raise ProjectNotFound(
                f"no project at {self.root} (missing {DB_NAME}); "
                f"create it with: python -m vaal_core init {self.root} --images DIR")
        self._lock = threading.RLock()
        self._depth = 0
        self.db = sqlite3.connect(db_path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    # -- opening ------------------------------------------------------------

    @classmethod
    def create(cls, root: str | os.PathLike, image_root: str | os.PathLike,
               image_size: int = 32, classes: Sequence[str] = ()) -> "Project":
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ProjectExists(f"a project already exists at {root}")
        root.mkdir(parents=True, exist_ok=True)
        project = cls(root, _create=True)
        with project.atomic():
            project._set_meta("image_root", str(Path(image_root).resolve()))
            project._set_meta("image_size", str(int(image_size)))
            project._set_meta("created_at", now())
            project.add_classes(classes)
            project.log_event("create", {"image_root": str(image_root), "image_size": image_size})
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        return cls(root)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{self.root / DB_NAME} has schema version {version}, newer than this "
                f"VAAL Studio understands ({SCHEMA_VERSION}); upgrade VAAL Studio")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.atomic():
                # executescript() would COMMIT on its own; run the
                # statements one by one inside our transaction instead.
                for statement in _split_sql(MIGRATIONS[target]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested calls join the outer one). BEGIN
        IMMEDIATE takes the write lock up front so two writers queue on
        busy_timeout instead of failing half-way."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._depth = 0

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self.db.execute(sql, params).fetchone()

    # -- meta ---------------------------------------------------------------

    def _set_meta(self, key: str, value: str) -> None:
        with self.atomic():
            self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def settings(self) -> dict[str, Any]:
        """The user's saved choices for this project (sampler, budget, ...)."""
        return _loads(self.meta("settings")) or {}

    def save_settings(self, **values: Any) -> dict[str, Any]:
        with self.atomic():
            merged = {**self.settings(), **values}
            self._set_meta("settings", json.dumps(merged))
        return merged

    @property
    def image_root(self) -> Path:
        return Path(self.meta("image_root"))

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
        with self.atomic():
            self.db.execute("INSERT INTO events(at, kind, payload) VALUES (?, ?, ?)",
                            (now(), kind, json.dumps(payload)))

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        return [{"id": r["id"], "at": r["at"], "kind": r["kind"], "payload": _loads(r["payload"])}
                for r in self._rows(sql, (kind,) if kind else ())]

    # -- classes ------------------------------------------------------------

    def classes(self) -> list[str]:
        return [r["name"] for r in self._rows("SELECT name FROM classes ORDER BY position, id")]

    def add_classes(self, names: Iterable[str]) -> list[str]:
        """Append the names not present yet, in the given order; returns the
        names added."""
        added = []
        with self.atomic():
            existing = set(self.classes())
            for name in names:
                name = _check_class_name(name)
                if name in existing:
                    continue
                pos = self.db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM classes").fetchone()[0]
                self.db.execute("INSERT INTO classes(name, position) VALUES (?, ?)", (name, pos))
                existing.add(name)
                added.append(name)
        return added

    def rename_class(self, old: str, new: str) -> None:
        """Renaming keeps every label: labels point at the class id."""
        new = _check_class_name(new)
        with self.atomic():
            class_id = self._class_id(old)
            if new != old and new in self.classes():
                raise BadInput(f"class {new!r} exists already; pick another name")
            self.db.execute("UPDATE classes SET name = ? WHERE id = ?", (new, class_id))

    def reorder_classes(self, names: Sequence[str]) -> None:
        """Set the order (number keys 1-9 follow it); `names` must be a
        permutation of the current classes."""
        if sorted(names) != sorted(self.classes()):
            raise BadInput(f"new order {list(names)} must list exactly the classes {self.classes()}")
        with self.atomic():
            for pos, name in enumerate(names):
                self.db.execute("UPDATE classes SET position = ? WHERE name = ?", (pos, name))

    def remove_class(self, name: str) -> None:
        with self.atomic():
            class_id = self._class_id(name)
            used = self.db.execute("SELECT COUNT(*) FROM labels WHERE class_id = ? OR previous_class_id = ?",
                                   (class_id, class_id)).fetchone()[0]
            if used:
                raise BadInput(f"class {name!r} has labels in its history; rename it instead of removing it")
            # a later class could reuse the id: no suggestion may point at it
            self.db.execute("UPDATE scores SET suggestion_class_id = NULL, confidence = NULL "
                            "WHERE suggestion_class_id = ?", (class_id,))
            self.db.execute("DELETE FROM classes WHERE id = ?", (class_id,))

    def _class_id(self, name: str) -> int:
        row = self._one("SELECT id FROM classes WHERE name = ?", (name,))
        if row is None:
            raise UnknownClass(f"unknown class {name!r}; the project's classes are: "
                               f"{', '.join(self.classes()) or '(none yet: add some with --classes)'}")
        return row["id"]

    # -- items --------------------------------------------------------------

    def add_items(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ingested items: dicts with path, size_bytes, sha1, width,
        height, cache_index and optionally gold."""
        stamp = now()
        with self.atomic():
            self.db.executemany(
                "INSERT INTO items(path, size_bytes, sha1, width, height, cache_index, gold, added_at) "
                "VALUES (:path, :size_bytes, :sha1, :width, :height, :cache_index, :gold, :added_at)",
                [{"gold": None, **r, "added_at": stamp} for r in rows])

    def known_files(self) -> tuple[dict[str, int], dict[str, str]]:
        """({path: item id}, {sha1: path}) of every item, for incremental ingest."""
        rows = self._rows("SELECT id, path, sha1 FROM items")
        return {r["path"]: r["id"] for r in rows}, {r["sha1"]: r["path"] for r in rows}

    def cache_rows(self) -> int:
        """Rows of the image cache that items point at (the cache may hold a
        partly written tail after a crash; it is cut back to this)."""
        row = self._one("SELECT COALESCE(MAX(cache_index), -1) + 1 AS n FROM items")
        return row["n"]

    def set_missing(self, present_paths: set[str]) -> int:
        """Mark items whose file has gone as 'missing' (their labels are kept)
        and bring back ones that reappeared; returns the number missing."""
        with self.atomic():
            for r in self.db.execute("SELECT id, path, status FROM items").fetchall():
                status = "ok" if r["path"] in present_paths else "missing"
                if status != r["status"]:
                    self.db.execute("UPDATE items SET status = ? WHERE id = ?", (status, r["id"]))
            return self.db.execute("SELECT COUNT(*) FROM items WHERE status = 'missing'").fetchone()[0]

    def items(self, ids: Sequence[int] | None = None, status: str | None = "ok") -> list[Item]:
        sql = ("SELECT i.id, i.path, i.cache_index, i.gold, c.name AS label, i.width, i.height "
               "FROM items i LEFT JOIN classes c ON c.id = i.label_class_id")
        where, params = [], []
        if status:
            where.append("i.status = ?")
            params.append(status)
        rows = self._rows(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY i.id", params)
        found = [Item(**dict(r)) for r in rows]
        if ids is None:
            return found
        by_id = {it.id: it for it in found}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UnknownItem(f"no item with id {missing[0]} in {self.root}")
        return [by_id[i] for i in ids]

    def item_count(self) -> tuple[int, int]:
        """(present items, highest item id): changes whenever items come or
        go, at the cost of one indexed query (the Label page asks per key)."""
        row = self._one("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM items WHERE status = 'ok'")
        return int(row[0]), int(row[1])

    def paths(self) -> dict[int, str]:
        """{item id: relative path} of the present items, without building Items."""
        return {r[0]: r[1] for r in self._rows("SELECT id, path FROM items WHERE status = 'ok'")}

    def label_version(self) -> tuple[int, int]:
        """Changes with every label, skip or undo (for caches keyed on labels)."""
        row = self._one("SELECT COALESCE(MAX(id), 0), COUNT(undone_at) FROM actions")
        return int(row[0]), int(row[1])

    def item(self, item_id: int) -> Item:
        """One item by id (a single-row query: the Label page calls it per keypress)."""
        row = self._one("SELECT i.id, i.path, i.cache_index, i.gold, c.name AS label, i.width, i.height "
                        "FROM items i LEFT JOIN classes c ON c.id = i.label_class_id WHERE i.id = ?", (item_id,))
        if row is None:
            raise UnknownItem(f"no item with id {item_id} in {self.root}")
        return Item(**dict(row))

    def item_id(self, path: str) -> int:
        row = self._one("SELECT id FROM items WHERE path = ?", (path,))
        if row is None:
            raise UnknownItem(f"{path!r} is not an item of this project (paths are relative to {self.image_root})")
        return row["id"]

    def set_skipped(self, skipped: Sequence[tuple[str, str]]) -> None:
        """Replace the list of skipped files with the latest scan's."""
        stamp = now()
        with self.atomic():
            self.db.execute("DELETE FROM skipped")
            self.db.executemany("INSERT OR REPLACE INTO skipped(path, reason, seen_at) VALUES (?, ?, ?)",
                                [(p, r, stamp) for p, r in skipped])

    def skipped(self) -> list[dict[str, str]]:
        return [dict(r) for r in self._rows("SELECT path, reason FROM skipped ORDER BY path")]

    # -- labels -------------------------------------------------------------

    def _new_action(self, kind: str, author: str) -> int:
        return self.db.execute("INSERT INTO actions(kind, author, created_at) VALUES (?, ?, ?)",
                               (kind, author, now())).lastrowid

    def _write_label(self, action_id: int, item_id: int, class_id: int | None, previous: int | None,
                     author: str, source: str) -> int:
        cur = self.db.execute(
            "INSERT INTO labels(item_id, class_id, previous_class_id, author, source, created_at, action_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (item_id, class_id, previous, author, source, now(), action_id))
        self.db.execute("UPDATE items SET label_class_id = ? WHERE id = ?", (class_id, item_id))
        return cur.lastrowid

    def set_label(self, item_id: int, label: str | None, author: str = "user",
                  source: str = "ui") -> int:
        """Give (or with None, clear) an item's label; one transaction, history
        kept, one undoable action. Returns the history row's id."""
        with self.atomic():
            class_id = None if label is None else self._class_id(label)
            row = self.db.execute("SELECT label_class_id FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                raise UnknownItem(f"no item with id {item_id} in {self.root}")
            action = self._new_action("label", author)
            return self._write_label(action, item_id, class_id, row["label_class_id"], author, source)

    def set_labels(self, pairs: Sequence[tuple[int, str]], author: str = "user",
                   source: str = "import") -> int:
        """Many labels in one transaction and one undoable action: all are
        checked first, so one bad class or item leaves the project unchanged.
        Returns how many changed."""
        with self.atomic():
            current = {r["id"]: r["label_class_id"] for r in self._rows("SELECT id, label_class_id FROM items")}
            wanted = []
            for item_id, label in pairs:
                class_id = self._class_id(label)
                if item_id not in current:
                    raise UnknownItem(f"no item with id {item_id} in {self.root}")
                wanted.append((item_id, class_id))
            action = None
            changed = 0
            for item_id, class_id in wanted:
                if current[item_id] != class_id:
                    action = action or self._new_action("label", author)
                    self._write_label(action, item_id, class_id, current[item_id], author, source)
                    current[item_id] = class_id
                    changed += 1
            return changed

    def skip(self, item_ids: int | Sequence[int], author: str = "user") -> None:
        """'Not now' for one item or a grid page: they come after every other
        unlabeled item of the current round's order (one undoable action; a
        new round forgets it)."""
        ids = [item_ids] if isinstance(item_ids, int) else list(item_ids)
        with self.atomic():
            for item_id in ids:
                if self.db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
                    raise UnknownItem(f"no item with id {item_id} in {self.root}")
            action = self._new_action("skip", author)
            round_id = self.current_round_id()
            self.db.executemany("INSERT INTO skips(action_id, item_id, round_id) VALUES (?, ?, ?)",
                                [(action, i, round_id) for i in ids])

    def skipped_ids(self) -> set[int]:
        """Items skipped (and not undone) in the current round's queue."""
        rows = self._rows("SELECT s.item_id FROM skips s JOIN actions a ON a.id = s.action_id "
                          "WHERE a.undone_at IS NULL AND s.round_id IS ?", (self.current_round_id(),))
        return {r[0] for r in rows}

    def undo(self) -> dict[str, Any] | None:
        """Undo the latest action not undone yet: a label gesture (every item
        it touched gets back its previous label) or a skip. Returns
        {action, item_id, path, restored, items} (item_id/path/restored of
        the gesture's first item) or None when there is nothing to undo."""
        with self.atomic():
            act = self.db.execute("SELECT id, kind FROM actions WHERE undone_at IS NULL "
                                  "ORDER BY id DESC LIMIT 1").fetchone()
            if act is None:
                return None
            stamp = now()
            self.db.execute("UPDATE actions SET undone_at = ? WHERE id = ?", (stamp, act["id"]))
            if act["kind"] == "skip":
                rows = self.db.execute("SELECT s.item_id, i.path, c.name AS restored FROM skips s "
                                       "JOIN items i ON i.id = s.item_id "
                                       "LEFT JOIN classes c ON c.id = i.label_class_id "
                                       "WHERE s.action_id = ?", (act["id"],)).fetchall()
            else:
                rows = self.db.execute("SELECT l.id, l.item_id, l.previous_class_id, i.path FROM labels l "
                                       "JOIN items i ON i.id = l.item_id WHERE l.action_id = ? "
                                       "ORDER BY l.id DESC", (act["id"],)).fetchall()
                self.db.execute("UPDATE labels SET undone_at = ? WHERE action_id = ?", (stamp, act["id"]))
                for r in rows:  # newest first, so an item touched twice ends at its oldest state
                    self.db.execute("UPDATE items SET label_class_id = ? WHERE id = ?",
                                    (r["previous_class_id"], r["item_id"]))
                names = {r["id"]: r["name"] for r in self.db.execute("SELECT id, name FROM classes")}
                rows = [{"item_id": r["item_id"], "path": r["path"], "restored": names.get(r["previous_class_id"])}
                        for r in reversed(rows)]
            items = [dict(r) for r in rows]
            first = items[0] if items else {"item_id": None, "path": None, "restored": None}
            return {"action": act["kind"], **first, "items": items}

    def label_history(self, item_id: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT c.name AS label, p.name AS previous, l.author, l.source, l.created_at, l.undone_at "
            "FROM labels l LEFT JOIN classes c ON c.id = l.class_id "
            "LEFT JOIN classes p ON p.id = l.previous_class_id WHERE l.item_id = ? ORDER BY l.id", (item_id,))
        return [dict(r) for r in rows]

    def labels(self) -> dict[int, str]:
        """{item id: class name} of every labeled item that is present."""
        rows = self._rows("SELECT i.id, c.name FROM items i JOIN classes c ON c.id = i.label_class_id "
                          "WHERE i.status = 'ok'")
        return {r[0]: r[1] for r in rows}

    # -- rounds and the queue -----------------------------------------------

    @contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held by the one process training this project. An OS file lock, so
        a crashed worker can never leave the project locked."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "train.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                running = self._one("SELECT id, pid FROM rounds WHERE status = 'running' ORDER BY id DESC")
                who = f" (round {running['id']}, process {running['pid']})" if running else ""
                raise WorkerBusy(f"project {self.root} is already being trained{who}; "
                                 "wait for that round to finish or cancel it") from None
            try:
                self._fail_interrupted_rounds()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_training(self) -> bool:
        return is_locked(self.root / "train.lock")

    def _fail_interrupted_rounds(self) -> None:
        # Called with the training lock held: any 'running' round is an orphan.
        with self.atomic():
            self.db.execute("UPDATE rounds SET status = 'failed', finished_at = ?, "
                            "error = 'interrupted: the training process ended before the round finished' "
                            "WHERE status = 'running'", (now(),))

    def start_round(self, sampler: str, budget: int, seed: int, settings: dict[str, Any]) -> int:
        with self.atomic():
            cur = self.db.execute(
                "INSERT INTO rounds(sampler, budget, seed, status, settings, pid, created_at) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (sampler, budget, seed, json.dumps(settings), os.getpid(), now()))
            return cur.lastrowid

    def set_progress(self, round_id: int, progress: dict[str, Any]) -> None:
        with self.atomic():
            self.db.execute("UPDATE rounds SET progress = ? WHERE id = ?", (json.dumps(progress), round_id))

    def finish_round(self, round_id: int, item_ids: Sequence[int], scores: Sequence[float],
                     ranks: Sequence[int | None], n_labeled: int, timings: dict[str, float],
                     metrics: dict[str, Any],
                     suggestions: Sequence[tuple[str, float] | None] | None = None) -> None:
        """Write the round's scores (and the task model's suggestions, aligned
        with `item_ids`, when it trained one) and mark it done in one
        transaction: the new queue replaces the old one atomically."""
        with self.atomic():
            class_ids = {r["name"]: r["id"] for r in self._rows("SELECT id, name FROM classes")}
            guesses = suggestions if suggestions is not None else [None] * len(item_ids)
            if len(guesses) != len(item_ids):
                raise ValueError(f"{len(guesses)} suggestions for {len(item_ids)} items")
            self.db.executemany(
                "INSERT INTO scores(round_id, item_id, score, rank, suggestion_class_id, confidence) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(round_id, int(i), float(s), None if r is None else int(r),
                  None if g is None else class_ids.get(g[0]), None if g is None else float(g[1]))
                 for i, s, r, g in zip(item_ids, scores, ranks, guesses)])
            self.db.execute(
                "UPDATE rounds SET status = 'done', n_labeled = ?, n_pool = ?, timings = ?, metrics = ?, "
                "finished_at = ? WHERE id = ?",
                (n_labeled, len(item_ids), json.dumps(timings), json.dumps(metrics), now(), round_id))

    def fail_round(self, round_id: int, error: str, status: str = "failed") -> None:
        with self.atomic():
            self.db.execute("UPDATE rounds SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                            (status, error, now(), round_id))

    def rounds(self) -> list[dict[str, Any]]:
        return [_round_dict(r) for r in self._rows("SELECT * FROM rounds ORDER BY id")]

    def round(self, round_id: int) -> dict[str, Any]:
        row = self._one("SELECT * FROM rounds WHERE id = ?", (round_id,))
        if row is None:
            raise BadInput(f"no round {round_id} in {self.root}")
        return _round_dict(row)

    def last_round(self) -> dict[str, Any] | None:
        """The newest round, whatever its status. Pages poll this every
        second or two: it parses one row, not every round's curves."""
        row = self._one("SELECT * FROM rounds ORDER BY id DESC LIMIT 1")
        return None if row is None else _round_dict(row)

    def current_round_id(self) -> int | None:
        """The latest finished round: its scores are the queue."""
        row = self._one("SELECT MAX(id) AS id FROM rounds WHERE status = 'done'")
        return row["id"] if row else None

    def queue(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The current round's picks that are still unlabeled, in rank order."""
        round_id = self.current_round_id()
        if round_id is None:
            return []
        rows = self._rows(
            "SELECT i.id AS item_id, i.path, s.score, s.rank FROM scores s JOIN items i ON i.id = s.item_id "
            "WHERE s.round_id = ? AND s.rank IS NOT NULL AND i.label_class_id IS NULL AND i.status = 'ok' "
            "ORDER BY s.rank LIMIT ?", (round_id, -1 if limit is None else int(limit)))
        return [dict(r) for r in rows]

    def request_cancel(self) -> int:
        """Ask the running round (in whatever process) to stop; it checks this
        flag twice a second. Returns how many running rounds were flagged."""
        with self.atomic():
            return self.db.execute("UPDATE rounds SET cancel_requested = 1 WHERE status = 'running'").rowcount

    def cancel_requested(self, round_id: int) -> bool:
        row = self._one("SELECT cancel_requested FROM rounds WHERE id = ?", (round_id,))
        return bool(row and row[0])

    def round_order(self) -> list[tuple[int, float, int | None]]:
        """(item id, score, rank) of every present item the current round
        scored, labeled or not: its batch by rank, then the rest by score."""
        round_id = self.current_round_id()
        if round_id is None:
            return []
        rows = self._rows(
            "SELECT s.item_id, s.score, s.rank FROM scores s JOIN items i ON i.id = s.item_id "
            "WHERE s.round_id = ? AND i.status = 'ok' "
            "ORDER BY s.rank IS NULL, s.rank, s.score DESC, s.item_id", (round_id,))
        return [(r[0], r[1], r[2]) for r in rows]

    def push_to_front(self, item_ids: Sequence[int]) -> int:
        """Put items at the very front of the labeling order, in the given
        order, ahead of earlier pushes. Returns how many were pushed."""
        ids = list(dict.fromkeys(int(i) for i in item_ids))
        with self.atomic():
            known = {r[0] for r in self.db.execute("SELECT id FROM items")}
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise UnknownItem(f"no item with id {unknown[0]} in {self.root}")
            first = self.db.execute("SELECT COALESCE(MIN(position), 0) FROM priorities").fetchone()[0]
            stamp = now()
            self.db.executemany(
                "INSERT INTO priorities(item_id, position, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(item_id) DO UPDATE SET position = excluded.position, created_at = excluded.created_at",
                [(i, first - len(ids) + k, stamp) for k, i in enumerate(ids)])
        return len(ids)

    def priority_ids(self) -> list[int]:
        """Pushed items still unlabeled, front first."""
        rows = self._rows("SELECT p.item_id FROM priorities p JOIN items i ON i.id = p.item_id "
                          "WHERE i.label_class_id IS NULL AND i.status = 'ok' ORDER BY p.position")
        return [r[0] for r in rows]

    def labeled_ids(self) -> set[int]:
        """Ids of the labeled present items (cheaper than `labels()`)."""
        return {r[0] for r in self._rows("SELECT id FROM items WHERE label_class_id IS NOT NULL "
                                         "AND status = 'ok'")}

    def scores(self, round_id: int) -> dict[int, float]:
        return {r[0]: r[1] for r in self._rows("SELECT item_id, score FROM scores WHERE round_id = ?",
                                               (round_id,))}

    def suggestions(self, item_ids: Sequence[int] | None = None) -> dict[int, Suggestion]:
        """The current round's task-model suggestions by item id (all items
        it scored, or just `item_ids`); empty when that round trained no task
        model. A class removed since has no suggestion."""
        round_id = self.current_round_id()
        if round_id is None:
            return {}
        sql = ("SELECT s.item_id, c.name, s.confidence FROM scores s JOIN classes c ON c.id = s.suggestion_class_id "
               "WHERE s.round_id = ?")
        if item_ids is None:
            rows = self._rows(sql, (round_id,))
        else:
            ids = [int(i) for i in item_ids]
            rows = []
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-variable limit
                chunk = ids[start:start + 500]
                rows += self._rows(sql + f" AND s.item_id IN ({','.join('?' * len(chunk))})", (round_id, *chunk))
        return {r[0]: Suggestion(r[1], r[2], round_id) for r in rows}

    # -- summary ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        n_missing = self._one("SELECT COUNT(*) FROM items WHERE status = 'missing'")[0]
        n_ok = self._one("SELECT COUNT(*) FROM items WHERE status = 'ok'")[0]
        n_labeled = self._one("SELECT COUNT(*) FROM items WHERE status = 'ok' AND label_class_id IS NOT NULL")[0]
        per_class = {name: 0 for name in self.classes()}
        for r in self._rows("SELECT c.name, COUNT(*) FROM items i JOIN classes c ON c.id = i.label_class_id "
                            "WHERE i.status = 'ok' GROUP BY c.name"):
            per_class[r[0]] = r[1]
        last = self.last_round()
        return {
            "project": str(self.root),
            "image_root": str(self.image_root),
            "image_size": self.image_size,
            "items": n_ok,
            "labeled": n_labeled,
            "unlabeled": n_ok - n_labeled,
            "missing": n_missing,
            "skipped": self._one("SELECT COUNT(*) FROM skipped")[0],
            "classes": self.classes(),
            "per_class": per_class,
            "rounds": self._one("SELECT COUNT(*) FROM rounds")[0],
            "current_round": self.current_round_id(),
            "queue": len(self.queue()),
            "training": self.is_training(),
            "last_round": None if last is None else {
                k: last[k] for k in ("id", "sampler", "budget", "status", "error", "progress")},
        }


def _round_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("settings", "progress", "timings", "metrics"):
        d[key] = _loads(d[key])
    return d


def is_locked(path: Path) -> bool:
    """Whether another process holds an flock on `path` (a crashed holder's
    lock is gone with it, so this never reports a stale lock)."""
    if not path.exists():
        return False
    try:
        with open(path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _check_class_name(name: str) -> str:
    clean = str(name).strip()
    if not clean or any(ch in clean for ch in "\n\r\t") or clean in (".", "..") or "/" in clean:
        raise BadInput(f"class name {name!r} is not usable: give a non-empty name without '/', tabs or newlines")
    return clean


def _split_sql(script: str) -> list[str]:
    # The migrations hold no ';' inside comments or strings.
    return [s for s in script.split(";") if s.strip()]
