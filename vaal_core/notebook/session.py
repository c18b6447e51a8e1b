"""A labeling session in a notebook: the Label page's walk through the
queue, held in Python for `vc.Labeler` (no Jupyter here, so it is tested
without one).

It walks the same order as the app's Label page (`services.labeling`),
writes through the same store calls, and keeps the same promises:

- every label, skip and undo is one transaction the moment it is pressed,
  so the app (open on the same project) sees it and a kernel restart
  loses nothing;
- a press names the drawing it was made on (`token`): it labels the image
  the person saw, even when it arrives after the widget moved on, and the
  store writes each press once;
- a label that changed elsewhere since the widget showed it is refused
  and said, never overwritten blind; pressing again on the new drawing
  (which shows the other label) replaces it.

`draw()` returns everything the widget shows as one JSON-able dict, and
`press(token, action, ...)` applies a key or a click; nothing else changes
the session.
"""

from __future__ import annotations

import base64
import io
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vaal_core.data.images import fit, image_root_problem, load_image, shown_path
from vaal_core.errors import LabelConflict, VaalError
from vaal_core.learn import calibration
from vaal_core.services import label_words, labeling
from vaal_core.store import Project
from vaal_core.store.labels import SOURCE_WORDS, ago

SIDE = 384  # the single view's image, px
TILE = 128  # a grid tile, px
GRID = 12  # tiles per grid page (3 rows of 4)
KEPT_DRAWINGS = 64  # presses on older drawings than this are refused, not guessed at
SOURCE, ACCEPTED = "notebook", "notebook_suggestion"  # how the store records this widget's labels (SOURCE_WORDS)


