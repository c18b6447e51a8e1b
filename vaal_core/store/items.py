"""Items (the images of a project) and the ingest's bookkeeping: which files
are known, where each one's pixels sit in the decoded cache, which have gone
missing, and which files could not be used and why ("skipped files", not to
be confused with the user's "not now", see `labels.Labels.postpone`).

Items are identified by stable integer ids; `cache_index` is their row in
the decoded image cache (see `vaal_core.data.cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from vaal_core.errors import UnknownItem
from vaal_core.store.db import Database


def now() -> str:
    """The time as stored: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Item:
    id: int
    path: str  # relative to the image root, '/' separated
    cache_index: int
    gold: str | None  # hidden oracle label: evaluation and simulation only
    label: str | None  # the current label's class name
    width: int
    height: int


_ITEM_SQL = ("SELECT i.id, i.path, i.cache_index, i.gold, c.name AS label, i.width, i.height, i.status "
             "FROM items i LEFT JOIN classes c ON c.id = i.label_class_id")


def _item(row: Any) -> Item:
    return Item(row["id"], row["path"], row["cache_index"], row["gold"], row["label"], row["width"], row["height"])


MOVED = "items_moved"  # meta key: how many times items went missing or came back
# Changes whenever items come (a new highest id) or go or come back (MOVED
# counts it): two indexed reads, where counting the present items reads every
# row (1 ms at 10,000 items, on every key the Label page takes).
PRESENCE = f"(SELECT COALESCE(MAX(id), 0) FROM items) AS items_top, " \
           f"(SELECT value FROM meta WHERE key = '{MOVED}') AS items_moved"


