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

from typing import Any, Callable, Sequence

from vaal_core.errors import UnknownItem
from vaal_core.store.classes import Classes
from vaal_core.store.db import Database
from vaal_core.store.items import now


class Labels:
    def __init__(self, db: Database, classes: Classes, where: str, current_round: Callable[[], int | None]):
        self.db, self.classes, self.where = db, classes, where
        self.current_round = current_round  # the queue a postponement belongs to

    # -- writing -------------------------------------------------------------------

    def _new_action(self, kind: str, author: str) -> int:
        return self.db.insert("INSERT INTO actions(kind, author, created_at) VALUES (?, ?, ?)",
                              (kind, author, now()))

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

    def set(self, item_id: int, label: str | None, author: str = "user", source: str = "ui") -> int:
        """Give (or with None, clear) an item's label; one transaction, history
        kept, one undoable action. Returns the history row's id."""
        with self.db.atomic():
            class_id = None if label is None else self.classes.id_of(label)
            previous = self._current([int(item_id)])[int(item_id)]
            action = self._new_action("label", author)
            return self._write(action, int(item_id), class_id, previous, author, source)

    def set_many(self, pairs: Sequence[tuple[int, str]], author: str = "user", source: str = "import") -> int:
        """Many labels in one transaction and one undoable action: all are
        checked first, so one bad class or item leaves the project unchanged.
        Returns how many changed."""
        with self.db.atomic():
            class_ids = self.classes.ids()
            wanted = []
            for item_id, label in pairs:
                if label not in class_ids:
                    self.classes.id_of(label)  # raises UnknownClass, listing the classes
                wanted.append((int(item_id), class_ids[label]))
            current = self._current(list(dict.fromkeys(i for i, _ in wanted)))
            action = None
            changed = 0
            for item_id, class_id in wanted:
                if current[item_id] != class_id:
                    action = action or self._new_action("label", author)
                    self._write(action, item_id, class_id, current[item_id], author, source)
                    current[item_id] = class_id
                    changed += 1
            return changed

    def postpone(self, item_ids: int | Sequence[int], author: str = "user") -> None:
        """'Not now' for one item or a grid page (one undoable action)."""
        ids = [int(item_ids)] if isinstance(item_ids, int) else [int(i) for i in item_ids]
        with self.db.atomic():
            self._current(ids)  # every id must exist
            action = self._new_action("skip", author)
            round_id = self.current_round()
            self.db.executemany("INSERT INTO skips(action_id, item_id, round_id) VALUES (?, ?, ?)",
                                [(action, i, round_id) for i in ids])

    def undo(self) -> dict[str, Any] | None:
        """Undo the latest action not undone yet: a label gesture (every item
        it touched gets back its previous label) or a postponement. Returns
        {action, item_id, path, restored, items} (item_id/path/restored of
        the gesture's first item) or None when there is nothing to undo.
        `action` is 'label' or 'skip' (a postponement)."""
        with self.db.atomic():
            act = self.db.one("SELECT id, kind FROM actions WHERE undone_at IS NULL ORDER BY id DESC LIMIT 1")
            if act is None:
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
                            "WHERE i.status = 'ok'")
        return {r["id"]: r["name"] for r in rows}

    def per_class(self) -> dict[str, int]:
        """Labeled present items per class, every class listed (0 for none)."""
        counts = {name: 0 for name in self.classes.names()}
        for r in self.db.rows("SELECT c.name, COUNT(*) AS n FROM items i JOIN classes c ON c.id = i.label_class_id "
                              "WHERE i.status = 'ok' GROUP BY c.name"):
            counts[r["name"]] = int(r["n"])
        return counts

    def labeled_ids(self) -> set[int]:
        """Ids of the labeled present items (cheaper than `current()`)."""
        return {r["id"] for r in self.db.rows("SELECT id FROM items WHERE label_class_id IS NOT NULL "
                                              "AND status = 'ok'")}

    def postponed_ids(self) -> set[int]:
        """Items postponed (and not undone) in the current round's queue."""
        round_id = self.current_round()
        where = "s.round_id IS NULL" if round_id is None else "s.round_id = ?"
        rows = self.db.rows("SELECT s.item_id FROM skips s JOIN actions a ON a.id = s.action_id "
                            f"WHERE a.undone_at IS NULL AND {where}", () if round_id is None else (round_id,))
        return {r["item_id"] for r in rows}

    def version(self) -> tuple[int, int]:
        """Changes with every label, postponement or undo (for caches keyed on labels)."""
        row = self.db.one("SELECT COALESCE(MAX(id), 0) AS top, COUNT(undone_at) AS undone FROM actions")
        return int(row["top"]), int(row["undone"])
