"""What the pages show of an item: its path with any folder that would give
the hidden answer away masked (`shown_path`), and its picture at the size
asked for, small images enlarged smoothly (`fit`, `views.common.picture`)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaal_core.data.images import MASK, fit, shown_path


@pytest.mark.parametrize("path, gold, shown", [
    ("cat/0002.jpg", "cat", "•••/0002.jpg"),  # a class folder, as a simulation folder holds
    ("train/cat/0002.jpg", "cat", "train/•••/0002.jpg"),  # deeper: only the folder named like the answer
    ("cat/cat/0002.jpg", "cat", "•••/•••/0002.jpg"),
    ("Cat/0002.jpg", "cat", "•••/0002.jpg"),  # case does not hide the answer either
    ("2/0002.png", "2", "•••/0002.png"),  # the older digits demo
    ("cat/0002.jpg", None, "cat/0002.jpg"),  # no hidden answer: nothing to hide
    ("cat/0002.jpg", "", "cat/0002.jpg"),
    ("cat/0002.jpg", "dog", "cat/0002.jpg"),  # another folder says nothing of this answer
    ("cats/0002.jpg", "cat", "cats/0002.jpg"),  # whole folder names only
    ("0421.png", "3", "0421.png"),  # the digits demo: neutral names, shown as they are
    ("cat.jpg", "cat", "cat.jpg"),  # the file name is how a person finds the file: kept
    ("a b/ü [x]/7.jpg", "ü [x]", "a b/•••/7.jpg"),
])
def test_shown_path_masks_a_folder_named_like_the_answer(path, gold, shown):
    assert shown_path(path, gold) == shown
    assert MASK == "•••"


def _digit() -> Image.Image:
    """A 32 px dark-on-white digit, as the demo writes them."""
    from sklearn.datasets import load_digits

    from vaal_core.data.digits import digit_image

    return digit_image(load_digits().images[0]).resize((32, 32), Image.Resampling.BOX).convert("RGB")


def test_fit_enlarges_small_images_smoothly_to_the_size_asked():
    small = _digit()
    big = fit(small, 448)
    assert big.size == (448, 448)
    pixels = np.asarray(big.convert("L"))
    blocky = np.asarray(small.convert("L").resize((448, 448), Image.Resampling.NEAREST))
    # smooth: many grey levels and soft edges, not 14x14 blocks of one grey
    assert len(np.unique(pixels)) > len(np.unique(blocky))
    rows = np.abs(np.diff(pixels.astype(int), axis=1))
    assert rows.max() < np.abs(np.diff(blocky.astype(int), axis=1)).max()
    assert np.count_nonzero(rows) > 3 * np.count_nonzero(np.diff(blocky.astype(int), axis=1))
    # the same picture: shrunk back, it is the original within a few grey levels
    back = np.asarray(big.convert("L").resize((32, 32), Image.Resampling.BOX)).astype(int)
    assert np.abs(back - np.asarray(small.convert("L")).astype(int)).mean() < 4


@pytest.mark.parametrize("size, side, expected", [
    ((32, 32), 160, (160, 160)),
    ((40, 20), 320, (320, 160)),  # the aspect ratio is kept
    ((2000, 1000), 448, (448, 224)),  # larger ones are shrunk
    ((448, 300), 448, (448, 300)),  # already the size: the same image
    ((1, 1), 128, (128, 128)),
])
def test_fit_sizes(size, side, expected):
    img = Image.new("RGB", size, (10, 20, 30))
    out = fit(img, side)
    assert out.size == expected
    if size == expected:
        assert out is img
