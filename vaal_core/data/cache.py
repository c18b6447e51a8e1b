"""The decoded image cache: every item's pixels, decoded, converted to RGB
and resized to S x S exactly once, in a raw uint8 file of the project
(`cache/images_<S>.u8`), row `item.cache_index` = S*S*3 bytes.

Training reads images thousands of times, so it reads them from here, as a
read-only memory map shared through the OS page cache, never from the
original files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaal_core.errors import VaalError
from vaal_core.store import Project


def cache_path(project: Project) -> Path:
    return project.cache_dir / f"images_{project.image_size}.u8"


def ingest_lock_path(project: Project) -> Path:
    """Held while an ingest writes the cache: one ingest of a project at a time."""
    return project.cache_dir / "ingest.lock"


def open_cache(project: Project) -> np.ndarray:
    """The decoded images, row = item.cache_index, as a read-only memmap so
    that training processes share the OS page cache instead of copies."""
    size, rows = project.image_size, project.cache_rows()
    shape = (rows, size, size, 3)
    path = cache_path(project)
    have = path.stat().st_size if path.is_file() else 0
    if have < rows * size * size * 3:
        raise VaalError(
            f"the image cache {path} is missing or incomplete ({have // (size * size * 3)} of "
            f"{rows} images); rebuild it with: "
            f"python -m vaal_core init {project.root} --images {project.image_root}")
    if rows == 0:  # mmap cannot map an empty file
        empty = np.zeros(shape, dtype=np.uint8)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
