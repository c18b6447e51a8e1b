"""`vc.LatentMap(p)`: a round's latent map in a notebook, drawn by
jupyter-scatter (an anywidget on regl-scatterplot: every point, pan and
zoom, lasso), coloured by labeled / class / the discriminator's score, the
next batch drawn larger, each image's thumbnail on hover; what is selected
on it is readable from Python and can be labeled or pushed to the front of
the queue.

The map is the one the app's Explore page draws (`maps.cache`: the round's
latents in 2-D, computed once and kept in the round's folder; the first
call for a round runs UMAP, seconds to a minute). Labels and the queue are
read live from the store by `refresh()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vaal_core.data.images import cached_image
from vaal_core.errors import BadInput
from vaal_core.maps import palette
from vaal_core.maps.explore import latent_map, latent_rounds
from vaal_core.notebook.labeler import project_of
from vaal_core.notebook.session import SOURCE, jpeg_data_url

if TYPE_CHECKING:
    import pandas as pd

COLOR_BY = ("labeled", "class", "score")
THUMBNAILS_UP_TO = 20_000  # past this, hover shows the path only (each thumbnail is ~1.5 kB sent once)
WIDTH = 760  # px, the map's canvas (its height is LatentMap's `height`)
THUMB = 48  # px, the hover card's image (the decoded cache's copy, scaled)
STATES = ("unlabeled", "labeled", "next batch")
STATE_COLORS = {"unlabeled": palette.UNLABELED_COLOR, "labeled": palette.LABELED_COLOR, "next batch": "#E8590C"}


class LatentMap:
    """A round's latent map (the latest round that kept latents, or
    `round_id`), every image a point.

        >>> m = vc.LatentMap(p)                 # show it: the last line of a cell
        >>> m = vc.LatentMap(p, color_by="class")
        >>> m.selection                         # item ids lassoed on the map (shift + drag)
        >>> m.selected()                        # the same as a DataFrame: item_id, path, label, state, score
        >>> m.label_selection("cat")            # one transaction, one undoable action
        >>> m.push_selection()                  # to the front of the Label queue (app and vc.Labeler)

    `color_by`: 'labeled' (labeled / unlabeled / next batch), 'class' (the
    app's class palette; unlabeled grey) or 'score' (the round's
    discriminator P(labeled): VAAL's picks are the lowest). `thumbnails`:
    each image on hover (default: up to 20,000 points)."""

    def __init__(self, project: Any, *, color_by: str = "labeled", round_id: int | None = None,
                 thumbnails: bool | None = None, height: int = 480, progress: bool = True):
        from vaal_core.maps.cache import round_projection
        from vaal_core.progress_bars import phase_bars

        if color_by not in COLOR_BY:
            raise BadInput(f"color_by must be one of {', '.join(COLOR_BY)}, not {color_by!r}")
        self.project = project_of(project)
        rounds = latent_rounds(self.project)
        if round_id is None:
            if not rounds:
                raise BadInput("no round has kept latents yet: train one first (p.round(sampler='vaal', ...))")
            round_id = rounds[-1]
        elif round_id not in rounds:
            raise BadInput(f"round {round_id} kept no latents; rounds with a map: "
                           f"{', '.join(map(str, rounds)) or 'none'}")
        with phase_bars(progress) as show:
            self.projection = round_projection(self.project, round_id, progress=show)
        self.round_id, self.color_by, self.height = round_id, color_by, height
        self.thumbnails = thumbnails if thumbnails is not None else len(self.projection.item_ids) <= THUMBNAILS_UP_TO
        self.frame = self._frame()
        if color_by == "score" and self.frame["score"].isna().all():
            raise BadInput(f"round {round_id} kept no discriminator score (its sampler ranked without one, or "
                           "nothing was labeled yet); use color_by='labeled' or 'class'")
        self.scatter = self._scatter()

    # -- the data ---------------------------------------------------------------------

    def _frame(self, thumbnails: bool = True) -> "pd.DataFrame":
        import pandas as pd

        m = latent_map(self.project, self.projection)
        labeled = m.labeled
        state = np.where(labeled, "labeled", np.where(m.queued, "next batch", "unlabeled"))
        classes = self.project.classes()
        frame = pd.DataFrame({
            "x": m.xy[:, 0].astype(np.float32), "y": m.xy[:, 1].astype(np.float32),
            "item_id": m.ids.astype(np.int64), "path": m.paths,
            # a class, or for an unlabeled image whether it is in the next batch: the "class" colouring
            "label": pd.Categorical([lab or ("next batch" if q else "unlabeled") for lab, q in zip(m.labels, m.queued)],
                                    categories=[*classes, "next batch", "unlabeled"]),
            "state": pd.Categorical(state, categories=list(STATES)),
            "score": (m.disc_prob if m.disc_prob is not None else np.full(len(m.ids), np.nan)).astype(np.float32),
        })
        if self.thumbnails and thumbnails:
            frame["thumbnail"] = [self._thumbnail(int(i)) for i in m.ids]
        frame.attrs.update(round=self.round_id, not_on_map=m.not_on_map)
        return frame

    def _thumbnail(self, item_id: int) -> str:
        img = cached_image(self.project, self.project.item(item_id))  # the decoded cache: no file reads
        return jpeg_data_url(img.resize((THUMB, THUMB)), quality=80)

    def _encoding(self) -> dict[str, Any]:
        if self.color_by == "score":
            return {"color_by": "score", "color_map": "viridis"}
        if self.color_by == "labeled":
            by, colors = "state", STATE_COLORS
        else:
            by = "label"
            colors = {**palette.class_colors(self.project.classes()), "next batch": STATE_COLORS["next batch"],
                      "unlabeled": palette.UNLABELED_COLOR}
        # Only the values present: jupyter-scatter lists a dict's colours in its order against its own
        # codes of the values present, so a colour for an absent class shifts every one after it.
        present = set(self.frame[by].astype(str))
        return {"color_by": by, "color_map": {c: colors[c] for c in colors if c in present}}

    def _scatter(self):
        import jscatter

        tooltip = ["path", "label", "state"] + (["score"] if self.frame["score"].notna().any() else [])
        scatter = jscatter.Scatter(
            data=self.frame, x="x", y="y", **self._encoding(),
            size=5, opacity=0.85, legend=True, height=self.height,
            tooltip=True, tooltip_properties=tooltip, axes=False,
            **({"tooltip_preview": "thumbnail", "tooltip_preview_type": "image",
                "tooltip_preview_image_size": "contain", "tooltip_preview_image_height": 96}
               if self.thumbnails else {}))
        # Every point in view: jupyter-scatter scales the map to [-1, 1] on both axes; with the
        # canvas' width left to the notebook, its camera cut the top and bottom off a wide map.
        # A fixed width and the camera drawn back a little show it all (measured in Chromium).
        scatter.width(WIDTH)
        scatter.camera(distance=1.1)
        return scatter

    @property
    def widget(self):
        """The jupyter-scatter widget (what the notebook shows)."""
        return self.scatter.widget

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.scatter.widget._repr_mimebundle_(**kwargs)

    def show(self):
        return self.scatter.show()

    def __repr__(self) -> str:
        return (f"<vaal_core latent map of round {self.round_id}: {len(self.frame):,} images, "
                f"{len(self.selection):,} selected>")

    # -- the selection ------------------------------------------------------------------

    @property
    def selection(self) -> list[int]:
        """Item ids of the points selected on the map (shift + drag lassoes;
        a click picks one), in the map's order."""
        rows = np.asarray(self.scatter.selection(), dtype=np.int64)
        return self.frame["item_id"].to_numpy()[rows].tolist() if len(rows) else []

    @selection.setter
    def selection(self, item_ids: list[int] | None) -> None:
        wanted = set(int(i) for i in (item_ids or []))
        rows = np.flatnonzero(self.frame["item_id"].isin(wanted).to_numpy())
        self.scatter.selection(rows.tolist() if len(rows) else None)

    def selected(self) -> "pd.DataFrame":
        """The selected points: item_id, path, label, state, score."""
        ids = set(self.selection)
        cols = ["item_id", "path", "label", "state", "score"]
        return self.frame.loc[self.frame["item_id"].isin(ids), cols].reset_index(drop=True)

    def label_selection(self, label: str, *, author: str = "user") -> int:
        """Give every selected image `label` in one transaction and one
        undoable action (Z on the Label page or in vc.Labeler undoes it);
        returns how many changed. An unknown class writes nothing."""
        ids = self.selection
        if not ids:
            raise BadInput("nothing is selected on the map: lasso points first (shift + drag)")
        changed = self.project.set_labels([(i, label) for i in ids], author=author, source=SOURCE)
        self.refresh()
        return changed or 0

    def push_selection(self) -> int:
        """Put the selected images at the front of the labeling order (the
        app's Label page and vc.Labeler show them next); returns how many."""
        ids = self.selection
        if not ids:
            raise BadInput("nothing is selected on the map: lasso points first (shift + drag)")
        return self.project.push_to_front(ids)

    def refresh(self) -> None:
        """Recolour from the store's labels and queue now (the points stay
        where they are; the selection is kept)."""
        kept = self.selection
        new = self._frame(thumbnails=False)  # the images do not change: only what colours them
        for col in ("label", "state", "score"):  # in place: jupyter-scatter holds this frame
            self.frame[col] = new[col]  # categorical stays categorical: jupyter-scatter's colour codes follow it
        enc = self._encoding()
        self.scatter.color(by=enc["color_by"], map=enc["color_map"])
        self.selection = kept
