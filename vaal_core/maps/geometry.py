"""Every point of a round's map as one compact binary payload, for the
Explore page's WebGL map (`frontend/latent_map`, served by `views/routes.py`).

The map is the round's 2-D projection (`maps.cache`); what is drawn on it is
live: labels, the queue and what each round picked, read from the store when
the payload is made. One payload carries every point (no sample), as
typed columns rather than per-point JSON: 17 bytes a point before gzip,
about 0.6 MB for 50,000 images once gzipped.

Layout (little-endian): a uint32 giving the JSON header's length, the
header (UTF-8, padded with spaces to a multiple of 4 bytes), then each
column in `COLUMNS` order, each padded to a multiple of 4 bytes. The header
names the columns with their dtype, offset and length, and carries the
rounds and classes the codes refer to.

Columns, one row per point:
  ids      int32   the store's item id (the browser asks for thumbnails by it)
  x, y     uint16  the projection scaled to 0..65535 over its extent (a 1/65536
                   step is far finer than a pixel at any zoom a map needs)
  cls      int16   the current label as an index into header["classes"], -1 unlabeled
  picked   int16   the index into header["rounds"] of the first round whose batch
                   held it, -1 never picked
  shown    int16   the replay step from which it is labeled: the number of rounds
                   that started before its label was first given (len(rounds):
                   labeled after the last round began), -1 unlabeled
  score    uint8   the current queue's order as a percentile: 255 its top, 1 its
                   bottom, 0 not scored by the current round
  disc     uint8   the map's round's discriminator P(labeled) x 254, 255 none
  flags    uint8   1: in the next batch (queued, unlabeled); 2: pushed to the front

NumPy and the store only: the app server makes it (once per labels version,
then cached by the browser under a URL that names that version).
"""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass

import numpy as np

from vaal_core.maps.cache import Projection
from vaal_core.store import Project

COLUMNS = (("ids", "<i4"), ("x", "<u2"), ("y", "<u2"), ("cls", "<i2"), ("picked", "<i2"), ("shown", "<i2"),
           ("score", "u1"), ("disc", "u1"), ("flags", "u1"))
NEXT_BATCH, PUSHED = 1, 2
NO_DISC = 255


@dataclass(frozen=True)
class Geometry:
    """The map's points as columns (see the module's docstring) and what their codes mean."""
    columns: dict[str, np.ndarray]
    classes: list[str]
    rounds: list[int]  # finished rounds in order; "picked" and "shown" index into it
    round_id: int  # the round whose projection this is
    not_on_map: int  # present items the round did not see (added since)

    def __len__(self) -> int:
        return len(self.columns["ids"])


def _scaled(v: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(v)), float(np.max(v))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.full(len(v), 32768, dtype=np.uint16)
    return np.round((v - lo) / (hi - lo) * 65535).astype(np.uint16)


