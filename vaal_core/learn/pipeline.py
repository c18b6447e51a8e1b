"""One round's learning, for the app's rounds and the simulation alike.

A sampler declares the inputs it reads (its `needs`); this module knows,
for each input, the producer that trains or computes it:

    need           producer  what it is (aligned with the round's items)
    task_model     task      the task classifier trained and measured on the
                             evaluation rows, nothing predicted for the items
                             (what a simulation's accuracy needs)
    task_probs     task      the task classifier's softmax, (N, C)
    task_mc        task      MC-dropout samples of that softmax, (T, N, C)
    pred_loss      task      LL4AL's loss head's predicted loss, (N,)
    task_embed     task      the task classifier's pooled penultimate features, (N, D)
    latents        vaal      VAAL's VAE latent means, (N, Z)
    disc_prob      vaal      VAAL's discriminator P(labeled), (N,); None with no labels
    ta_latents     ta_vaal   TA-VAAL's VAE latent means (conditioned on pred_loss)
    ta_disc_prob   ta_vaal   TA-VAAL's discriminator P(labeled)
    features       features  the project's feature space: SimCLR (k-means patch features with
                             --fast) on its own images, or an
                             ImageNet backbone when weights are at hand; L2-normalised (N, D)
    feature_probe  features  what a linear probe reads of that space (N, K): the embeddings, or
                             for the patch features their 256 leading principal components
    suggest_probs  suggest   the label suggestions: the geometric mean of the task model's softmax
                             and a linear probe's on feature_probe, renormalised (learn/probe.py), (N, C)

`produce(needs, job)` runs exactly the producers those needs call for (and
the ones those depend on: TA-VAAL's reads pred_loss), in order, and returns
everything they made. Where models live between rounds is the job's
`ModelStore` (a project's checkpoint folder, or a simulation's memory), so
the app and the simulation share this code instead of mirroring it.

Adding a sampler that reads a new input means one producer here and the
sampler's registration (`samplers.register(..., needs=...)`); nothing else.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from vaal_core.config import EngineConfig
from vaal_core.learn import calibration
from vaal_core.learn.checkpoints import ModelStore
from vaal_core.learn.distributed import SINGLE, Dist
from vaal_core.progress import Phase, Progress, announce


@dataclass
class RoundData:
    """What a round learns from: arrays aligned with `item_ids`, every item
    the round ranks or learns from (labeled or not)."""

    images: np.ndarray | None  # (rows, S, S, 3) uint8: the decoded cache (None when no producer runs)
    item_ids: np.ndarray  # (N,) int64
    rows: np.ndarray  # (N,) each item's row of `images`
    labeled: np.ndarray  # (N,) bool: what the discriminator calls "labeled"
    targets: np.ndarray  # (N,) class index of each labeled item, -1 for unlabeled
    classes: list[str]
    task_train: np.ndarray  # (N,) bool: labeled items the task model trains on
    eval_rows: np.ndarray  # rows of `images` the task model's accuracy is measured on
    eval_targets: np.ndarray  # their class indices


@dataclass
class Job:
    """One call of `produce`: the data, the settings, and where the models
    and the progress go."""

    data: RoundData
    engine: EngineConfig
    device: Any  # a torch.device, resolved by the caller
    seed: int
    models: ModelStore
    progress: Progress | None = None
    should_stop: Callable[[], bool] | None = None
    pretrained: Path | None = None  # weights for the task model's cold start
    feature_weights: Path | None = None  # ImageNet ResNet weights for the feature space (else SimCLR or the hub cache)
    tag: dict[str, Any] = field(default_factory=dict)  # saved with every checkpoint (the round id)
    # The round's processes (learn/distributed.py): each trains on its share of
    # the rows and scores its part of the pool; one process unless torchrun.
    dist: Dist = SINGLE
    # Runs of producers that started fresh, keyed by everything they depend
    # on: a fresh start on the same data with the same seed gives the same
    # models, so a simulation shares them between the samplers of one seed.
    shared: dict[tuple, "_Made"] | None = None
    # Set by `produce`: how the models run on the device (learn/accel.py), and
    # the decoded images where batches are gathered from (on the device when
    # the device cache is chosen and fits, else `data.images`).
    accel: Any = field(default=None, init=False)
    pixels: Any = field(default=None, init=False)


@dataclass
class _Made:
    values: dict[str, np.ndarray | None]
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] | None = None  # what the producer saved


@dataclass
class Produced:
    values: dict[str, np.ndarray | None]  # need -> array (None: not computable this round)
    timings: dict[str, float]  # seconds per step: task_s, predict_s, train_s, score_s
    metrics: dict[str, Any]  # what the producers measured (task accuracy, losses, iterations)

    def latent_space(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(latents, discriminator P(labeled)) of the VAE this round trained,
        if any: what the Explore page and the Demo's picks map draw."""
        for latents, disc in LATENT_SPACES:
            if self.values.get(latents) is not None:
                return self.values[latents], self.values.get(disc)
        return None


