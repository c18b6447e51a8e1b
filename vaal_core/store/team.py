"""Several annotators on one project: leases, overlap and agreement.

**Leases.** The Label page leases the images it shows to the annotator
looking at them (`claim`); every other annotator's page passes them by
(`held_by_others`) until the lease expires, `LEASE_S` after it was last
renewed, so a session left idle does not hoard the queue. A claim is one
write transaction (on PostgreSQL under the project's advisory lock, like
every write), so two app servers never lease one image to two annotators.

**Overlap.** A project setting (`overlap`, a fraction, 0 by default) names a
share of the images, drawn by a hash of their id (so every server agrees
and the share is stable as images are added), that two annotators label
independently: once one annotator has labeled a doubled image it comes back
to the others' pages as unlabeled, its label hidden (`needs_opinion`).

**Agreement.** Each annotator's opinion of a doubled image is their latest
standing label row; a pair's agreement is percent agreement and Cohen's
kappa over the images both labeled. A *conflict* is a doubled image whose
annotators disagree and that no reviewer has resolved since; a reviewer's
resolution is an ordinary label with source 'review' (one action: history
kept, undo works). Training reads `training_labels`: conflicts left out
until resolved, so neither the task model nor its accuracy estimate ever
sees a label two annotators disagree on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import combinations
from typing import Any, Collection, Sequence

from vaal_core.errors import BadInput
from vaal_core.store.db import Backend
from vaal_core.store.items import now

LEASE_S = 300.0  # 5 minutes: long enough to think about one image, short enough not to hoard
REVIEW = "review"  # the label source of a reviewer's resolution
_HASH = 2654435761  # Knuth's multiplicative hash: spreads consecutive ids evenly over [0, 2^32)


def doubled(item_id: int, overlap: float) -> bool:
    """Whether an image goes to two annotators at this overlap (the same
    answer in every process)."""
    return overlap > 0 and ((int(item_id) * _HASH) % 2**32) / 2**32 < overlap


class Team:
    def __init__(self, db: Backend, meta: Any, set_meta: Any):
        self.db, self._meta, self._set_meta = db, meta, set_meta

    # -- leases ------------------------------------------------------------------------

    def claim(self, annotator: str, item_ids: Sequence[int], ttl_s: float = LEASE_S,
              labeled_ok: Collection[int] = ()) -> list[int]:
        """Lease `item_ids` to `annotator` (renewing theirs), releasing every
        other lease they hold; returns the ids now theirs, in order. Left out:
        an id another annotator holds, and one labeled by now (the caller's
        view of the labels may be a moment old) unless it is in `labeled_ok`
        (a second opinion). Writes queue one after the other, so what this
        transaction reads of the labels is what is committed."""
        ids = list(dict.fromkeys(int(i) for i in item_ids))
        stamp = time.time()
        got = []
        with self.db.atomic():
            self.release(annotator)
            labeled = {r["id"] for r in self.db.rows_in(
                "SELECT id FROM items WHERE label_class_id IS NOT NULL AND id IN ({ids})", ids)}
            for i in ids:
                if (i not in labeled or i in labeled_ok) and self._lease(i, annotator, stamp, ttl_s):
                    got.append(i)
        return got

    def claim_first(self, annotator: str, item_ids: Sequence[int], ttl_s: float = LEASE_S,
                    labeled_ok: Collection[int] = ()) -> int | None:
        """Lease to `annotator` the first of `item_ids` (candidates, best
        first) that nobody else holds and nobody has labeled (but for
        `labeled_ok`), releasing their other leases: one transaction however
        many candidates are taken or labeled since the caller looked, so a
        teammate just ahead in the same order costs no extra round trips.
        Returns its id, or None when every candidate is gone."""
        ids = list(dict.fromkeys(int(i) for i in item_ids))
        stamp = time.time()
        with self.db.atomic():
            self.release(annotator)
            # one read: which candidates are labeled, which are on someone's screen
            rows = self.db.rows_in("SELECT i.id, i.label_class_id, l.expires_at FROM items i "
                                   "LEFT JOIN leases l ON l.item_id = i.id WHERE i.id IN ({ids})", ids)
            gone = {r["id"] for r in rows if (r["label_class_id"] is not None and r["id"] not in labeled_ok)
                    or (r["expires_at"] is not None and r["expires_at"] >= stamp)}
            for i in ids:
                if i not in gone and self._lease(i, annotator, stamp, ttl_s):
                    return i
        return None

    def _lease(self, item_id: int, annotator: str, stamp: float, ttl_s: float) -> bool:
        """One lease, taken unless someone else's stands (the upsert is one
        atomic step on either backend)."""
        return bool(self.db.execute(
            "INSERT INTO leases(item_id, annotator, expires_at, taken_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(item_id) DO UPDATE SET annotator = excluded.annotator, "
            "expires_at = excluded.expires_at, taken_at = excluded.taken_at "
            "WHERE leases.expires_at < ?", (item_id, annotator, stamp + ttl_s, now(), stamp)))

    def release(self, annotator: str) -> None:
        self.db.execute("DELETE FROM leases WHERE annotator = ?", (annotator,))

    def held_by_others(self, annotator: str) -> set[int]:
        """Images leased to another annotator whose lease has not expired."""
        return {r["item_id"] for r in self.db.rows(
            "SELECT item_id FROM leases WHERE annotator <> ? AND expires_at >= ?", (annotator, time.time()))}

    def leases(self) -> list[dict[str, Any]]:
        """Every lease standing now: [{item_id, annotator, expires_in_s}]."""
        stamp = time.time()
        return [{"item_id": r["item_id"], "annotator": r["annotator"], "expires_in_s": r["expires_at"] - stamp}
                for r in self.db.rows("SELECT item_id, annotator, expires_at FROM leases WHERE expires_at >= ? "
                                      "ORDER BY annotator, item_id", (stamp,))]

    # -- overlap -----------------------------------------------------------------------

    def overlap(self) -> float:
        return float(self._meta("overlap") or 0.0)

    def set_overlap(self, fraction: float) -> None:
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = -1.0
        if not 0.0 <= fraction <= 1.0:
            raise BadInput(f"overlap {fraction!r} is not a share of images: give a number from 0 to 1 "
                           "(0.1: one image in ten goes to two annotators)")
        self._set_meta("overlap", repr(fraction))

    def _opinions(self) -> dict[int, dict[str, Any]]:
        """{doubled labeled item: {"by": {annotator: class or None}, "reviewed": class, "path": ...}}:
        each annotator's latest standing label of it, and the latest standing
        review if it came after every opinion."""
        fraction = self.overlap()
        if fraction <= 0:
            return {}
        rows = self.db.rows("SELECT l.id, l.item_id, l.author, l.source, c.name, i.path FROM labels l "
                            "JOIN items i ON i.id = l.item_id LEFT JOIN classes c ON c.id = l.class_id "
                            "WHERE l.undone_at IS NULL AND i.status = 'ok' ORDER BY l.id")
        out: dict[int, dict[str, Any]] = {}
        for r in rows:
            if not doubled(r["item_id"], fraction):
                continue
            entry = out.setdefault(r["item_id"], {"by": {}, "reviewed": None, "path": r["path"]})
            if r["source"] == REVIEW:
                entry["reviewed"] = r["name"]
            else:
                entry["by"][r["author"]] = r["name"]
                entry["reviewed"] = None  # an opinion after a review opens the question again
        for entry in out.values():
            entry["by"] = {a: c for a, c in entry["by"].items() if c is not None}  # a cleared label is no opinion
        return out

    def needs_opinion(self, annotator: str) -> set[int]:
        """Doubled images labeled by exactly one other annotator and not
        reviewed: they come back to `annotator` as unlabeled."""
        return {i for i, e in self._opinions().items()
                if len(e["by"]) == 1 and annotator not in e["by"] and e["reviewed"] is None}

    def conflicts(self) -> list[dict[str, Any]]:
        """Doubled images whose annotators disagree, not resolved since:
        [{item_id, path, by: {annotator: class}}], by item id."""
        return [{"item_id": i, "path": e["path"], "by": dict(e["by"])} for i, e in sorted(self._opinions().items())
                if e["reviewed"] is None and len(set(e["by"].values())) > 1]

    def agreement(self) -> list[dict[str, Any]]:
        """Per pair of annotators, over the doubled images both labeled:
        [{a, b, n, agree (a share), kappa (Cohen's; None where it is
        undefined: one class only)}]."""
        from sklearn.metrics import cohen_kappa_score

        pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for e in self._opinions().values():
            for a, b in combinations(sorted(e["by"]), 2):
                pairs[(a, b)].append((e["by"][a], e["by"][b]))
        out = []
        for (a, b), both in sorted(pairs.items()):
            ya, yb = [x for x, _ in both], [y for _, y in both]
            agree = sum(x == y for x, y in both) / len(both)
            kappa = None
            if len(set(ya) | set(yb)) > 1:
                k = float(cohen_kappa_score(ya, yb))
                kappa = None if k != k else round(k, 4)  # NaN: no variation to agree beyond chance on
            out.append({"a": a, "b": b, "n": len(both), "agree": round(agree, 4), "kappa": kappa})
        return out

    def by_annotator(self) -> dict[str, int]:
        """Labeled present images per annotator who gave their current label."""
        rows = self.db.rows(
            "SELECT l.author, COUNT(*) AS n FROM items i "
            "JOIN labels l ON l.id = (SELECT MAX(id) FROM labels WHERE item_id = i.id AND undone_at IS NULL) "
            "WHERE i.label_class_id IS NOT NULL AND i.status = 'ok' GROUP BY l.author ORDER BY l.author")
        return {r["author"]: int(r["n"]) for r in rows}
