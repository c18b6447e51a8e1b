"""The Label page's order and the image server's path checks, on a real
store and real files."""

from __future__ import annotations

import os

import numpy as np

from vaal_core.services import labeling
from vaal_core.data.images import load_image, safe_path
from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import make_subset, tiny_store


def _store(tmp_path, n: int = 8) -> Project:
    return tiny_store(tmp_path, ["a", "b"], n)


def test_order_before_any_round_is_a_fixed_shuffle(tmp_path):
    p = _store(tmp_path)
    order = labeling.label_order(p)
    assert sorted(order.ids) == list(range(1, 9)) and order.round_id is None and order.batch == 0
    assert order.ids != tuple(range(1, 9))  # not ingest (folder) order
    assert labeling.label_order(p).ids == order.ids  # the same after a refresh


def test_order_follows_pushes_then_batch_then_scores(tmp_path):
    p = _store(tmp_path)
    r = p.start_round("vaal", 2, 0, {})
    p.finish_round(r, [1, 2, 3, 4, 5, 6], [0.2, 0.9, 0.1, 0.8, 0.5, 0.3], [None, 1, None, 2, None, None], 0, {}, {})
    p.push_to_front([3])
    order = labeling.label_order(p)
    assert order.ids[:6] == (3, 2, 4, 5, 6, 1)  # pushed, batch by rank, rest by score
    assert set(order.ids[6:]) == {7, 8}  # not scored by the round: last
    assert order.batch == 3 and order.ranks == {2: 1, 4: 2} and order.pushed == {3}
    before = labeling.order_version(p)
    p.push_to_front([6])
    assert labeling.order_version(p) != before  # a push invalidates the cached order

def test_next_to_label_skips_labeled_and_skipped_then_wraps():
    order = labeling.LabelOrder((10, 11, 12, 13, 14), None, 0, {}, {}, frozenset())
    assert labeling.next_to_label(order, {10}, set(), 0) == 1
    assert labeling.next_to_label(order, {10}, {11}, 0) == 2
    assert labeling.next_to_label(order, set(), set(), 3) == 3
    assert labeling.next_to_label(order, {13, 14}, set(), 3) == 0  # wraps around
    assert labeling.next_to_label(order, {10, 12, 13, 14}, {11}, 0) == 1  # only a skipped one left
    assert labeling.next_to_label(order, {10, 11, 12, 13, 14}, set(), 0) is None
    assert labeling.page_of_unlabeled(order, {11}, {12}, 0, 3) == [10, 13, 14]
    assert labeling.page_of_unlabeled(order, {11}, {12}, 0, 10) == [10, 13, 14, 12]


def test_images_are_served_only_from_inside_the_image_root(cifar_root, tmp_path):
    images = make_subset(cifar_root, tmp_path / "images", per_class=2, classes=["cat", "dog"])
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((images / "cat" / sorted(os.listdir(images / "cat"))[0]).read_bytes())
    p, _, _ = init_project(tmp_path / "proj", images, ["cat", "dog"])
    assert safe_path(p, "../secret.jpg") is None  # outside, by '..'
    assert safe_path(p, "cat/../../secret.jpg") is None
    assert safe_path(p, "/etc/passwd") is None  # absolute
    assert safe_path(p, str(secret)) is None
    assert safe_path(p, "cat/none.jpg") is None  # not there
    ok = p.items()[0]
    assert safe_path(p, ok.path) == images / ok.path
    # a link inside the root is followed while its target stays inside; one that leads out is not,
    # nor a broken or looping one
    os.symlink(secret, images / "cat" / "link.jpg")
    assert safe_path(p, "cat/link.jpg") is None
    os.symlink(images / ok.path, images / "cat" / "link_in.jpg")
    assert safe_path(p, "cat/link_in.jpg") == images / "cat" / "link_in.jpg"
    os.symlink(images / "cat" / "loop.jpg", images / "cat" / "loop.jpg")
    assert safe_path(p, "cat/loop.jpg") is None
    img, note = load_image(p, ok)
    assert note is None and img.size == (32, 32) and img.mode == "RGB"
    # a file that disappears after ingest: the cached copy, with a note that says so
    (images / ok.path).unlink()
    img, note = load_image(p, ok)
    assert "cached copy" in note and img.size == (32, 32)
    cached = np.asarray(img)
    assert cached.std() > 0  # real pixels, not a blank placeholder
