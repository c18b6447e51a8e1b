"""Labels, with their history and undo, and the user's "not now".

Every user gesture (a keypress, a grid page, a lasso selection, a CSV
import) is one *action*: one transaction that writes a history row per item
it touched, so one undo takes the whole gesture back. The current label is
kept denormalised on `items.label_class_id` for fast queries and is always
written in the same transaction as the history row that explains it.

"Not now" (the Label page's S key) *postpones* items: they go after every
other unlabeled image of the round they were postponed in, and a new round
forgets it. Postponing is an action too, so undo brings an image back. (The
table is called `skips` for history; "skipped files" are something else: the
files ingest could not use, see `items`.)
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import EllipsisType
from typing import Any, Callable, Mapping, Sequence

from vaal_core.errors import LabelConflict, UnknownItem
from vaal_core.store.classes import Classes
from vaal_core.store.db import Database
from vaal_core.store.items import now

# Where a label came from, in words, for the message that refuses a blind overwrite.
SOURCE_WORDS = {"ui": "on the Label page", "suggestion": "on the Label page (an accepted suggestion)",
                "grid": "on the Label page's grid", "explore": "on Explore", "csv": "by an import",
                "import": "by an import", "api": "from Python (vaal_core's API)",
                "notebook": "in a notebook (vc.Labeler or vc.LatentMap)",
                "notebook_suggestion": "in a notebook (vc.Labeler, an accepted suggestion)"}


class Labels:
    def __init__(self, db: Database, classes: Classes, where: str, current_round: Callable[[], int | None]):
        self.db, self.classes, self.where = db, classes, where
        self.current_round = current_round  # the queue a postponement belongs to

    # -- writing -------------------------------------------------------------------

    def _new_action(self, kind: str, author: str, token: str | None = None) -> int:
        return self.db.insert("INSERT INTO actions(kind, author, created_at, token) VALUES (?, ?, ?, ?)",
                              (kind, author, now(), token))

    def _seen_before(self, token: str | None) -> bool:
        """A gesture whose token is already stored was written: a repeat of
        the same press (a retried or replayed message) is a no-op."""
        return token is not None and self.db.one("SELECT 1 FROM actions WHERE token = ?", (token,)) is not None

    def _check_seen(self, current: dict[int, int | None], seen: Mapping[int, str | None],
                    ids: Mapping[str, int]) -> None:
        """Refuses the gesture when any item's label is no longer the one
        the page showed (`seen`: item id -> class name or None), naming who
        changed it and when, so nothing is overwritten in silence (`ids`:
        the classes' {name: id}, read in the same transaction)."""
        changed = [i for i, name in seen.items() if current[int(i)] != (None if name is None else ids.get(name))]
        if not changed:
            return
        rows = self.db.rows_in(
            "SELECT l.item_id, i.path, c.name, l.source, l.created_at, a.token FROM labels l "
            "JOIN items i ON i.id = l.item_id JOIN actions a ON a.id = l.action_id "
            "LEFT JOIN classes c ON c.id = l.class_id "
            "WHERE l.undone_at IS NULL AND l.item_id IN ({ids}) ORDER BY l.id", changed)
        last = {r["item_id"]: r for r in rows}  # the newest row standing per item
        stamp = datetime.now(timezone.utc)
        info = []
        for i in changed:
            r = last.get(int(i))
            if r is None:  # its label was undone since: there is no row to name
                path = self.db.one("SELECT path FROM items WHERE id = ?", (int(i),))["path"]
                info.append((int(i), path, None, 0.0, "undo", None))
                continue
            seconds = max((stamp - datetime.fromisoformat(r["created_at"])).total_seconds(), 0.0)
            info.append((int(i), r["path"], r["name"], seconds, r["source"], r["token"]))
        first = info[0]
        what = (f"labeled '{first[2]}'" if first[2] else "unlabeled") + f" {ago(first[3])} " + \
            SOURCE_WORDS.get(first[4], f"({first[4]})")
        more = f" (and {len(info) - 1} more of these images)" if len(info) > 1 else ""
        raise LabelConflict(f"{first[1]} was {what} after this page showed it{more}: replace it, or keep it?", info)

    def _write(self, action_id: int, item_id: int, class_id: int | None, previous: int | None,
               author: str, source: str) -> int:
        row_id = self.db.insert(
            "INSERT INTO labels(item_id, class_id, previous_class_id, author, source, created_at, action_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", (item_id, class_id, previous, author, source, now(), action_id))
        self.db.execute("UPDATE items SET label_class_id = ? WHERE id = ?", (class_id, item_id))
        return row_id

    def _current(self, item_ids: Sequence[int]) -> dict[int, int | None]:
        """{item id: current class id} of the given items (all must exist)."""
        found = {r["id"]: r["label_class_id"]
                 for r in self.db.rows_in("SELECT id, label_class_id FROM items WHERE id IN ({ids})", item_ids)}
        missing = [i for i in item_ids if i not in found]
        if missing:
            raise UnknownItem(f"no item with id {missing[0]} in {self.where}")
        return found

    def set(self, item_id: int, label: str | None, author: str = "user", source: str = "ui",
            token: str | None = None, seen: Mapping[int, str | None] | None = None) -> int | None:
        """Give (or with None, clear) an item's label; one transaction, history
        kept, one undoable action. Returns the history row's id, or None
        when `token` was written before (the same press again).

        `seen` ({item id: the label the page showed}) makes the write
        conditional: LabelConflict if the label changed since."""
        with self.db.atomic():
            if self._seen_before(token):
                return None
            class_ids = self.classes.ids()  # one read for the class and for `seen`
            class_id = None if label is None else class_ids[label] if label in class_ids else self.classes.id_of(label)
            current = self._current([int(item_id)])
            if seen is not None:
                self._check_seen(current, seen, class_ids)
            action = self._new_action("label", author, token)
            return self._write(action, int(item_id), class_id, current[int(item_id)], author, source)

    def set_many(self, pairs: Sequence[tuple[int, str]], author: str = "user", source: str = "import",
                 token: str | None = None, seen: Mapping[int, str | None] | None = None) -> int | None:
        """Many labels in one transaction and one undoable action: all are
        checked first, so one bad class or item leaves the project unchanged.
        Returns how many changed, or None for a token written before
        (`seen` as for `set`)."""
        with self.db.atomic():
            if self._seen_before(token):
                return None
            class_ids = self.classes.ids()
            wanted = []
            for item_id, label in pairs:
                if label not in class_ids:
                    self.classes.id_of(label)  # raises UnknownClass, listing the classes
                wanted.append((int(item_id), class_ids[label]))
            current = self._current(list(dict.fromkeys(i for i, _ in wanted)))
            if seen is not None:
                self._check_seen(current, seen, class_ids)
            rows = []
            for item_id, class_id in wanted:
                if current[item_id] != class_id:
                    rows.append((item_id, class_id, current[item_id]))
                    current[item_id] = class_id
            if rows:  # written in two batched statements: an import of 40,000 is not 80,000 round trips
                action, stamp = self._new_action("label", author, token), now()
                self.db.executemany(
                    "INSERT INTO labels(item_id, class_id, previous_class_id, author, source, created_at, action_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(i, c, prev, author, source, stamp, action) for i, c, prev in rows])
                self.db.executemany("UPDATE items SET label_class_id = ? WHERE id = ?",
                                    [(c, i) for i, c in dict((i, c) for i, c, _ in rows).items()])
            return len(rows)

    def postpone(self, item_ids: int | Sequence[int], author: str = "user", token: str | None = None) -> None:
        """'Not now' for one item or a grid page (one undoable action; a
        token written before makes it a no-op, as for labels)."""
        ids = [int(item_ids)] if isinstance(item_ids, int) else [int(i) for i in item_ids]
        with self.db.atomic():
            if self._seen_before(token):
                return
            self._current(ids)  # every id must exist
            action = self._new_action("skip", author, token)
            round_id = self.current_round()
            self.db.executemany("INSERT INTO skips(action_id, item_id, round_id) VALUES (?, ?, ?)",
                                [(action, i, round_id) for i in ids])

    def latest_action(self, author: str | None = None) -> int | None:
        """The id of the latest action not undone (what Z would undo); with
        `author`, the latest of theirs (an annotator's Z never undoes a
        teammate's label)."""
        if author is None:
            return self.db.value("SELECT MAX(id) AS id FROM actions WHERE undone_at IS NULL")
        return self.db.value("SELECT MAX(id) AS id FROM actions WHERE undone_at IS NULL AND author = ?", (author,))

    def undo(self, only: int | None = None, author: str | None = None) -> dict[str, Any] | None:
        """Undo the latest action not undone yet: a label gesture (every item
        it touched gets back its previous label) or a postponement. Returns
        {action, item_id, path, restored, items} (item_id/path/restored of
        the gesture's first item) or None when there is nothing to undo.
        `action` is 'label' or 'skip' (a postponement).

        With `only`, undo only if that action is still the latest: the page
        passes the one it showed, so a repeated Z press undoes once. With
        `author`, their latest action."""
        with self.db.atomic():
            mine = "" if author is None else " AND author = ?"
            act = self.db.one(f"SELECT id, kind FROM actions WHERE undone_at IS NULL{mine} ORDER BY id DESC LIMIT 1",
                              () if author is None else (author,))
            if act is None or (only is not None and act["id"] != only):
                return None
            stamp = now()
            self.db.execute("UPDATE actions SET undone_at = ? WHERE id = ?", (stamp, act["id"]))
            if act["kind"] == "skip":
                rows = self.db.rows("SELECT s.item_id, i.path, c.name AS restored FROM skips s "
                                    "JOIN items i ON i.id = s.item_id "
                                    "LEFT JOIN classes c ON c.id = i.label_class_id "
                                    "WHERE s.action_id = ?", (act["id"],))
                items = [{"item_id": r["item_id"], "path": r["path"], "restored": r["restored"]} for r in rows]
            else:
                rows = self.db.rows("SELECT l.item_id, l.previous_class_id, i.path FROM labels l "
                                    "JOIN items i ON i.id = l.item_id WHERE l.action_id = ? "
                                    "ORDER BY l.id DESC", (act["id"],))
                self.db.execute("UPDATE labels SET undone_at = ? WHERE action_id = ?", (stamp, act["id"]))
                for r in rows:  # newest first, so an item touched twice ends at its oldest state
                    self.db.execute("UPDATE items SET label_class_id = ? WHERE id = ?",
                                    (r["previous_class_id"], r["item_id"]))
                names = {class_id: name for name, class_id in self.classes.ids().items()}
                items = [{"item_id": r["item_id"], "path": r["path"], "restored": names.get(r["previous_class_id"])}
                         for r in reversed(rows)]
            first = items[0] if items else {"item_id": None, "path": None, "restored": None}
            return {"action": act["kind"], **first, "items": items}

    # -- reading -------------------------------------------------------------------

    def history(self, item_id: int) -> list[dict[str, Any]]:
        rows = self.db.rows(
            "SELECT c.name AS label, p.name AS previous, l.author, l.source, l.created_at, l.undone_at "
            "FROM labels l LEFT JOIN classes c ON c.id = l.class_id "
            "LEFT JOIN classes p ON p.id = l.previous_class_id WHERE l.item_id = ? ORDER BY l.id", (item_id,))
        return [dict(r) for r in rows]

    def current(self) -> dict[int, str]:
        """{item id: class name} of every labeled item that is present."""
        rows = self.db.rows("SELECT i.id, c.name FROM items i JOIN classes c ON c.id = i.label_class_id "
                            "WHERE i.status = 'ok' ORDER BY i.id")  # one order on both backends: rounds are seeded
        return {r["id"]: r["name"] for r in rows}

    def of(self, item_ids: Sequence[int]) -> dict[int, str | None]:
        """{item id: class name, or None} of the given items, present or missing."""
        rows = self.db.rows_in("SELECT i.id, c.name FROM items i LEFT JOIN classes c ON c.id = i.label_class_id "
                               "WHERE i.id IN ({ids})", item_ids)
        return {r["id"]: r["name"] for r in rows}

    def current_rows(self) -> list[dict[str, Any]]:
        """Every labeled present item with who gave its label, how and when
        (from the newest history row still standing), sorted by path:
        [{item_id, path, label, author, source, created_at}]."""
        rows = self.db.rows(
            "SELECT i.id AS item_id, i.path, c.name AS label, l.author, l.source, l.created_at "
            "FROM items i JOIN classes c ON c.id = i.label_class_id "
            "LEFT JOIN labels l ON l.id = (SELECT MAX(id) FROM labels WHERE item_id = i.id AND undone_at IS NULL) "
            "WHERE i.status = 'ok' ORDER BY i.path")
        return [dict(r) for r in rows]

    def first_labeled_at(self) -> dict[int, str]:
        """{item id: when its standing label history began} for every labeled
        present item: the oldest label row not undone (Explore's round
        replay places an image's label before or after each round by it)."""
        rows = self.db.rows("SELECT l.item_id, MIN(l.created_at) AS at FROM labels l JOIN items i ON i.id = l.item_id "
                            "WHERE l.undone_at IS NULL AND i.label_class_id IS NOT NULL AND i.status = 'ok' "
                            "GROUP BY l.item_id")
        return {r["item_id"]: r["at"] for r in rows}

    def per_class(self) -> dict[str, int]:
        """Labeled present items per class, every class listed (0 for none)."""
        counts = {name: 0 for name in self.classes.names()}
        for r in self.db.rows("SELECT c.name, COUNT(*) AS n FROM items i JOIN classes c ON c.id = i.label_class_id "
                              "WHERE i.status = 'ok' GROUP BY c.name"):
            counts[r["name"]] = int(r["n"])
        return counts

    def labeled_ids(self) -> set[int]:
        """Ids of the labeled present items (cheaper than `current()`)."""
        return set(self.db.column("SELECT id FROM items WHERE label_class_id IS NOT NULL AND status = 'ok'"))

    def postponed_ids(self, round_id: int | None | EllipsisType = ...) -> set[int]:
        """Items postponed (and not undone) in the current round's queue, or
        in `round_id`'s (a page that knows its queue's round spares a read
        on every key)."""
        if round_id is ...:
            round_id = self.current_round()
        where = "s.round_id IS NULL" if round_id is None else "s.round_id = ?"
        return set(self.db.column("SELECT s.item_id FROM skips s JOIN actions a ON a.id = s.action_id "
                                  f"WHERE a.undone_at IS NULL AND {where}", () if round_id is None else (round_id,)))

    def version(self) -> tuple[int, int]:
        """Changes with every label, postponement or undo (for caches keyed on labels)."""
        row = self.db.one("SELECT COALESCE(MAX(id), 0) AS top, COUNT(undone_at) AS undone FROM actions")
        return int(row["top"]), int(row["undone"])


def ago(seconds: float) -> str:
    """'just now', '3 s ago', '4 min ago', '2 h ago'."""
    if seconds < 1.5:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"