@dataclass(frozen=True)
class Producer:
    name: str  # also the name its models are saved under
    provides: tuple[str, ...]
    requires: tuple[str, ...]  # needs it reads from producers that run before it
    phases: Callable[[frozenset[str]], tuple[Phase, ...]]  # what it reports, in order, for the needs wanted
    run: Callable[[Job, frozenset[str], dict[str, Any]], _Made]
    varies_with: tuple[str, ...] = ()  # wanted needs that change how it trains
    label_free: bool = False  # reads no label and no round seed: one run serves every round of every seed


# -- the producers ---------------------------------------------------------------

def _task_signature(job: Job) -> dict[str, Any]:
    """What must match for a warm start: the architecture and the class list
    (a reordered list changes what each output means)."""
    t = job.engine.task
    return {"arch": t.arch, "width": t.width, "image_size": job.engine.vae.image_size,
            "classes": list(job.data.classes)}


def _train_task_model(job: Job, wanted: frozenset[str], values: dict[str, Any]) -> _Made:
    """Train (warm) the task model on the labels it may learn from, measure
    it on the evaluation rows, fit the temperature that calibrates its
    confidence there, and predict every item of the round (the raw softmax:
    the samplers read it; only the suggestions are shown calibrated)."""
    from vaal_core.learn import task

    d, cfg = job.data, job.engine.task
    loss_head = "pred_loss" in wanted
    model = task.new_task_model(len(d.classes), cfg, job.device, job.seed, loss_head, job.accel)
    state, signature = job.models.load("task"), _task_signature(job)
    warm = state is not None and state.get("signature") == signature
    if warm:
        model.net.load_state_dict(state["net"])
        if model.head is not None and state.get("head") is not None:
            model.head.load_state_dict(state["head"])
    pretrained = task.load_pretrained(model, job.pretrained) if not warm and job.pretrained else None
    if warm and cfg.epochs_warm is not None:
        cfg = replace(cfg, epochs=cfg.epochs_warm)
    t0 = time.perf_counter()
    last = task.train_task(model, job.pixels, d.rows[d.task_train], d.targets[d.task_train], cfg, job.device,
                           job.seed, job.progress, job.should_stop, job.accel)
    job.dist.sync(model.net, model.head)  # every rank predicts with rank 0's BatchNorm statistics
    t1 = time.perf_counter()
    made: dict[str, Any] = {}
    if wanted - {"task_model"}:  # outputs for the round's items
        mc = cfg.mc_samples if "task_mc" in wanted else 0
        def outputs(rows: np.ndarray) -> dict[str, np.ndarray | None]:  # row-major, for sharding
            o = task.run_task(model, job.pixels, rows, job.device, mc_samples=mc, seed=job.seed,
                              progress=job.progress, accel=job.accel)
            return {"task_probs": o.probs, "task_embed": o.embed, "pred_loss": o.pred_loss,
                    "task_mc": None if o.mc_probs is None else o.mc_probs.transpose(1, 0, 2)}

        out = job.dist.gather_rows(outputs, d.rows)
        if out["task_mc"] is not None:
            out["task_mc"] = np.ascontiguousarray(out["task_mc"].transpose(1, 0, 2))  # (T, N, C)
        made.update({k: v for k, v in out.items() if v is not None})
    accuracy, held_out = None, np.zeros((0, len(d.classes)), np.float32)
    if len(d.eval_rows):
        held_out = task.predict(model, job.pixels, d.eval_rows, job.device, job.accel)
        accuracy = float((held_out.argmax(1) == d.eval_targets).mean())
    # The temperature that makes the softmax's confidence match the accuracy on the
    # labels it never trained on: what a round's suggestions show (learn/calibration.py).
    fitted = calibration.fit(held_out, d.eval_targets, seed=job.seed)
    t2 = time.perf_counter()
    job.models.save("task", {"net": model.net.state_dict(),
                             "head": None if model.head is None else model.head.state_dict(),
                             "signature": signature, **job.tag})
    metrics = {"arch": cfg.arch, "accuracy": accuracy, "n_val": int(len(d.eval_rows)),
               "n_train": int(d.task_train.sum()), "warm_start": warm, "epochs": cfg.epochs, "steps": last["steps"],
               "loss_head": loss_head, "train_s": round(t1 - t0, 3), "last_loss": last.get("task_loss"),
               "pretrained": pretrained, "calibration": fitted}
    return _Made(made, {"task_s": round(t1 - t0, 3), "predict_s": round(t2 - t1, 3)}, {"task": metrics})


