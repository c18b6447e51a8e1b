"""`vc.Labeler(p)`: label a project's queue in a notebook (an anywidget).

The image large, the class buttons with their keys, the task model's
suggestion (Enter accepts it), skip, undo, previous / next, and a grid mode.
Keys work while the widget has focus (click it): 1-9 and 0 for the classes,
Enter, S, Z, the arrow keys, G for the grid and V for the single view.

What it does lives in `session.LabelSession` (the Label page's walk and
rules, no Jupyter); this module only carries its drawings to the browser
(the `state` trait) and the presses back (custom messages carrying the
drawing's token). Every press is written to the project's store at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from vaal_core.notebook.session import SIDE, LabelSession
from vaal_core.store import Project

HERE = Path(__file__).parent


def project_of(p: Any) -> Project:
    """A ProjectHandle (vc.open_project), a store Project, or a project's
    name or path."""
    from vaal_core.api import ProjectHandle, open_project

    if isinstance(p, ProjectHandle):
        return p.project
    if isinstance(p, Project):
        return p
    if isinstance(p, (str, os.PathLike)):
        return open_project(p).project
    from vaal_core.errors import BadInput

    raise BadInput(f"give a project (vc.open_project(...)), its name or its path, not {type(p).__name__}")


class Labeler(anywidget.AnyWidget):
    """Label the project's queue, keyboard first; every label is written to
    the store at once (the app sees it; a kernel restart loses nothing).

        >>> lab = vc.Labeler(p)            # show it: the last line of a cell
        >>> lab                            # click it, then 1-9/0, Enter, S, Z, ←/→, G (grid)
        >>> vc.Labeler(p, view="grid")     # 12 at a time: tick tiles, press a class key

    `author` is recorded with every label. `.last` says what the last
    press did; `.refresh()` redraws from the store (after labels given
    elsewhere)."""

    _esm = HERE / "labeler.js"
    _css = HERE / "labeler.css"
    state = traitlets.Dict().tag(sync=True)

    def __init__(self, project: Any, *, view: str = "single", author: str = "user", side: int = SIDE, **kwargs):
        super().__init__(**kwargs)
        self.session = LabelSession(project_of(project), view=view, author=author, side=side)
        self.on_msg(self._on_message)
        self.state = self.session.draw()

    @property
    def last(self) -> str:
        return self.session.last

    def refresh(self) -> None:
        self.state = self.session.draw()

    def press(self, action: str, index: int | None = None, ids: list[int] | None = None) -> None:
        """Press a key from Python on what is shown now (what the widget's
        buttons do): press("class", 0) gives the first class."""
        self.session.press(self.state["token"], action, index, ids)
        self.state = self.session.draw()

    def _on_message(self, _widget: Any, content: Any, _buffers: list) -> None:
        """A press from the browser: {type: "press", token, action, index?, ids?}. Anything else
        (a malformed message) writes nothing."""
        if not isinstance(content, dict) or content.get("type") != "press":
            return
        index, ids = content.get("index"), content.get("ids")
        if (index is not None and (not isinstance(index, int) or isinstance(index, bool))) or (
                ids is not None and (not isinstance(ids, list)
                                     or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids))):
            self.session.error = "That press was not understood; nothing was written."
        else:
            self.session.press(str(content.get("token")), str(content.get("action")), index, ids)
        self.state = self.session.draw()
