"""The project's classes: ordered names (the number keys follow the order)
that labels point at by id, so a rename keeps every label."""

from __future__ import annotations

from typing import Iterable, Sequence

from vaal_core.errors import BadInput, UnknownClass
from vaal_core.store.db import Database


def check_class_name(name: str) -> str:
    clean = str(name).strip()
    if not clean or any(ch in clean for ch in "\n\r\t") or clean in (".", "..") or "/" in clean:
        raise BadInput(f"class name {name!r} is not usable: give a non-empty name without '/', tabs or newlines")
    return clean


def _same_but_case(name: str, others: Iterable[str]) -> str | None:
    """The other class that `name` differs from only in letter case, if any:
    two such classes are one folder on macOS and Windows (an ImageFolder
    export would merge them), and almost always one class typed twice."""
    return next((o for o in others if o != name and o.casefold() == name.casefold()), None)


def _case_clash(name: str, other: str) -> BadInput:
    return BadInput(f"class {name!r} differs from the class {other!r} only in letter case; use {other!r}, or "
                    f"rename it (two such classes are one folder on macOS and Windows)")


class Classes:
    def __init__(self, db: Database):
        self.db = db

    def names(self) -> list[str]:
        return [r["name"] for r in self.db.rows("SELECT name FROM classes ORDER BY position, id")]

    def ids(self) -> dict[str, int]:
        """{name: id} of every class."""
        return {r["name"]: r["id"] for r in self.db.rows("SELECT id, name FROM classes")}

    def id_of(self, name: str) -> int:
        row = self.db.one("SELECT id FROM classes WHERE name = ?", (name,))
        if row is None:
            raise UnknownClass(f"unknown class {name!r}; the project's classes are: "
                               f"{', '.join(self.names()) or '(none yet: add some first)'}")
        return row["id"]

    def add(self, names: Iterable[str]) -> list[str]:
        """Append the names not present yet, in the given order; returns the
        names added."""
        added = []
        with self.db.atomic():
            existing = set(self.names())
            for name in names:
                name = check_class_name(name)
                if name in existing:
                    continue
                other = _same_but_case(name, existing)
                if other is not None:
                    raise _case_clash(name, other)
                pos = self.db.value("SELECT COALESCE(MAX(position), -1) + 1 FROM classes")
                self.db.insert("INSERT INTO classes(name, position) VALUES (?, ?)", (name, pos))
                existing.add(name)
                added.append(name)
        return added

    def rename(self, old: str, new: str) -> None:
        """Renaming keeps every label: labels point at the class id."""
        new = check_class_name(new)
        with self.db.atomic():
            class_id = self.id_of(old)
            names = self.names()
            if new != old and new in names:
                raise BadInput(f"class {new!r} exists already; pick another name")
            other = _same_but_case(new, [n for n in names if n != old])
            if other is not None:
                raise _case_clash(new, other)
            self.db.execute("UPDATE classes SET name = ? WHERE id = ?", (new, class_id))

    def reorder(self, names: Sequence[str]) -> None:
        """Set the order (number keys 1-9 follow it); `names` must be a
        permutation of the current classes."""
        current = self.names()
        if sorted(names) != sorted(current):
            missing = [c for c in current if c not in names]
            unknown = [n for n in dict.fromkeys(names) if n not in current]
            wrong = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"not a class: {', '.join(unknown)}"] if unknown else [])
            raise BadInput(f"a new order must list exactly the classes, each once: "
                           f"{'; '.join(wrong) or 'a class given twice'} (the classes: {', '.join(current)})")
        with self.db.atomic():
            for pos, name in enumerate(names):
                self.db.execute("UPDATE classes SET position = ? WHERE name = ?", (pos, name))

    def remove(self, name: str) -> None:
        """Only a class no label ever pointed at can go (history included)."""
        with self.db.atomic():
            class_id = self.id_of(name)
            used = self.db.value("SELECT COUNT(*) FROM labels WHERE class_id = ? OR previous_class_id = ?",
                                 (class_id, class_id))
            if used:
                raise BadInput(f"class {name!r} has labels in its history; rename it instead of removing it")
            # a later class could reuse the id: no suggestion may point at it
            self.db.execute("UPDATE scores SET suggestion_class_id = NULL, confidence = NULL "
                            "WHERE suggestion_class_id = ?", (class_id,))
            self.db.execute("DELETE FROM classes WHERE id = ?", (class_id,))