def _vaal_game(conditioned: bool) -> Callable[[Job, frozenset[str], dict[str, Any]], _Made]:
    """VAAL's (or, conditioned on the predicted loss, TA-VAAL's) VAE and
    discriminator, warm from the last round's when the architecture is the
    same; their latent means and P(labeled) for every item."""
    name, prefix = ("ta_vaal", "ta_") if conditioned else ("vaal", "")

    def run(job: Job, wanted: frozenset[str], values: dict[str, Any]) -> _Made:
        import torch

        from vaal_core.learn import vaal

        d, eng = job.data, job.engine
        vae_cfg = replace(eng.vae, cond_dim=1) if conditioned else eng.vae
        models = vaal.build_vaal(vae_cfg, eng.train, job.device, job.seed, job.accel)
        state = job.models.load(name)
        warm = state is not None and state.get("vae_config") == asdict(vae_cfg)
        if warm:
            for part in ("vae", "disc", "opt_vae", "opt_disc"):
                getattr(models, part).load_state_dict(state[part])
        ranker = None
        if conditioned:  # TA-VAAL's r, by image row
            ranker = np.zeros(len(d.images), dtype=np.float32)
            ranker[d.rows] = values["pred_loss"]
        iterations = eng.train.iterations(int((~d.labeled).sum()), warm)
        t0 = time.perf_counter()
        torch.manual_seed(job.seed)  # the VAE's reparameterisation noise
        losses = vaal.train_vaal(models, job.pixels, d.rows[d.labeled], d.rows[~d.labeled], eng.train, iterations,
                                 job.device, job.seed, job.progress, job.should_stop, ranker=ranker,
                                 accel=job.accel)
        job.dist.sync(models.vae, models.disc)
        t1 = time.perf_counter()
        latents = job.dist.gather_rows(lambda rows: vaal.encode(models.vae, job.pixels, rows, job.device,
                                                                progress=job.progress, accel=job.accel), d.rows)
        cond = None if ranker is None else ranker[d.rows]
        disc = (vaal.discriminate(models.disc, latents, job.device, cond)
                if d.labeled.any() else None)  # nothing labeled: nothing to tell apart
        quality = None
        # Rank with a best response, and measure it (disc_quality): what ranks is rank 0's alone.
        if disc is not None and not d.labeled.all() and job.dist.main:
            tq = time.perf_counter()
            disc, quality = vaal.rank_and_measure(vae_cfg, eng.train, latents, d.labeled, job.device, job.seed,
                                                  cond, game_prob=disc)
            quality["seconds"] = round(time.perf_counter() - tq, 3)
        t2 = time.perf_counter()
        job.models.save(name, {**{part: getattr(models, part).state_dict()
                                  for part in ("vae", "disc", "opt_vae", "opt_disc")},
                               "vae_config": asdict(vae_cfg), "train_config": asdict(eng.train), **job.tag})
        return _Made({f"{prefix}latents": latents, f"{prefix}disc_prob": disc},
                     {"train_s": round(t1 - t0, 3), "score_s": round(t2 - t1, 3)},
                     {"device": str(job.device), "warm_start": warm, "iterations": iterations, "losses": losses,
                      **({"discriminator": quality} if quality is not None else {})})

    return run