def jpeg_data_url(img: Image.Image, quality: int) -> str:
    """An image as a data: URL, for the widgets (the browser gets it with the drawing, no file server)."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class Drawing:
    """What one drawing showed: a press made on it acts on exactly this."""

    view: str
    ids: list[int]  # the single view's image, or the grid page's tiles
    pos: int = 0  # the single view's position in the order
    shown_label: str | None = None  # the single image's label as shown
    suggestion: str | None = None  # the single image's suggestion as shown (Enter takes it)
    sure: dict[int, str] = field(default_factory=dict)  # grid: pre-selected suggestions (Enter takes these)
    unsure: frozenset[int] = frozenset()
    why_not: str = ""
    latest: int | None = None  # the latest action when drawn (Z undoes it, once)


class LabelSession:
    def __init__(self, project: Project, *, view: str = "single", author: str = "user", side: int = SIDE):
        if view not in ("single", "grid"):
            raise VaalError(f"view must be 'single' or 'grid', not {view!r}")
        self.project, self.view, self.author, self.side = project, view, author, side
        self.cursor: int | None = None  # the single view's item (None: the first unlabeled)
        self._round = project.current_round_id()  # the round whose queue the cursor walks
        self.last = ""  # what the latest press did, in words
        self.error = ""  # a refusal to show once
        self.tab = uuid.uuid4().hex[:8]  # this widget's presses' tokens start with it
        self._drawings: OrderedDict[str, Drawing] = OrderedDict()
        self._order: labeling.LabelOrder | None = None
        self._order_version: tuple | None = None
        self._facts: dict[int, label_words.RoundFacts] = {}
        self._pictures: OrderedDict[tuple[int, int], tuple[str, str | None]] = OrderedDict()

    # -- reading the store ---------------------------------------------------------

    def order(self) -> labeling.LabelOrder:
        version = labeling.order_version(self.project)
        if self._order is None or self._order_version != version:
            self._order, self._order_version = labeling.label_order(self.project), version
        return self._order

    def facts(self, round_id: int | None) -> label_words.RoundFacts | None:
        # A finished round's record never changes: read once per round, not on every press.
        if round_id is None:
            return None
        if round_id not in self._facts:
            self._facts[round_id] = label_words.round_facts(self.project, round_id)
        return self._facts[round_id]

    def picture(self, item_id: int, side: int) -> tuple[str, str | None]:
        """(a JPEG data URL of the image, its longer side `side` px; a note when
        the cached copy stands in for the file), the last 64 originals kept (not
        a stand-in: the folder may be back, or read from its new place, next time)."""
        key = (item_id, side)
        if key in self._pictures:
            return self._pictures[key]
        img, note = load_image(self.project, self.project.item(item_id), max_side=side)
        drawn = (jpeg_data_url(fit(img, side), quality=88), note)
        if note is None:
            self._pictures[key] = drawn
            while len(self._pictures) > 64:
                self._pictures.popitem(last=False)
        return drawn

    # -- drawing ---------------------------------------------------------------------

    def draw(self) -> dict[str, Any]:
        """Everything the widget shows, with a fresh token for its presses."""
        classes = self.project.classes()
        keys = label_words.class_keys(classes)
        order = self.order()
        if order.round_id != self._round:  # a new round's queue starts at its top
            self.cursor, self._round = None, order.round_id
        labeled, postponed = self.project.labeled_ids(), self.project.postponed_ids()
        facts = self.facts(order.round_id)
        batch_left = sum(1 for i in order.ids[:order.batch] if i not in labeled)
        state: dict[str, Any] = {
            "token": f"{self.tab}-{uuid.uuid4().hex[:10]}", "view": self.view,
            "classes": [{"name": n, "key": k} for n, k in zip(classes, keys)],
            "progress": {"labeled": len(labeled), "total": len(order.ids), "batch": order.batch,
                         "batch_left": batch_left, "round": order.round_id},
            "last": self.last, "error": self.error, "done": False, "card": None, "tiles": [], "grid_words": "",
            "notes": [n for n in (image_root_problem(self.project),
                                  facts.disc["verdict"] if facts is not None and facts.near_chance else None) if n],
        }
        self.error = ""  # said once
        if not classes:
            state["notes"].insert(0, "This project has no classes yet: add them (the app's Project page, or "
                                     "`python -m vaal_core classes`) in the order of the number keys.")
            drawing = Drawing(self.view, [], latest=self.project.latest_action())
        elif self.view == "grid":
            drawing = self._draw_grid(state, order, labeled, postponed)
        else:
            drawing = self._draw_single(state, order, labeled, postponed, facts, len(classes))
        self._drawings[state["token"]] = drawing
        while len(self._drawings) > KEPT_DRAWINGS:
            self._drawings.popitem(last=False)
        return state

    def _draw_single(self, state: dict, order: labeling.LabelOrder, labeled: set[int], postponed: set[int],
                     facts: label_words.RoundFacts | None, n_classes: int) -> Drawing:
        pos = order.position(self.cursor) if self.cursor is not None else None
        if pos is None:
            pos = labeling.next_to_label(order, labeled, postponed, 0)
        latest = self.project.latest_action()
        if pos is None:
            state["done"] = True
            return Drawing("single", [], latest=latest)
        item_id = order.ids[pos]
        item = self.project.item(item_id)
        suggestion = self.project.suggestions([item_id]).get(item_id)
        src, note = self.picture(item_id, self.side)
        card: dict[str, Any] = {
            "item_id": item_id, "path": shown_path(item.path, item.gold), "src": src, "label": item.label,
            "position": f"Image {pos + 1:,} of {len(order.ids):,}", "where": label_words.place(order, item_id, facts,
                                                                                           n_classes),
            "skipped": item_id in postponed, "audit": label_words.audit_marker(order) if item_id in order.audit else "",
            "note": note or "", "suggestion": None, "first": pos == 0, "last": pos == len(order.ids) - 1}
        offered = None
        if suggestion is not None:
            trust = self.facts(suggestion.round_id).trust
            sure = calibration.preselect(suggestion.confidence, trust)
            card["suggestion"] = {"label": suggestion.label, "sure": sure,
                                  "text": label_words.suggestion_sentence(suggestion, trust)}
            offered = None if item.label else suggestion.label  # Enter never overwrites a label
        state["card"] = card
        return Drawing("single", [item_id], pos=pos, shown_label=item.label, suggestion=offered, latest=latest)

    def _draw_grid(self, state: dict, order: labeling.LabelOrder, labeled: set[int], postponed: set[int]) -> Drawing:
        start = order.position(self.cursor) or 0 if self.cursor is not None else 0
        ids = labeling.page_of_unlabeled(order, labeled, postponed, start, GRID)
        latest = self.project.latest_action()
        if not ids:
            state["done"] = True
            return Drawing("grid", [], latest=latest)
        suggestions = self.project.suggestions(ids)
        sure: dict[int, str] = {}
        unsure: frozenset[int] = frozenset()
        why = ""
        if suggestions:
            trust = self.facts(next(iter(suggestions.values())).round_id).trust  # all from the queue's round
            sure, unsure = label_words.split(suggestions, trust)
            why = label_words.why_not(trust)
            state["grid_words"] = (f"Enter gives the {len(sure)} marked ✓ their suggestion ({trust.words()})"
                                   if sure else f"Enter accepts none of these suggestions ({why})")
        items = {it.id: it for it in self.project.items(ids)}
        state["tiles"] = [{"item_id": i, "path": shown_path(items[i].path, items[i].gold),
                           "src": self.picture(i, TILE)[0],
                           "suggestion": suggestions[i].label if i in suggestions else None,
                           "confidence": suggestions[i].confidence if i in suggestions else None,
                           "sure": i in sure} for i in ids]
        return Drawing("grid", ids, sure=sure, unsure=unsure, why_not=why, latest=latest)

    # -- pressing --------------------------------------------------------------------

    def press(self, token: str, action: str, index: int | None = None, ids: list[int] | None = None) -> None:
        """A key or a click on the drawing `token`: 'class' (with the class
        `index`; in the grid, the ticked tiles `ids`, none meaning the whole
        page), 'accept' (Enter), 'skip', 'undo', 'prev', 'next', 'grid',
        'single' (switch views) or 'refresh'. A press on a drawing that is
        too old, or naming something it did not show, writes nothing."""
        drawing = self._drawings.get(token)
        if action == "refresh":
            self.last = "refreshed from the project"
            return
        if action in ("grid", "single"):
            self.view = action
            return
        if drawing is None:
            self.error = "That press was made on a view this widget no longer knows; nothing was written."
            return
        try:
            if action == "undo":
                self._undo(drawing)
            elif drawing.view == "grid":
                self._press_grid(drawing, token, action, index, ids)
            else:
                self._press_single(drawing, token, action, index)
        except LabelConflict as err:
            self.error = self._conflict_words(err)
            if drawing.view == "single" and drawing.ids:
                self.cursor = drawing.ids[0]  # stay on it: pressing again replaces the other label
        except VaalError as err:  # an unknown class or item: said, nothing written
            self.error = str(err)

    def _press_single(self, d: Drawing, token: str, action: str, index: int | None) -> None:
        order = self.order()
        if action in ("prev", "next"):
            self.cursor = order.ids[min(max(d.pos + (1 if action == "next" else -1), 0), len(order.ids) - 1)]
            return
        if not d.ids:
            return  # everything labeled: only undo means something
        item_id = d.ids[0]
        if action == "skip":
            self.project.postpone(item_id, author=self.author, token=f"{token}-s")
            self.last = f"skipped {self._shown(item_id)}"
        elif action in ("class", "accept"):
            if action == "accept":
                if d.suggestion is None:
                    self.last = "nothing to accept: no suggestion for this image" + (
                        " (it has a label: press a class key to change it)" if d.shown_label else "")
                    return
                name, source, tag = d.suggestion, ACCEPTED, "a"
            else:
                name, source, tag = self._class(index), SOURCE, str(index)
            row = self.project.set_label(item_id, name, author=self.author, source=source, token=f"{token}-{tag}",
                                         seen={item_id: d.shown_label})
            if row is None:
                return  # the same press again: written once already
            self.last = f"{self._shown(item_id)} → {name}" + (" (accepted suggestion)" if action == "accept" else "")
        else:
            raise VaalError(f"unknown action {action!r}")
        self._advance(d.pos, item_id)

    def _press_grid(self, d: Drawing, token: str, action: str, index: int | None, ids: list[int] | None) -> None:
        if not d.ids:
            return
        chosen = d.ids if not ids else [i for i in ids if i in d.ids]  # none ticked: the whole page
        if not chosen:
            self.error = "None of the ticked images is on this page any more; nothing was written."
            return
        if action == "skip":
            self.project.postpone(d.ids, author=self.author, token=f"{token}-s")
            self.last = f"skipped {len(d.ids)} images"
            return
        if action == "class":
            name = self._class(index)
            pairs, source, tag = [(i, name) for i in chosen], SOURCE, str(index)
            words = f"{len(chosen)} images → {name}"
        elif action == "accept":
            pairs, source, tag = [(i, d.sure[i]) for i in chosen if i in d.sure], ACCEPTED, "a"
            left = label_words.left_words(chosen, d.sure, d.unsure, d.why_not)
            if not pairs:
                self.last = f"nothing labeled: {left or 'no suggestions on this page'}"
                return
            words = f"{len(pairs)} images labeled with their suggestions" + (f"; {left}" if left else "")
        else:
            raise VaalError(f"unknown action {action!r}")
        n = self.project.set_labels(pairs, author=self.author, source=source, token=f"{token}-{tag}",
                                    seen={i: None for i, _ in pairs})  # the grid shows unlabeled tiles only
        if n is not None:
            self.last = words

    def _undo(self, d: Drawing) -> None:
        if d.latest is None:  # the drawing showed nothing to undo: never an action made since, elsewhere
            self.last = ("nothing to undo" if self.project.latest_action() is None else
                         "nothing undone: labels were given since this view was drawn; press Z again")
            return
        done = self.project.undo(only=d.latest)
        if done is None:
            self.last = ("nothing to undo" if self.project.latest_action() is None else
                         "nothing undone: the last action changed since this view was drawn; press Z again")
            return
        if d.view == "single":
            self.cursor = done["item_id"]  # show the image whose label came back (the grid starts at its top)
        n = len(done["items"])
        what = "skip" if done["action"] == "skip" else "label" + ("s" if n > 1 else "")
        self.last = f"undid the {what} of {self._shown(done['item_id'])}" + (f" and {n - 1} more" if n > 1 else "")

    def _advance(self, pos: int, item_id: int) -> None:
        order = self.order()
        labeled = self.project.labeled_ids()
        postponed = self.project.postponed_ids() - ({item_id} if item_id in labeled else set())
        nxt = labeling.next_to_label(order, labeled, postponed, pos + 1)
        self.cursor = None if nxt is None else order.ids[nxt]

    def _class(self, index: int | None) -> str:
        classes = self.project.classes()
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(classes):
            raise VaalError(f"no class number {index!r}: this project has {len(classes)} classes")
        return classes[index]

    def _shown(self, item_id: int) -> str:
        item = self.project.item(item_id)
        return shown_path(item.path, item.gold)

    def _conflict_words(self, err: LabelConflict) -> str:
        item_id, _, label, seconds, source, token = err.changed[0]
        mine = (token or "").startswith(self.tab + "-")
        where = "in this widget" if mine else SOURCE_WORDS.get(source, f"({source})")
        what = f"was labeled {label}" if label else "was unlabeled"
        more = f" (and {len(err.changed) - 1} more)" if len(err.changed) > 1 else ""
        return (f"Not written: {self._shown(item_id)} {what} {where} {ago(seconds)}, after this widget showed "
                f"it{more}. Press the class again to replace it, or move on to keep it.")