class Items:
    def __init__(self, db: Database, where: str):
        self.db, self.where = db, where  # `where`: the project, for messages

    def _unknown(self, item_id: int) -> UnknownItem:
        return UnknownItem(f"no item with id {item_id} in {self.where}")

    # -- reading -----------------------------------------------------------------

    def list(self, ids: Sequence[int] | None = None, status: str | None = "ok") -> list[Item]:
        """Items by id, in the order asked (every id must exist), or all of
        them in id order; `status` filters ('ok', 'missing', None: any)."""
        if ids is None:
            sql = _ITEM_SQL + (" WHERE i.status = ?" if status else "") + " ORDER BY i.id"
            return [_item(r) for r in self.db.rows(sql, (status,) if status else ())]
        wanted = [int(i) for i in ids]
        rows = self.db.rows_in(_ITEM_SQL + " WHERE i.id IN ({ids})", wanted)
        by_id = {r["id"]: _item(r) for r in rows if status is None or r["status"] == status}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise self._unknown(missing[0])
        return [by_id[i] for i in wanted]

    def ids(self) -> list[int]:
        """The present items' ids, in order (a sixth of `list`'s time)."""
        return self.db.column("SELECT id FROM items WHERE status = 'ok' ORDER BY id")

    def get(self, item_id: int) -> Item:
        """One item by id (a single-row query: the Label page calls it per keypress)."""
        row = self.db.one(_ITEM_SQL + " WHERE i.id = ?", (int(item_id),))
        if row is None:
            raise self._unknown(item_id)
        return _item(row)

    def id_of(self, path: str, image_root: str) -> int:
        row = self.db.one("SELECT id FROM items WHERE path = ?", (path,))
        if row is None:
            raise UnknownItem(f"{path!r} is not an item of this project (paths are relative to {image_root})")
        return row["id"]

    def paths(self) -> dict[int, str]:
        """{item id: relative path} of the present items in id order, without
        building Items (the Label page's order is made from it: PostgreSQL
        returns rows in no set order without ORDER BY)."""
        return {r["id"]: r["path"] for r in self.db.rows("SELECT id, path FROM items WHERE status = 'ok' ORDER BY id")}

    def count(self) -> tuple[int, int]:
        """(present items, highest item id)."""
        row = self.db.one("SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top FROM items WHERE status = 'ok'")
        return int(row["n"]), int(row["top"])

    def counts(self) -> dict[str, int]:
        """{'ok': present items, 'missing': items whose file is gone, 'labeled': labeled present items}."""
        row = self.db.one(
            "SELECT COALESCE(SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0) AS ok, "
            "COALESCE(SUM(CASE WHEN status = 'missing' THEN 1 ELSE 0 END), 0) AS missing, "
            "COALESCE(SUM(CASE WHEN status = 'ok' AND label_class_id IS NOT NULL THEN 1 ELSE 0 END), 0) "
            "AS labeled FROM items")
        return {"ok": int(row["ok"]), "missing": int(row["missing"]), "labeled": int(row["labeled"])}

    # -- ingest bookkeeping ------------------------------------------------------

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ingested items: dicts with path, size_bytes, sha1, width,
        height, cache_index and optionally gold."""
        stamp = now()
        with self.db.atomic():
            self.db.executemany(
                "INSERT INTO items(path, size_bytes, sha1, width, height, cache_index, gold, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r["path"], r["size_bytes"], r["sha1"], r["width"], r["height"], r["cache_index"], r.get("gold"),
                  stamp) for r in rows])

    def known_files(self) -> tuple[dict[str, int], dict[str, str]]:
        """({path: item id}, {sha1: path}) of every item, for incremental ingest."""
        rows = self.db.rows("SELECT id, path, sha1 FROM items")
        return {r["path"]: r["id"] for r in rows}, {r["sha1"]: r["path"] for r in rows}

    def fingerprints(self) -> list[tuple[str, int, str]]:
        """(path, size in bytes, SHA-1) of every item, in id order: what a
        new place of the image folder is checked against (data/relocate.py)."""
        return [(r["path"], int(r["size_bytes"]), r["sha1"])
                for r in self.db.rows("SELECT path, size_bytes, sha1 FROM items ORDER BY id")]

    def cache_rows(self) -> int:
        """Rows of the image cache that items point at (the cache may hold a
        partly written tail after a crash; it is cut back to this)."""
        return int(self.db.value("SELECT COALESCE(MAX(cache_index), -1) + 1 FROM items"))

    def rename(self, moves: Mapping[str, str]) -> None:
        """Give items new paths, {old path: new path}: their files were found
        under new names (same bytes), so each keeps its id, label, history
        and cache row. The new paths are not items (ingest only moves an item
        to a path it does not know)."""
        if not moves:
            return
        with self.db.atomic():
            self.db.executemany("UPDATE items SET path = ? WHERE path = ?",
                                [(new, old) for old, new in moves.items()])
            self._bump_moved()

    def _bump_moved(self) -> None:
        # What PRESENCE reads: the present items (or their paths) changed without a new id.
        self.db.execute(f"INSERT INTO meta(key, value) VALUES ('{MOVED}', '1') ON CONFLICT(key) DO UPDATE "
                        "SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)")

    def set_missing(self, present_paths: set[str]) -> int:
        """Mark items whose file has gone as 'missing' (their labels are kept)
        and bring back ones that reappeared; returns the number missing."""
        with self.db.atomic():
            moved = 0
            for r in self.db.rows("SELECT id, path, status FROM items"):
                status = "ok" if r["path"] in present_paths else "missing"
                if status != r["status"]:
                    self.db.execute("UPDATE items SET status = ? WHERE id = ?", (status, r["id"]))
                    moved += 1
            if moved:
                self._bump_moved()
            return int(self.db.value("SELECT COUNT(*) FROM items WHERE status = 'missing'"))

    def set_skipped_files(self, skipped: Sequence[tuple[str, str]]) -> None:
        """Replace the list of files the ingest could not use with the latest scan's."""
        stamp = now()
        with self.db.atomic():
            self.db.execute("DELETE FROM skipped")
            last = dict(skipped)  # one row a path: the last reason given wins
            self.db.executemany("INSERT INTO skipped(path, reason, seen_at) VALUES (?, ?, ?)",
                                [(p, r, stamp) for p, r in last.items()])

    def skipped_files(self) -> list[dict[str, str]]:
        return [{"path": r["path"], "reason": r["reason"]}
                for r in self.db.rows("SELECT path, reason FROM skipped ORDER BY path")]

    def skipped_file_count(self) -> int:
        return int(self.db.value("SELECT COUNT(*) FROM skipped"))
