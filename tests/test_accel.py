"""How rounds run fast (learn/accel.py), checked with real CIFAR-10 JPEGs:
the settings each device gets, the decoded cache placed as a tensor gives
the very same round as the memmap, bf16 autocast with channels_last gives
the same queue quality as float32, torch.compile falls back to eager when it
cannot compile, and bad settings are refused in words before any work.

The GPU path's checks run on this machine's CPU in CI (the GPU path's
pieces, run on a CPU) and on a lent GPU with VAAL_TEST_DEVICE=cuda
(bench/gpu.sh): the same assertions on the device a round would use."""

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

from conftest import TEST_DEVICE, make_subset, run_cli

CLASSES3 = ["airplane", "frog", "truck"]
CPU = torch.device("cpu")
DEVICE = torch.device(TEST_DEVICE)
SEEDS = 3


def test_auto_suits_the_device():
    """A CPU: float32, channels_last, the memmap. A CUDA GPU: bf16 where it
    has bf16 units (compute capability 8 and up), else fp16; the cache on
    the GPU, compiled, big scoring batches."""
    got = accel.resolve(AccelConfig(), DEVICE)
    settings = (got.precision, got.channels_last, got.device_cache, got.compile, got.score_batch)
    if DEVICE.type == "cuda":
        assert settings == (_auto_precision(), True, True, True, 4096)
        with got.autocast():
            assert torch.nn.functional.linear(torch.ones(2, 4, device=DEVICE),
                                              torch.ones(3, 4, device=DEVICE)).dtype == got.dtype
    else:
        assert settings == ("fp32", True, False, False, 512)
        assert got.autocast().__class__.__name__ == "nullcontext"


def _auto_precision() -> str:
    """What "auto" should pick on the test device: bf16 on a GPU with bf16
    units (compute capability 8 and up), fp16 on an older one, fp32 on a CPU."""
    if DEVICE.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.get_device_capability(DEVICE)[0] >= 8 else "fp16"


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
    placed = accel.place_images(images, accel.resolve(AccelConfig(device_cache="on"), DEVICE))
    assert isinstance(placed, torch.Tensor) and placed.dtype == torch.uint8 and placed.device.type == DEVICE.type
    rows = np.array([7, 3, 49, 3, 0])  # unsorted, repeated: the memmap path sorts its reads
    assert torch.equal(to_tensor(placed, rows, DEVICE), to_tensor(images, rows, DEVICE))
    assert accel.place_images(images, accel.resolve(AccelConfig(device_cache="off"), DEVICE)) is images


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


@pytest.fixture
def deterministic_kernels():
    """On a GPU, kernels that add in a different order from run to run
    (cuDNN's fastest convolution algorithms) make two identical rounds
    differ in the last bits; the check below is about where the images come
    from, so it asks for deterministic kernels there (bench/gpu.sh sets
    CUBLAS_WORKSPACE_CONFIG, which cuBLAS reads when it starts). A CPU's
    kernels already are."""
    if DEVICE.type != "cuda":
        yield
        return
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]


@pytest.mark.slow
def test_a_round_on_the_device_cache_equals_one_on_the_memmap(ingested, tmp_path, deterministic_kernels):
    """The same VAAL round (VAE game, ranking discriminators, task model for
    the suggestions) twice, the images gathered from the memmap and from a
    tensor: the same queue, scores and suggestions, bit for bit. (Not
    compiled: compiling picks its kernels per run.)"""
    results = {}
    for mode in ("off", "on"):
        project = _copy(ingested, tmp_path / mode)
        out = run_round(project, RoundConfig(sampler="vaal", budget=10, fast=True, device=TEST_DEVICE,
                                             accel=AccelConfig(device_cache=mode, compile="off")))
        assert out.metrics["accel"]["device_cache"] == (mode == "on")
        # the Train page's history says how the round ran
        precision = out.metrics["accel"]["precision"]
        assert precision == _auto_precision()
        assert history(project)[-1]["precision"] == f"{precision} · channels_last" + \
            (" · images on the device" if mode == "on" else "")
        results[mode] = (out, project.queue(), project.suggestions())
    (a, qa, sa), (b, qb, sb) = results["off"], results["on"]
    assert [q["item_id"] for q in a.queue] == [q["item_id"] for q in b.queue]
    assert [(q["item_id"], q["score"]) for q in qa] == [(q["item_id"], q["score"]) for q in qb]
    assert {i: (g.label, g.confidence) for i, g in sa.items()} == {i: (g.label, g.confidence) for i, g in sb.items()}
    assert a.metrics["losses"] == b.metrics["losses"]


@pytest.mark.slow
def test_bf16_and_channels_last_keep_the_queue_quality_of_float32(cifar_root, tmp_path):
    """The GPU path's precision and layout (run on a CPU in CI): a 3-seed
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
                                         device=TEST_DEVICE, evaluate="common", accel=cfg), tmp_path / f"{name}.json")
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


def test_a_vaal_game_in_lower_precision_trains_and_scores_in_float32_outputs(tmp_path):
    """bf16 autocast (and on a GPU fp16, with its gradient scaler): losses
    stay finite float32 numbers, the latents come back as float32 (what the
    samplers and the map read)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    cfg = engine_config(32, fast=True)
    for precision in ("bf16", "fp16") if DEVICE.type == "cuda" else ("bf16",):
        chosen = accel.resolve(AccelConfig(precision=precision, channels_last="on", compile="off"), DEVICE)
        assert (chosen.scaler()._scaler is not None) == (precision == "fp16")  # loss scaling for fp16 only
        m = vaal.build_vaal(cfg.vae, cfg.train, DEVICE, 0, chosen)
        losses = vaal.train_vaal(m, images, np.arange(16), np.arange(16, 64), cfg.train, 3, DEVICE, 0, accel=chosen)
        assert all(np.isfinite(v) for k, v in losses.items() if k != "compile_note"), (precision, losses)
        latents = vaal.encode(m.vae, images, np.arange(64), DEVICE, accel=chosen)
        assert latents.dtype == np.float32 and latents.shape == (64, VAEConfig().latent_dim)
