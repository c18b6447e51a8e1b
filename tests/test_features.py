"""The feature space: SimCLR on a project's own images (trained, kept,
warm-started, reused), k-means patch features (`--fast`'s space), ImageNet backbones from weights the test saves
itself (no download), and the round that records which space it used."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vaal_core.config import feature_config
from vaal_core.errors import BadInput
from vaal_core.learn import features
from vaal_core.learn.features import feature_space, load_imagenet_backbone, nt_xent, two_views

CPU = torch.device("cpu")
TINY = dataclasses.replace(feature_config(fast=True), method="simclr", width=8, batch_size=64, epochs_fresh=2.0, epochs_warm=1.0,
                           min_steps=8)


@pytest.fixture(scope="module")
def digits():
    """The 8x8 digits as 32x32 RGB uint8 images, and their classes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    img = torch.nn.functional.interpolate(img, size=32, mode="bilinear").clamp(0, 1)
    rgb = (img.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    return rgb[:600], d.target[:600]


def test_two_views_differ_per_image_and_stay_in_range():
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    a, b = two_views(x, gen, 0.2), two_views(x, gen, 0.2)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, b)  # two draws, two views
    same = x[:1].expand(16, -1, -1, -1)
    views = two_views(same, torch.Generator().manual_seed(1), 0.2)
    assert (views[1:] - views[:1]).abs().flatten(1).max(1).values.min() > 0.01  # each image its own crop


def test_nt_xent_rewards_finding_the_partner_view():
    z = torch.randn(32, 8)
    matched = nt_xent(z, z + 0.01 * torch.randn_like(z), 0.5)
    shuffled = nt_xent(z, z[torch.randperm(32)], 0.5)
    assert matched < shuffled


def _knn_accuracy(embed: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    sim = embed @ embed.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, 1)[:, :k]
    votes = np.apply_along_axis(lambda r: np.bincount(r, minlength=10).argmax(), 1, y[nearest])
    return float((votes == y).mean())


@pytest.mark.slow
def test_simclr_space_has_class_meaning_and_is_kept_and_reused(digits):
    images, y = digits
    rows, ids = np.arange(len(images)), np.arange(len(images), dtype=np.int64) + 7
    cfg = dataclasses.replace(TINY, epochs_fresh=8.0)
    space = feature_space(images, rows, ids, cfg, CPU, previous=None)
    assert space.embed.shape == (len(images), 64) and space.info["source"] == "simclr"
    assert np.allclose(np.linalg.norm(space.embed, axis=1), 1, atol=1e-5)
    # neighbours in the space share their digit far above chance (0.1), and the views learned to
    # find each other: the loss fell well below chance, ln(2B - 1)
    assert _knn_accuracy(space.embed, y) > 0.6
    assert space.info["last_loss"] < np.log(2 * cfg.batch_size - 1) - 0.5
    # the same images: reused as they are, no training
    again = feature_space(images, rows, ids, cfg, CPU, previous=space.state)
    assert again.info["reused"] and np.array_equal(again.embed, space.embed)
    # images added: warm-started from the kept network for epochs_warm
    more = feature_space(images, np.arange(len(images)), ids + (ids >= 500) * 1000, cfg, CPU, previous=space.state)
    assert more.info["warm_start"] and more.info["epochs"] == cfg.epochs_warm and not more.info.get("reused")
    # another configuration: a fresh start, never a mismatched network
    other = feature_space(images, rows, ids, dataclasses.replace(cfg, proj_dim=32), CPU, previous=space.state)
    assert not other.info["warm_start"]


def test_fast_space_is_patch_features():
    assert feature_config(fast=True).method == "patches" and feature_config().method == "simclr"


def test_patch_space_has_class_meaning_and_is_kept_reused_and_warm(digits):
    """No label read, yet neighbours share their digit: well above raw
    pixels' neighbours; the same images reuse the embeddings, added images
    keep the centroids, another configuration starts afresh."""
    images, y = digits
    rows, ids = np.arange(len(images)), np.arange(len(images), dtype=np.int64) + 7
    cfg = dataclasses.replace(feature_config(fast=True), patch_clusters=64, patch_dims=32)
    space = feature_space(images, rows, ids, cfg, CPU, previous=None)
    assert space.embed.shape == (len(images), 32) and space.info["source"] == "patches"
    assert space.info["centroids"] == 64 and not space.info["warm_start"]
    assert np.allclose(np.linalg.norm(space.embed, axis=1), 1, atol=1e-5)
    assert _knn_accuracy(space.embed, y) > 0.8
    # deterministic: the space belongs to the images and the seed
    assert np.array_equal(feature_space(images, rows, ids, cfg, CPU, previous=None).embed, space.embed)
    again = feature_space(images, rows, ids, cfg, CPU, previous=space.state)
    assert again.info["reused"] and np.array_equal(again.embed, space.embed)
    more = feature_space(images, rows, ids + (ids >= 500) * 1000, cfg, CPU, previous=space.state)
    assert more.info["warm_start"] and not more.info.get("reused")
    assert torch.equal(more.state["net"]["centroids"], space.state["net"]["centroids"])
    other = feature_space(images, rows, ids, dataclasses.replace(cfg, patch_dims=16), CPU, previous=space.state)
    assert not other.info["warm_start"] and other.embed.shape[1] == 16


