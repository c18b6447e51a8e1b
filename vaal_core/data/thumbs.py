"""Small JPEG thumbnails by item id, from the project's decoded cache: what
the Explore map shows under the pointer.

Made from the memory-mapped cache row (`data.cache`), never from a path the
browser sends: a request names a project id and an item id, and an item id
that is not that project's is refused. Encoding a cached row takes well
under a millisecond (a 32-96 px JPEG), so thumbnails are made on request and
the few thousand most recent kept in memory; the browser caches them too.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from vaal_core.data.cache import open_cache
from vaal_core.store import Project

SIDE = 96  # px: the hover card's picture
KEEP = 4096  # thumbnails kept in memory per server


class Thumbnails:
    """One project's thumbnails: `jpeg(item_id)` -> bytes, or None for an
    id that is not one of this project's present items."""

    def __init__(self, project: Project, side: int = SIDE):
        self.project, self.side = project, side
        self._rows: dict[int, int] | None = None
        self._cache: np.ndarray | None = None
        self._made: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _row(self, item_id: int) -> int | None:
        if self._rows is None or item_id not in self._rows:  # first use, or items added since
            self._rows = {it.id: it.cache_index for it in self.project.items()}
            self._cache = open_cache(self.project)
        return self._rows.get(item_id)

    def jpeg(self, item_id: int) -> bytes | None:
        with self._lock:
            if item_id in self._made:
                self._made.move_to_end(item_id)
                return self._made[item_id]
            row = self._row(item_id)
            if row is None:
                return None
            pixels = np.asarray(self._cache[row])
        img = Image.fromarray(pixels.copy(), "RGB")
        if img.size[0] != self.side:
            img = img.resize((self.side, self.side), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85)
        data = out.getvalue()
        with self._lock:
            self._made[item_id] = data
            while len(self._made) > KEEP:
                self._made.popitem(last=False)
        return data
