"""A round's 2-D map joined with the store's current state (labels now,
the queue now, that round's discriminator), for `vc.LatentMap`; and what
the Explore page asks about a selection. (The Explore page's own map is
sent as maps/geometry.py's binary payload.)

The map is per round (the latents a round's VAE produced); labels and the
queue are live, so points change colour as the user labels without
recomputing anything. Every path it holds is the path as the app may
show it (`data.images.shown_path`: no folder that gives a gold label away).

Bulk actions on a selection name exactly the ids they act on: `Question`
is what the page asked ("label these 74 as ship?"), and a confirmation
counts only while the selection is still those ids (`Question.holds`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from vaal_core.data.images import shown_path
from vaal_core.errors import BadInput
from vaal_core.maps.cache import Projection
from vaal_core.store import Project


@dataclass(frozen=True)
class LatentMap:
    round_id: int
    ids: np.ndarray  # (N,) item ids present now
    xy: np.ndarray  # (N, 2)
    paths: list[str]  # as shown (gold folders masked), never the raw path of a gold-labeled project
    labels: list[str | None]  # current labels
    queued: np.ndarray  # (N,) bool: in the current queue, unlabeled
    disc_prob: np.ndarray | None  # (N,) the round's discriminator P(labeled), None if it had none
    not_on_map: int  # present items the round did not see (added since)

    @property
    def labeled(self) -> np.ndarray:
        return np.array([lab is not None for lab in self.labels], dtype=bool)


def latent_map(project: Project, proj: Projection) -> LatentMap:
    paths = {it.id: shown_path(it.path, it.gold) for it in project.items()}
    here = np.array([int(i) in paths for i in proj.item_ids], dtype=bool)  # missing files drop out
    ids, xy = proj.item_ids[here], proj.xy[here]
    labels_now = project.labels()
    queue = {q["item_id"] for q in project.queue()}
    disc = None
    disc_file = project.round_dir(proj.round_id) / "disc_prob.npy"
    src_ids_file = project.round_dir(proj.round_id) / "item_ids.npy"
    if disc_file.is_file() and src_ids_file.is_file():
        by_id = dict(zip(np.load(src_ids_file).tolist(), np.load(disc_file).tolist()))
        disc = np.array([by_id.get(int(i), np.nan) for i in ids], dtype=np.float64)
    return LatentMap(
        round_id=proj.round_id, ids=ids, xy=xy, paths=[paths[int(i)] for i in ids],
        labels=[labels_now.get(int(i)) for i in ids], queued=np.array([int(i) in queue for i in ids], dtype=bool),
        disc_prob=disc, not_on_map=len(paths) - int(here.sum()))


def selection_key(ids, round_id: int | None = None) -> str:
    """A short name for a selection (its ids in order, on one round's map)."""
    text = f"{round_id}|{','.join(str(int(i)) for i in ids)}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Question:
    """A bulk action the page asked the user to confirm: `action` ("label"
    or "push") on exactly `ids`, with `label` for a label. `nonce` makes
    each asking distinct (so the same question asked again after an undo
    is a new action); `seen` is (id, label then) per id, for a write that
    is refused if a label changed since it was shown."""
    action: str
    ids: tuple[int, ...]
    label: str | None = None
    round_id: int | None = None
    nonce: str = ""
    seen: tuple[tuple[int, str | None], ...] = ()

    def holds(self, ids, label: str | None = None, round_id: int | None = None) -> bool:
        """Whether a confirmation now still means what was asked: the same
        ids in the same order, the same class, the same map."""
        return (tuple(int(i) for i in ids) == self.ids and round_id == self.round_id
                and (self.action != "label" or label == self.label))

    @property
    def token(self) -> str:
        """Names this asking's buttons and its write: a click on an older
        question's button never confirms this one, and a confirmation sent
        twice writes once (the store's action token)."""
        text = f"{self.action}|{self.label}|{self.nonce}|{selection_key(self.ids, self.round_id)}"
        return "explore-" + hashlib.sha1(text.encode()).hexdigest()[:16]


def page_span(n: int, page: int, per_page: int) -> tuple[int, int, int]:
    """(start, stop, page) of page `page` (0-based, clamped to the pages
    there are) of `n` items shown `per_page` at a time."""
    if per_page < 1:
        raise BadInput(f"per_page must be at least 1, got {per_page}")
    pages = max(1, -(-n // per_page))
    page = min(max(0, page), pages - 1)
    return page * per_page, min(n, (page + 1) * per_page), page


def latent_rounds(project: Project) -> list[int]:
    """Finished rounds that kept latents (newest last): the maps there are."""
    return [r["id"] for r in project.rounds()
            if r["status"] == "done" and (project.round_dir(r["id"]) / "latents.npy").is_file()]
