"""What Explore's map is sent (maps/geometry.py), its thumbnails
(data/thumbs.py) and the VAE's reconstructions (learn/vaal.py,
maps/why.py), on a real project: real CIFAR JPEGs in a real SQLite store,
rounds written through the store as a round writes them.

The map's payload carries every point with the store's state (labels,
queue, pushed images, which round picked what, when each label was given
relative to the rounds), and nothing else: no path."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vaal_core.config import VAEConfig
from vaal_core.data.ingest import init_project
from vaal_core.data.thumbs import SIDE, Thumbnails
from vaal_core.learn import vaal
from vaal_core.learn.models import VAE
from vaal_core.maps import geometry, why
from vaal_core.maps.cache import Projection

from conftest import CLASSES, make_subset


def _round(project, batch: list[int], others: list[int]) -> int:
    """A finished round whose batch is `batch` (ranked in that order) and which also scored `others`."""
    time.sleep(0.01)  # the store's clock counts milliseconds: a label and a round start apart
    round_id = project.start_round("vaal", len(batch), 0, {})
    ids = batch + others
    scores = [1.0 - k / len(ids) for k in range(len(ids))]
    project.finish_round(round_id, ids, scores, [k + 1 for k in range(len(batch))] + [None] * len(others),
                         0, {}, {})
    time.sleep(0.01)
    return round_id


@pytest.fixture(scope="module")
def history(cifar_root, tmp_path_factory):
    """40 JPEGs; a label, round 1, a label, round 2, a label, a push."""
    tmp = tmp_path_factory.mktemp("geometry")
    project, _, _ = init_project(tmp / "p", make_subset(cifar_root, tmp / "photos", per_class=4), CLASSES)
    ids = [it.id for it in project.items()]
    project.set_label(ids[0], "cat")
    r1 = _round(project, ids[1:5], ids[5:30])
    project.set_label(ids[1], "dog")  # from round 1's batch
    r2 = _round(project, ids[5:9] + [ids[2]], ids[9:30])  # ids[2] picked again
    project.set_label(ids[5], "ship")
    project.push_to_front([ids[30]])
    xy = np.random.default_rng(0).normal(size=(len(ids) - 1, 2)).astype(np.float32)  # the last: added since
    return project, ids, (r1, r2), Projection(np.array(ids[:-1]), xy, r2, 0.0, True)


def test_the_payload_carries_every_point_and_the_stores_state(history):
    project, ids, (r1, r2), proj = history
    header, cols = geometry.decode(geometry.compressed(geometry.geometry(project, proj)))
    assert header["n"] == len(ids) - 1 and cols["ids"].tolist() == ids[:-1] and header["not_on_map"] == 1
    assert header["rounds"] == [r1, r2] and header["classes"] == project.classes()
    row = {i: k for k, i in enumerate(cols["ids"].tolist())}
    # current labels as class indexes
    labels = {i: header["classes"][c] for i, c in zip(cols["ids"].tolist(), cols["cls"].tolist()) if c >= 0}
    assert labels == project.labels() == {ids[0]: "cat", ids[1]: "dog", ids[5]: "ship"}
    # the first round whose batch held each image
    picked = {i: int(cols["picked"][row[i]]) for i in ids[:-1] if cols["picked"][row[i]] >= 0}
    assert picked == {**{i: 0 for i in ids[1:5]}, **{i: 1 for i in ids[5:9]}}
    # labels placed before or after each round by when they were first given
    shown = {i: int(cols["shown"][row[i]]) for i in labels}
    assert shown == {ids[0]: 0, ids[1]: 1, ids[5]: 2}
    assert (cols["shown"][[row[i] for i in ids[:-1] if i not in labels]] == -1).all()
    # the next batch: round 2's unlabeled picks; pushed: the pushed one
    nxt = {int(i) for i, f in zip(cols["ids"], cols["flags"]) if f & geometry.NEXT_BATCH}
    assert nxt == {q["item_id"] for q in project.queue()} == set(ids[6:9]) | {ids[2]}
    assert {int(i) for i, f in zip(cols["ids"], cols["flags"]) if f & geometry.PUSHED} == {ids[30]}
    # the current round's order as a percentile: its top 255, its last 1, the unscored 0
    order = [i for i, _, _ in project.round_order()]
    assert cols["score"][row[order[0]]] == 255 and cols["score"][row[order[-1]]] == 1
    assert (cols["score"][[row[i] for i in ids[30:-1]]] == 0).all()
    assert np.all(np.diff(cols["score"][[row[i] for i in order]].astype(int)) <= 0)
    # no discriminator file for this round: none drawn
    assert (cols["disc"] == geometry.NO_DISC).all()
    # the layout: x, y kept in order to 1/65535 of their range
    x = proj.xy[:, 0]
    assert np.allclose(cols["x"] / 65535, (x - x.min()) / (x.max() - x.min()), atol=1e-4)


def test_the_payload_holds_no_path_and_stays_small():
    n = 50_000
    rng = np.random.default_rng(1)
    g = geometry.Geometry({"ids": np.arange(n), "x": rng.integers(0, 65535, n), "y": rng.integers(0, 65535, n),
                           "cls": rng.integers(-1, 10, n), "picked": np.full(n, -1), "shown": np.full(n, -1),
                           "score": rng.integers(0, 256, n), "disc": rng.integers(0, 255, n),
                           "flags": np.zeros(n)}, [f"c{k}" for k in range(10)], [1], 1, 0)
    raw, packed = geometry.encode(g), geometry.compressed(g)
    assert len(raw) < 17 * n + 2_000 and len(packed) < 1_500_000  # the ceiling at 50,000 points
    header, cols = geometry.decode(raw)
    assert set(header) == {"n", "round_id", "rounds", "classes", "not_on_map", "columns"}
    assert all(np.array_equal(cols[k], np.asarray(g.columns[k]).astype(cols[k].dtype)) for k in cols)


def test_thumbnails_are_this_projects_cached_images_by_id(history):
    project, ids, _, _ = history
    thumbs = Thumbnails(project)
    jpeg = thumbs.jpeg(ids[3])
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (SIDE, SIDE)
    cached = Image.fromarray(np.asarray(_cache_row(project, ids[3]))).resize((SIDE, SIDE))
    assert np.abs(np.asarray(img, dtype=int) - np.asarray(cached, dtype=int)).mean() < 8  # that image, JPEG'd
    assert thumbs.jpeg(max(ids) + 1000) is None and thumbs.jpeg(-1) is None
    assert thumbs.jpeg(ids[3]) is jpeg  # made once


def _cache_row(project, item_id):
    from vaal_core.data.cache import open_cache
    return open_cache(project)[project.item(item_id).cache_index]


def test_the_vae_reconstruction_is_read_back_for_the_batch_only(tmp_path):
    cfg = VAEConfig(image_size=32, latent_dim=8, width=8)
    torch.manual_seed(0)
    model = VAE(cfg)
    state = {"vae": model.state_dict(), "vae_config": {**cfg.__dict__}}
    torch.save(state, tmp_path / "vaal.pt")
    loaded = torch.load(tmp_path / "vaal.pt", weights_only=True)
    latents = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    images = vaal.reconstruct(loaded, latents, batch_size=2)
    model.eval()
    with torch.no_grad():
        expect = ((model.decode(torch.from_numpy(latents)).clamp(-1, 1) + 1) * 127.5).round()
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, expect.to(torch.uint8).permute(0, 2, 3, 1).numpy())
    np.save(tmp_path / "recon_ids.npy", np.array([11, 12, 13, 14, 15]))
    np.save(tmp_path / "recon.npy", images)
    assert np.array_equal(why.reconstruction(tmp_path, 13), images[2])
    assert why.reconstruction(tmp_path, 99) is None  # not in the batch
    (tmp_path / "recon.npy").write_bytes(b"half a file")  # a round killed while writing it
    assert why.reconstruction(tmp_path, 13) is None


def test_the_demo_picks_map_replays_round_by_round():
    """The Demo's picks map opens on the whole run; frame r shows the picks
    of rounds 0..r and nothing later (the play button and slider run them)."""
    from vaal_core.loop.chart import picks_figure

    rng = np.random.default_rng(0)
    when = rng.integers(-1, 4, 300)  # rounds 0 (the initial set) to 3, -1 never
    fig = picks_figure(rng.normal(size=(300, 2)), rng.integers(0, 3, 300), ["a", "<b>b", "c"], when)
    assert [f.name for f in fig.frames] == ["initial set", "round 1", "round 2", "round 3"]
    assert [len(t.x) for t in fig.data] == [int((when < 0).sum())] + [int((when == r).sum()) for r in range(4)]
    for r, frame in enumerate(fig.frames):
        assert len(frame.data[0].x) == int(((when < 0) | (when > r)).sum())
        assert [len(t.x) for t in frame.data[1:]] == [int((when == k).sum()) if k <= r else 0 for k in range(4)]
    assert fig.layout.sliders[0].active == 3 and fig.layout.updatemenus[0].buttons[0].method == "animate"
    assert all("<b>" not in h for t in fig.data for h in t.hovertext)  # names escaped for Plotly