def _pixels(images: np.ndarray) -> np.ndarray:
    x = images.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.slow
def test_patch_space_beats_raw_pixels_on_real_photos(cifar_root):
    """On CIFAR-10 JPEGs (1,000, 100 a class) an image's neighbours share its
    class far more often in the patch space than on raw pixels: the reason
    it is `--fast`'s space (bench/features.py measures the 8,000-image pool)."""
    from PIL import Image

    images, y = [], []
    for c, folder in enumerate(sorted((cifar_root / "train").iterdir())):
        for f in sorted(folder.iterdir())[:100]:
            with Image.open(f) as im:
                images.append(np.asarray(im.convert("RGB")))
            y.append(c)
    images, y = np.stack(images), np.asarray(y)
    cfg = dataclasses.replace(feature_config(fast=True), patch_clusters=200, patch_dims=32)
    space = feature_space(images, np.arange(len(y)), np.arange(len(y), dtype=np.int64), cfg, CPU, None)
    ours, pixels = _knn_accuracy(space.embed, y), _knn_accuracy(_pixels(images), y)
    assert ours > pixels + 0.05, (ours, pixels)


def test_patch_space_of_larger_images_and_a_cancelled_one(digits):
    """Images of another size are brought to the recipe's 32 px first; a
    cancel between batches stops it in words."""
    from vaal_core.errors import RoundCancelled

    images, _ = digits
    big = np.repeat(np.repeat(images[:300], 2, axis=1), 2, axis=2)  # 64 px
    cfg = dataclasses.replace(feature_config(fast=True), patch_clusters=32, patch_dims=16)
    space = feature_space(big, np.arange(300), np.arange(300, dtype=np.int64), cfg, CPU, None)
    assert space.embed.shape == (300, 16) and space.info["source"] == "patches"
    with pytest.raises(RoundCancelled, match="feature space"):
        feature_space(big, np.arange(300), np.arange(300, dtype=np.int64), cfg, CPU, None,
                      should_stop=lambda: True)


def test_checkpoint_state_loads_with_weights_only(digits, tmp_path):
    from vaal_core.learn.checkpoints import CheckpointDir

    images, _ = digits
    space = feature_space(images[:100], np.arange(100), np.arange(100, dtype=np.int64), TINY, CPU, None)
    store = CheckpointDir(tmp_path)
    store.save("features", space.state)
    again = feature_space(images[:100], np.arange(100), np.arange(100, dtype=np.int64), TINY, CPU,
                          store.load("features"))
    assert again.info["reused"] and np.allclose(again.embed, space.embed)
    patches = dataclasses.replace(feature_config(fast=True), patch_clusters=16, patch_dims=8)
    space = feature_space(images[:100], np.arange(100), np.arange(100, dtype=np.int64), patches, CPU, None)
    store.save("features", space.state)
    again = feature_space(images[:100], np.arange(100), np.arange(100, dtype=np.int64), patches, CPU,
                          store.load("features"))
    assert again.info["reused"] and np.allclose(again.embed, space.embed)


@pytest.mark.slow
@pytest.mark.parametrize("arch, dim", [("resnet18", 512), ("resnet50", 2048)])
def test_imagenet_backbone_from_a_saved_state_dict(arch, dim, digits, tmp_path):
    """The real loading code on weights this test saves (the machine cannot
    download torchvision's): the arch is read from the tensors, the
    classifier dropped, and the file given wins over the hub cache."""
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)()
    path = tmp_path / f"{arch}.pth"
    torch.save(net.state_dict(), path)
    loaded, got = load_imagenet_backbone(path)
    assert got == arch
    images, _ = digits
    cfg = dataclasses.replace(TINY, pretrained_size=32)
    space = feature_space(images[:20], np.arange(20), np.arange(20, dtype=np.int64), cfg, CPU, None, pretrained=path)
    assert space.embed.shape == (20, dim) and space.info["source"] == "pretrained" and space.info["arch"] == arch
    # the network's own pooled features, normalised
    x = features.imagenet_input(32)(torch.from_numpy(images[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(loaded(x), dim=1).numpy()
    assert np.allclose(space.embed[:2], ref, atol=1e-4)


def test_hub_cache_weights_are_found(tmp_path, monkeypatch):
    """Where torchvision's weights enums download to: $TORCH_HOME/hub/checkpoints."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    assert features.hub_weights() is None
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    target = tmp_path / "hub" / "checkpoints" / features.HUB_FILES["resnet18"]
    torch.save(torchvision.models.resnet18().state_dict(), target)
    assert features.hub_weights() == target


def test_bad_weight_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput, match="cannot read pretrained weights .*junk.pth"):
        load_imagenet_backbone(junk)
    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    with pytest.raises(BadInput, match="partial.pth does not hold a torchvision resnet18 backbone"):
        load_imagenet_backbone(partial)
