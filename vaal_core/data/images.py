"""Images for display, by item id only.

The browser never names a file: pages ask for an item id, the store gives its
path relative to the project's image root, and the file is opened only if its
real path (symlinks resolved) is still inside that root. When the original
cannot be shown (moved folder, deleted file, a link that now points outside)
the decoded copy from the cache is shown instead, with a note saying why, so
labeling never stops on a missing file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vaal_core.store import Item, Project

# Bigger than any screen shows; the decode is cut down to it early (draft).
DISPLAY_MAX = 1024


def safe_path(project: Project, rel: str) -> Path | None:
    """The file of a stored relative path, if it is a file under the image
    root. `rel` comes from the store (the ingest's scan), never from the
    browser, and must stay inside the root lexically: absolute paths and
    '..' are refused. A symlink that lives inside the root is followed, as
    the ingest's scan followed it (folders of links are a common way to
    build a data set); what is served is only ever decoded as an image."""
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or ".." in parts:
        return None
    path = project.image_root / rel
    try:
        return path if path.is_file() else None  # follows links; False for loops and broken links
    except OSError:
        return None


def image_root_problem(project: Project) -> str | None:
    """A sentence for the user when the image folder is gone, else None."""
    root = project.image_root
    if not root.exists():
        return (f"The image folder {root} is missing (moved, renamed or unmounted). Labeling goes on with "
                f"the small cached copies; put the folder back, or re-create the project from its new place.")
    if not root.is_dir():
        return f"The image root {root} is not a folder any more."
    return None


def load_image(project: Project, item: Item, max_side: int = DISPLAY_MAX) -> tuple[Image.Image, str | None]:
    """(RGB image no larger than max_side, note) where note is None for the
    original file, or says why the cached copy is shown instead."""
    path = safe_path(project, item.path)
    if path is not None:
        try:
            with Image.open(path) as img:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
                img = ImageOps.exif_transpose(img).convert("RGB")
                img.thumbnail((max_side, max_side))
                return img, None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            note = f"{item.path} could not be read now ({type(err).__name__}); showing the cached copy"
    else:
        note = f"{item.path} is not in {project.image_root} any more; showing the cached copy"
    return cached_image(project, item), note


def cached_image(project: Project, item: Item) -> Image.Image:
    """The ingest's decoded square copy (image_size pixels)."""
    from vaal_core.data.cache import open_cache

    pixels = np.asarray(open_cache(project)[item.cache_index])
    return Image.fromarray(pixels.copy(), "RGB")