def geometry(project: Project, proj: Projection) -> Geometry:
    """The live state of every point of `proj` that is still in the project."""
    # Whole columns at a time (50,000 points: 0.55 s with a dict per point);
    # `row_of[item id]` is the point's row, -1 for an item not on the map.
    present = np.asarray(project.item_ids(), dtype=np.int64)
    all_ids = np.asarray(proj.item_ids, dtype=np.int64)
    keep = np.isin(all_ids, present)
    ids = all_ids[keep]
    xy = np.asarray(proj.xy, dtype=np.float64)[keep]
    n = len(ids)
    row_of = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)  # rows_at: other ids are off the map
    row_of[ids] = np.arange(n)

    def rows_at(item_ids) -> np.ndarray:
        """Each id's row, -1 for one not on the map."""
        a = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        out = np.full(len(a), -1, dtype=np.int64)
        inside = (a >= 0) & (a < len(row_of))
        out[inside] = row_of[a[inside]]
        return out

    def rows_of(item_ids) -> np.ndarray:
        """Rows of the ids on the map, in the order given (the others dropped)."""
        r = rows_at(list(item_ids))
        return r[r >= 0]

    classes = project.classes()
    class_index = {name: k for k, name in enumerate(classes)}
    cls = np.full(n, -1, dtype=np.int16)
    labels = project.labels()
    at = rows_at(list(labels))
    on = at >= 0
    cls[at[on]] = np.asarray([class_index[name] for name in labels.values()], dtype=np.int16)[on]

    done = [r for r in project.rounds() if r["status"] == "done"]
    round_ids = [r["id"] for r in done]
    step_of = {rid: k for k, rid in enumerate(round_ids)}
    batches = [(b["item_id"], step_of[b["round_id"]]) for b in project.round_batches() if b["round_id"] in step_of]
    first = np.full(n, len(round_ids), dtype=np.int64)  # the first round whose batch held it
    at = rows_at([i for i, _ in batches])
    on = at >= 0
    np.minimum.at(first, at[on], np.asarray([k for _, k in batches], dtype=np.int64)[on])
    picked = np.where(first < len(round_ids), first, -1).astype(np.int16)

    starts = np.asarray(sorted(r["created_at"] for r in done), dtype=str)  # ISO 8601 UTC: compares as text
    shown = np.full(n, -1, dtype=np.int16)
    first_at = project.first_labeled_at()
    at = rows_at(list(first_at))
    at_ok = at >= 0
    at_ok[at_ok] = cls[at[at_ok]] >= 0  # labeled now
    if at_ok.any():
        when = np.asarray(list(first_at.values()), dtype=str)[at_ok]
        shown[at[at_ok]] = np.searchsorted(starts, when, side="left")

    score = np.zeros(n, dtype=np.uint8)
    ranked = rows_of(project.round_order_ids())
    if len(ranked):
        pct = 255 - np.round(np.arange(len(ranked)) / max(len(ranked) - 1, 1) * 254)
        score[ranked] = pct.astype(np.uint8)

    disc = np.full(n, NO_DISC, dtype=np.uint8)
    folder = project.round_dir(proj.round_id)
    if (folder / "disc_prob.npy").is_file() and (folder / "item_ids.npy").is_file():
        src_ids, probs = np.load(folder / "item_ids.npy"), np.load(folder / "disc_prob.npy")
        if len(src_ids) == len(probs):
            at = rows_at(src_ids)
            p = np.asarray(probs, dtype=np.float64).reshape(-1)
            ok = (at >= 0) & np.isfinite(p)
            disc[at[ok]] = np.round(np.clip(p[ok], 0, 1) * 254).astype(np.uint8)

    flags = np.zeros(n, dtype=np.uint8)
    flags[rows_of(q["item_id"] for q in project.queue())] |= NEXT_BATCH
    flags[rows_of(project.priority_ids())] |= PUSHED

    columns = {"ids": ids.astype(np.int32), "x": _scaled(xy[:, 0]), "y": _scaled(xy[:, 1]), "cls": cls,
               "picked": picked, "shown": shown, "score": score, "disc": disc, "flags": flags}
    return Geometry(columns, classes, round_ids, proj.round_id, not_on_map=len(present) - n)


def _pad(b: bytes, fill: bytes = b"\0") -> bytes:
    return b + fill * (-len(b) % 4)


def encode(g: Geometry) -> bytes:
    """The payload's bytes (uncompressed)."""
    fields, body, offset = [], [], 0
    for name, dtype in COLUMNS:
        raw = np.ascontiguousarray(g.columns[name], dtype=np.dtype(dtype)).tobytes()
        fields.append({"name": name, "dtype": np.dtype(dtype).str, "offset": offset, "length": len(g)})
        body.append(_pad(raw))
        offset += len(body[-1])
    header = {"n": len(g), "round_id": g.round_id, "rounds": g.rounds, "classes": g.classes,
              "not_on_map": g.not_on_map, "columns": fields}
    head = _pad(json.dumps(header).encode(), b" ")
    return struct.pack("<I", len(head)) + head + b"".join(body)


def decode(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, columns) of `encode`'s bytes (gzipped or not): what the
    browser reads, for tests and the benchmark."""
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    (size,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4:4 + size])
    base = 4 + size
    cols = {f["name"]: np.frombuffer(payload, dtype=np.dtype(f["dtype"]), count=f["length"],
                                     offset=base + f["offset"]) for f in header["columns"]}
    return header, cols


def compressed(g: Geometry) -> bytes:
    """The payload gzipped (sent with Content-Encoding: gzip)."""
    return gzip.compress(encode(g), compresslevel=6, mtime=0)