def _feature_space(job: Job, wanted: frozenset[str], values: dict[str, Any]) -> _Made:
    """The feature space of every image of the round: trained once, warm
    when images were added, reused while they stay the same. It reads no
    label, so it is the same for every sampler and every seed."""
    from vaal_core.learn import features

    d = job.data
    space = features.feature_space(job.pixels, d.rows, d.item_ids, job.engine.features, job.device,
                                   job.models.load("features"), job.feature_weights, job.progress, job.should_stop,
                                   job.accel)
    job.models.save("features", {**space.state, **job.tag})
    return _Made({"features": space.embed, "feature_probe": space.probe_input}, {"features_s": space.info["seconds"]},
                 {"features": space.info})


def _suggestions(job: Job, wanted: frozenset[str], values: dict[str, Any]) -> _Made:
    """The task model's softmax combined with a linear probe on the feature
    space (learn/probe.py), fitted on the labels the task model trained on and
    measured and calibrated on the held-out slice it never saw. Not saved: it
    takes seconds and the next round's labels differ."""
    from vaal_core.learn import probe

    d = job.data
    if not job.dist.main:  # only rank 0 writes the suggestions
        return _Made({"suggest_probs": None})
    announce(job.progress, Phase.PROBE)
    t0 = time.perf_counter()
    made = probe.suggest(values["task_probs"], values["feature_probe"], d.task_train, d.labeled & ~d.task_train,
                         d.targets, job.seed)
    seconds = round(time.perf_counter() - t0, 3)
    return _Made({"suggest_probs": made.probs}, {"probe_s": seconds}, {"suggest": {**made.metrics, "seconds": seconds}})


# In the order they run: each producer's `requires` come from producers above it.
PRODUCERS = (
    Producer("features", ("features", "feature_probe"), (), lambda wanted: (Phase.FEATURES, Phase.EMBED),
             _feature_space, label_free=True),
    Producer("task", ("task_model", "task_probs", "task_mc", "pred_loss", "task_embed"), (),
             lambda wanted: (Phase.TASK, Phase.PREDICT) if wanted - {"task_model"} else (Phase.TASK,),
             _train_task_model, varies_with=("pred_loss",)),
    Producer("vaal", ("latents", "disc_prob"), (), lambda wanted: (Phase.TRAIN, Phase.SCORE),
             _vaal_game(conditioned=False)),
    Producer("ta_vaal", ("ta_latents", "ta_disc_prob"), ("pred_loss",), lambda wanted: (Phase.TRAIN, Phase.SCORE),
             _vaal_game(conditioned=True)),
    Producer("suggest", ("suggest_probs",), ("task_probs", "feature_probe"), lambda wanted: (Phase.PROBE,),
             _suggestions),
)
NEEDS: dict[str, Producer] = {need: p for p in PRODUCERS for need in p.provides}
# (latents, discriminator) pairs, in the order the map prefers them
LATENT_SPACES = (("latents", "disc_prob"), ("ta_latents", "ta_disc_prob"))


