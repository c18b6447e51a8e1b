"""How rounds run fast (learn/accel.py), checked on this machine's CPU with
real CIFAR-10 JPEGs: the settings each device gets, the decoded cache
placed as a tensor gives the very same round as the memmap, bf16 autocast
with channels_last gives the same queue quality as float32 (the GPU path's
pieces, run on a CPU), torch.compile falls back to eager when it cannot
compile, and bad settings are refused in words before any work."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vaal_core.config import AccelConfig, VAEConfig, engine_config
from vaal_core.errors import BadInput
from vaal_core.learn import accel, vaal
from vaal_core.learn.batches import to_tensor
from vaal_core.loop.report import history
from vaal_core.loop.round import RoundConfig, run_round
from vaal_core.store import Project

from conftest import make_subset, run_cli

CLASSES3 = ["airplane", "frog", "truck"]
CPU = torch.device("cpu")
SEEDS = 3


def test_auto_on_a_cpu_is_float32_channels_last_with_the_memmap():
    got = accel.resolve(AccelConfig(), "cpu")
    assert (got.precision, got.channels_last, got.device_cache, got.compile, got.score_batch) == \
        ("fp32", True, False, False, 512)
    assert got.autocast().__class__.__name__ == "nullcontext"


def test_settings_asked_for_are_the_settings_used():
    got = accel.resolve(AccelConfig(precision="bf16", channels_last="on", device_cache="on", compile="off",
                                    score_batch=64), "cpu")
    assert (got.precision, got.dtype, got.channels_last, got.device_cache, got.score_batch) == \
        ("bf16", torch.bfloat16, True, True, 64)
    assert got.describe()["precision"] == "bf16"
    x = torch.zeros(2, 3, 8, 8)
    assert got.layout(x).is_contiguous(memory_format=torch.channels_last)
    with got.autocast():
        assert torch.nn.functional.linear(torch.ones(2, 4), torch.ones(3, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("precision, device, words", [
    ("fp16", "cpu", "fp16 needs a GPU"),
    ("half", "auto", "unknown precision 'half'"),
])
def test_bad_precision_is_refused_in_words(precision, device, words, tmp_path):
    with pytest.raises(BadInput, match=words):
        accel.resolve(AccelConfig(precision=precision), "cpu" if device == "cpu" else CPU)


def test_a_round_refuses_fp16_on_a_cpu_before_any_work(small_folder, tmp_path):
    root = tmp_path / "proj"
    run_cli("init", str(root), "--images", str(small_folder))
    out = run_cli("round", str(root), "--sampler", "random", "--device", "cpu", "--precision", "fp16", check=False)
    assert out.returncode == 2  # the CLI's exit code for a bad request
    assert out.stderr.strip().splitlines()[-1].startswith("error: precision fp16 needs a GPU")
    assert "Traceback" not in out.stderr
    assert Project.open(root).rounds() == []  # nothing half-made


def test_batches_from_the_device_cache_equal_the_memmaps(tmp_path):
    images = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=(50, 8, 8, 3))
    images[:] = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
    placed = accel.place_images(images, accel.resolve(AccelConfig(device_cache="on"), "cpu"))
    assert isinstance(placed, torch.Tensor) and placed.dtype == torch.uint8
    rows = np.array([7, 3, 49, 3, 0])  # unsorted, repeated: the memmap path sorts its reads
    assert torch.equal(to_tensor(placed, rows, CPU), to_tensor(images, rows, CPU))
    assert accel.place_images(images, accel.resolve(AccelConfig(), "cpu")) is images


@pytest.fixture(scope="module")
def ingested(cifar_root, tmp_path_factory):
    """40 real JPEGs of each of 3 classes, ingested once; tests work on copies."""
    from vaal_core.data.ingest import init_project

    folder = make_subset(cifar_root, tmp_path_factory.mktemp("accel") / "images", per_class=40, classes=CLASSES3)
    root = tmp_path_factory.mktemp("base") / "proj"
    init_project(root, folder, gold_from_folders=True)[0].close()
    return root


def _copy(ingested, dest) -> Project:
    shutil.copytree(ingested, dest)
    project = Project.open(dest)
    items = project.items()
    project.set_labels([(it.id, it.gold) for it in items[::4]])  # 30 labels, every class
    return project


@pytest.mark.slow
def test_a_round_on_the_device_cache_equals_one_on_the_memmap(ingested, tmp_path):
    """The same VAAL round (VAE game, ranking discriminators, task model for
    the suggestions) twice, the images gathered from the memmap and from a
    tensor: the same queue, scores and suggestions, bit for bit."""
    results = {}
    for mode in ("off", "on"):
        project = _copy(ingested, tmp_path / mode)
        out = run_round(project, RoundConfig(sampler="vaal", budget=10, fast=True, device="cpu",
                                             accel=AccelConfig(device_cache=mode)))
        assert out.metrics["accel"]["device_cache"] == (mode == "on")
        # the Train page's history says how the round ran
        assert history(project)[-1]["precision"] == \
            ("fp32 · channels_last · images on the device" if mode == "on" else "fp32 · channels_last")
        results[mode] = (out, project.queue(), project.suggestions())
    (a, qa, sa), (b, qb, sb) = results["off"], results["on"]
    assert [q["item_id"] for q in a.queue] == [q["item_id"] for q in b.queue]
    assert [(q["item_id"], q["score"]) for q in qa] == [(q["item_id"], q["score"]) for q in qb]
    assert {i: (g.label, g.confidence) for i, g in sa.items()} == {i: (g.label, g.confidence) for i, g in sb.items()}
    assert a.metrics["losses"] == b.metrics["losses"]


@pytest.mark.slow
def test_bf16_and_channels_last_keep_the_queue_quality_of_float32(cifar_root, tmp_path):
    """The GPU path's precision and layout, run on this CPU: a 3-seed
    simulation whose round picks its batch by VAAL (the VAE game and its
    ranking, and the classifier measured, under bf16 autocast with
    channels_last) reaches the accuracy of the float32 run within noise.
    One round: bf16 is emulated on most CPUs, and every round more costs
    a minute of the suite."""
    from vaal_core.loop.simulate import SimConfig, simulate

    folder = make_subset(cifar_root, tmp_path / "images", per_class=120, classes=CLASSES3)
    runs = {}
    for name, cfg in (("fp32", AccelConfig(precision="fp32")),
                      ("bf16", AccelConfig(precision="bf16", channels_last="on"))):
        out = simulate(folder, SimConfig(samplers=("vaal",), init=60, budget=60, rounds=1, seeds=SEEDS, fast=True,
                                         device="cpu", evaluate="common", accel=cfg), tmp_path / f"{name}.json")
        assert out["config"]["engine"]["accel"]["precision"] == name
        runs[name] = out
    acc = {name: np.array([recs[-1]["accuracy"] for recs in out["results"]["vaal"].values()])
           for name, out in runs.items()}
    assert len(acc["fp32"]) == len(acc["bf16"]) == SEEDS
    # Within noise: paired by seed (same initial labels, same classifier seed), the
    # picks alone differ; the bound is 3 standard errors of the paired difference
    # (each accuracy on TEST images), and never under 5 points.
    diff = acc["bf16"] - acc["fp32"]
    n_test = runs["fp32"]["n_test"]
    se = np.sqrt(2 * 0.25 / n_test / SEEDS)
    assert abs(diff.mean()) <= max(0.05, 3 * se), acc


def test_compile_falls_back_to_eager_when_it_cannot_compile(monkeypatch, tmp_path):
    """torch.compile needs a working C++ compiler on a CPU; with none the
    function still runs (eager) and the note says why. (A fresh kernel cache,
    so no kernel compiled earlier on this machine stands in for compiling.)"""
    import torch._dynamo
    import torch._inductor.config as inductor

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-compiler-for-this-test",))
    torch._dynamo.reset()
    try:
        got = accel.resolve(AccelConfig(compile="on"), "cpu")
        notes: list[str] = []
        fn = got.compiled(lambda x: torch.relu(x) * 2 + 1, notes)
        x = torch.randn(3, 4)
        assert torch.equal(fn(x), torch.relu(x) * 2 + 1)
        assert torch.equal(fn(x), torch.relu(x) * 2 + 1)  # later calls: eager, no second attempt
        assert len(notes) == 1 and "No working C++ compiler" in notes[0] and "ran eager" in notes[0]
    finally:
        torch._dynamo.reset()


def test_a_vaal_game_under_bf16_trains_and_scores_in_float32_outputs(tmp_path):
    """bf16 autocast on a CPU: losses stay finite float32 numbers, the
    latents come back as float32 (what the samplers and the map read)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    cfg = engine_config(32, fast=True)
    bf16 = accel.resolve(AccelConfig(precision="bf16", channels_last="on"), "cpu")
    m = vaal.build_vaal(cfg.vae, cfg.train, CPU, 0, bf16)
    losses = vaal.train_vaal(m, images, np.arange(16), np.arange(16, 64), cfg.train, 3, CPU, 0, accel=bf16)
    assert all(np.isfinite(v) for k, v in losses.items() if k != "compile_note")
    latents = vaal.encode(m.vae, images, np.arange(64), CPU, accel=bf16)
    assert latents.dtype == np.float32 and latents.shape == (64, VAEConfig().latent_dim)
