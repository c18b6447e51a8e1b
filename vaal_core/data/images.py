"""Images for display, by item id only.

The browser never names a file: pages ask for an item id, the store gives its
path relative to the project's image root, and the file is opened only if its
real path (symlinks resolved) is still inside that root, and served only if
its bytes are still the ones ingested (same SHA-1). When the original cannot
be shown (moved folder, deleted file, a link that now points outside, a file
replaced by another) the decoded copy from the cache is shown instead, with a
note saying why, so labeling never stops on a missing file and never shows an
image that is not the one labeled.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vaal_core.data.decode import SkipFile, read_file, to_rgb
from vaal_core.data.scan import inside
from vaal_core.store import Item, Project

# Bigger than any screen shows; the decode is cut down to it early (draft).
DISPLAY_MAX = 1024
MASK = "\u2022\u2022\u2022"  # "•••": a folder name that would give the hidden answer away


def shown_path(path: str, gold: str | None) -> str:
    """An item's path as the app may show it. A folder named like the
    item's hidden gold label is masked (`cat/0002.jpg` with gold "cat" ->
    `•••/0002.jpg`): a project whose answers came from class folders (a
    simulation folder opened as a project) would otherwise show the answer
    beside every image. The file name itself is kept: it is how a person
    finds the file."""
    if not gold:
        return path
    *folders, name = path.split("/")
    hidden = gold.casefold()
    return "/".join([MASK if part.casefold() == hidden else part for part in folders] + [name])


def fit(img: Image.Image, side: int) -> Image.Image:
    """The image scaled so its longer side is `side`: shrunk if larger,
    enlarged smoothly (Lanczos) if smaller, so tiny images (CIFAR's 32 px,
    the digits) show at a readable size as pictures, not as blocks."""
    if max(img.size) == side:
        return img
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def safe_path(project: Project, rel: str) -> Path | None:
    """The file of a stored relative path, if it is a file under the image
    root. `rel` comes from the store (the ingest's scan), never from the
    browser, and must stay inside the root lexically (absolute paths and
    '..' are refused) and really: a symlink is followed only while its
    target is inside the root, as the ingest's scan followed it (folders of
    links are a common way to build a data set)."""
    path = _lexical(project, rel)
    return path if path is not None and inside(project.image_root, path) else None


def _lexical(project: Project, rel: str) -> Path | None:
    """The file at `rel` under the root ('..' and absolute paths refused),
    links followed wherever they lead; None if there is no file."""
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
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
                "the small cached copies; put the folder back, or say where it is now (the Project page, "
                "init --images NEW --moved, or move_images in Python).")
    if not root.is_dir():
        return f"The image root {root} is not a folder any more."
    return None


def status_of(project: Project) -> dict:
    """`Project.status()` with `image_folder_problem` (the sentence above, or
    None): what `status --json` prints and `vc`'s `status()` returns."""
    return {**project.status(), "image_folder_problem": image_root_problem(project)}


def load_image(project: Project, item: Item, max_side: int = DISPLAY_MAX) -> tuple[Image.Image, str | None]:
    """(RGB image no larger than max_side, note) where note is None for the
    original file, or says why the cached copy is shown instead."""
    data, note = _ingested_bytes(project, item)
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale
                # The same conversion as the training decode: a 16-bit scan scaled, not
                # clipped to white; transparency on white, not on black.
                img = to_rgb(ImageOps.exif_transpose(img))
                img.thumbnail((max_side, max_side))
                return img, None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            note = f"{item.path} could not be read now ({type(err).__name__}); showing the cached copy"
    return cached_image(project, item), note


def _ingested_bytes(project: Project, item: Item) -> tuple[bytes | None, str | None]:
    """(the item's file's bytes, None) when it is inside the root and still
    the file ingested, else (None, why not)."""
    path = safe_path(project, item.path)
    if path is None:
        if _lexical(project, item.path) is not None:
            return None, (f"{item.path} now leads outside {project.image_root} (a symbolic link); "
                          "showing the cached copy")
        return None, f"{item.path} is not in {project.image_root} any more; showing the cached copy"
    try:
        data = read_file(path)
    except SkipFile as err:
        return None, f"{item.path} could not be read now ({err}); showing the cached copy"
    if hashlib.sha1(data).hexdigest() != _ingested_sha1(project, item.path):
        return None, (f"{item.path} has changed since it was ingested (another file is there now); "
                      "showing the cached copy of the ingested image")
    return data, None


# project root -> ((creation stamp, item count, highest id), {path: sha1}): the
# store's SHA-1 of every item, read again only when items come or go.
_SHA1S: dict[str, tuple[tuple, dict[str, str]]] = {}


def _ingested_sha1(project: Project, rel: str) -> str | None:
    stamp = (project.meta("created_at"), *project.item_count())
    memo = _SHA1S.get(str(project.root))
    if memo is None or memo[0] != stamp or rel not in memo[1]:
        _, by_sha1 = project.known_files()
        memo = (stamp, {path: sha1 for sha1, path in by_sha1.items()})
        _SHA1S[str(project.root)] = memo
    return memo[1].get(rel)


def cached_image(project: Project, item: Item) -> Image.Image:
    """The ingest's decoded square copy (image_size pixels)."""
    from vaal_core.data.cache import open_cache

    pixels = np.asarray(open_cache(project)[item.cache_index])
    return Image.fromarray(pixels.copy(), "RGB")