def plan(needs: Iterable[str]) -> list[tuple[Producer, frozenset[str]]]:
    """The producers `needs` call for, in the order they run, each with the
    needs wanted of it (its own outputs asked for, and those a later
    producer reads)."""
    wanted = set(needs)
    unknown = wanted - NEEDS.keys()
    if unknown:
        raise ValueError(f"no producer computes {', '.join(sorted(unknown))}; the known inputs are "
                         f"{', '.join(sorted(NEEDS))} (add a producer in vaal_core/learn/pipeline.py)")
    for producer in reversed(PRODUCERS):  # dependencies only point up the list
        if wanted & set(producer.provides):
            wanted |= set(producer.requires)
    return [(p, frozenset(wanted & set(p.provides))) for p in PRODUCERS if wanted & set(p.provides)]


def task_needs(needs: Iterable[str]) -> frozenset[str]:
    """What `needs` ask of the task model's producer: a round that only
    measures asks for these (and `task_model`) to train the very same
    classifier, LL4AL's loss head included."""
    return next((wanted for p, wanted in plan(needs) if p.name == "task"), frozenset())


def uses_task_model(needs: Iterable[str]) -> bool:
    """Whether these needs train the task model (so labels of 2 classes or
    more must exist)."""
    return any(p.name == "task" for p, _ in plan(needs))


def trains_vae(needs: Iterable[str]) -> bool:
    """Whether these needs train a VAE (so the round has a latent space to map)."""
    latents = {name for name, _ in LATENT_SPACES}
    return any(latents & set(p.provides) for p, _ in plan(needs))


def phases(needs: Iterable[str]) -> list[Phase]:
    """The progress phases `produce(needs, ...)` goes through, in order."""
    return [phase for p, wanted in plan(needs) for phase in p.phases(wanted)]


def produce(needs: Iterable[str], job: Job) -> Produced:
    """Train and compute what `needs` call for; see the module docstring.
    The job's images are placed once (`accel.place_images`) for every
    producer that runs."""
    out = Produced({}, {}, {})
    steps = plan(needs)
    if steps:
        from vaal_core.learn import accel

        job.accel = accel.resolve(job.engine.accel, job.device, job.dist)
        if job.dist.on:  # a stop on any rank stops every rank at the same step
            job.should_stop = job.dist.agreed(job.should_stop)
        job.pixels = accel.place_images(job.data.images, job.accel)
        out.metrics["accel"] = job.accel.describe()
    for producer, wanted in steps:
        made = _shared_run(producer, wanted, job, out.values)
        out.values.update(made.values)
        out.timings.update(made.timings)
        out.metrics.update(made.metrics)
    return out


def _shared_run(producer: Producer, wanted: frozenset[str], job: Job, values: dict[str, Any]) -> _Made:
    """Run a producer; or, where it starts fresh and the job's `shared` memo
    holds a fresh run of it on the same inputs, trained the same way, reuse
    that run. A run made for the memo also computes the outputs that do not
    change how it trains (the task model's predictions), so every sampler
    after it finds what it reads."""
    if job.shared is None or job.models.has(producer.name):
        return producer.run(job, wanted, values)
    key = (producer.name, wanted & set(producer.varies_with), _inputs_digest(job, producer, values))
    made = job.shared.get(key)
    if made is None:
        made = producer.run(job, wanted | (set(producer.provides) - set(producer.varies_with)), values)
        made.state = job.models.load(producer.name)
        job.shared[key] = made
    else:
        job.models.save(producer.name, made.state)
    return made


def _inputs_digest(job: Job, producer: Producer, values: dict[str, Any]) -> str:
    """Everything a fresh producer run depends on: the data it learns from
    and is measured on, the settings, device and seed, and what the
    producers before it handed over."""
    d = job.data
    digest = hashlib.sha1()
    if producer.label_free:
        parts = [d.images, d.item_ids, d.rows, asdict(job.engine), str(job.device), str(job.feature_weights)]
    else:
        parts = [d.images, d.item_ids, d.rows, d.labeled, d.targets, d.task_train, d.eval_rows, d.eval_targets,
                 d.classes, asdict(job.engine), str(job.device), job.seed, str(job.pretrained),
                 *(values.get(need) for need in producer.requires)]
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(repr((part.dtype.str, part.shape)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")  # no two different inputs read the same
    return digest.hexdigest()
