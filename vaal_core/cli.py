"""`python -m vaal_core`: the command-line contract (README, "The engine
from the command line"; docs/ARCHITECTURE.md).

Human text by default, one JSON object with --json. Errors users can cause
end as one line on stderr and a non-zero exit code (2), with the project left
as it was; so do a damaged project.db, a read-only folder and a full disk
(the store and the round say them in words; `main` words any other write the
system refuses). Progress goes to stderr so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaal_core.errors import BadInput, VaalError, cannot_write
from vaal_core.progress import describe_with_losses, stderr_printer

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, like every other error
        raise BadInput(f"{message} (see: {self.prog} --help)")  # prog: "python -m vaal_core [command]"


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str | None) -> None:
    if text is None:  # the command said it already (export to standard output)
        return
    print(json.dumps(obj, default=str) if getattr(args, "json", False) else text)


# -- commands ---------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> None:
    from vaal_core.data.ingest import init_project

    project, report, created = init_project(
        Path(args.project), Path(args.images).expanduser(), _parse_classes(args.classes), args.image_size,
        gold_from_folders=args.gold_from_folders, progress=stderr_printer(quiet=args.json), database=args.db,
        moved=args.moved)
    root = Path(args.project)
    status = project.status()
    out = {**report.to_dict(), "project": str(root), "created": created, "status": status}
    lines = [(f"{'created' if created else 'updated'} project {root}: {report.added} new images, "
              f"{report.known} already known, {len(report.skipped)} skipped, {report.missing} missing"
              + (f" ({report.images_per_s:.0f} images/s)" if report.images_per_s else "")),  # none decoded: no rate
             "classes: " + (", ".join(status["classes"])
                            or f"(none yet: add some with: python -m vaal_core classes {root} --add a,b)")]
    lines[1:1] = report.notes()
    if report.moved:
        from vaal_core.data.relocate import Moved

        lines.insert(1, Moved(**report.moved).sentence())
    if status["backend"] != "sqlite":
        lines.append(f"store: {project.db.where()}")
    lines += [f"  skipped {path}: {reason}" for path, reason in report.skipped]
    _emit(args, out, "\n".join(lines))


def _parse_classes(text: str | None) -> list[str]:
    from vaal_core.data.ingest import parse_classes

    return parse_classes(text, what="--classes")


def _project(path: str):
    from vaal_core.store import Project

    return Project.open(path)


def cmd_status(args: argparse.Namespace) -> None:
    from vaal_core.data.images import status_of

    project = _project(args.project)
    st = status_of(project)
    last = st["last_round"]
    problem = st["image_folder_problem"]  # a moved folder is said where the user looks first
    lines = [f"project {st['project']} (images from {st['image_root']}, {st['image_size']}px)",
             *([f"note: {problem}"] if problem else []),
             (f"items: {st['items']}  labeled: {st['labeled']}  unlabeled: {st['unlabeled']}  "
              f"skipped files: {st['skipped']}  missing: {st['missing']}"),
             "classes: " + (", ".join(f"{c} ({n})" for c, n in st["per_class"].items()) or "(none)"),
             f"rounds: {st['rounds']}  queue: {st['queue']} items" + ("  [training now]" if st["training"] else "")]
    if last:
        lines.append(f"last round: {last['id']} {last['sampler']} budget {last['budget']}: {last['status']}"
                     + (f" ({last['error']})" if last["error"] else ""))
    if st["by_annotator"]:
        lines.append("labels by annotator: " + ", ".join(f"{a} ({n})" for a, n in st["by_annotator"].items()))
    if st["backend"] != "sqlite":
        lines.append(f"store: {project.db.where()}")
    if st["overlap"]:
        lines.append(f"overlap: {st['overlap']:.0%} of images to two annotators; {st['conflicts']} conflicts "
                     "to review (see: python -m vaal_core team PROJECT)")
    _emit(args, st, "\n".join(lines))


def cmd_team(args: argparse.Namespace) -> None:
    project = _project(args.project)
    if args.overlap is not None:
        project.set_overlap(args.overlap)
    if args.resolve:
        item, sep, label = args.resolve.partition("=")
        if not sep or not item.strip().isdigit() or not label.strip():
            raise BadInput(f"--resolve {args.resolve!r}: write it as ITEM_ID=CLASS, e.g. --resolve 42=cat")
        if not args.reviewer:
            raise BadInput("--resolve needs --reviewer NAME (recorded with the resolution)")
        project.resolve_conflict(int(item), label.strip(), args.reviewer)
    out = {"overlap": project.overlap(), "by_annotator": project.labels_by_annotator(),
           "agreement": project.agreement(), "conflicts": project.conflicts(), "leases": project.leases()}
    lines = [f"overlap: {out['overlap']:.0%} of images go to two annotators",
             "labels by annotator: " + (", ".join(f"{a} ({n})" for a, n in out["by_annotator"].items()) or "none")]
    for pair in out["agreement"]:
        kappa = "undefined (one class only)" if pair["kappa"] is None else f"{pair['kappa']:.2f}"
        lines.append(f"  {pair['a']} & {pair['b']}: {pair['n']} images both labeled, {pair['agree']:.0%} agree, "
                     f"Cohen's kappa {kappa}")
    lines.append(f"conflicts to review: {len(out['conflicts'])}")
    lines += [f"  #{c['item_id']} {c['path']}: " + ", ".join(f"{a} says {n}" for a, n in c["by"].items())
              for c in out["conflicts"]]
    _emit(args, out, "\n".join(lines))


def cmd_round(args: argparse.Namespace) -> None:
    from vaal_core.config import AccelConfig
    from vaal_core.loop.report import round_summary
    from vaal_core.loop.round import RoundConfig, run_round

    from vaal_core.learn import distributed

    project = _project(args.project)
    # Under `torchrun --nproc_per_node N -m vaal_core round ...` this process is one rank of N
    # (learn/distributed.py): rank 0 prints and writes, the others only train and score.
    dist = distributed.from_env(args.device)
    if dist.on:
        # torchrun sends SIGTERM to every rank as soon as one fails, while rank 0 is
        # still recording the failure and printing it: a lost rank already fails
        # the round through the collectives, and a cancel goes through the store.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    quiet = args.json or not dist.main
    progress = stderr_printer(quiet, describe=describe_with_losses)
    cfg = RoundConfig(sampler=args.sampler, budget=args.budget, seed=args.seed, device=args.device,
                      fast=args.fast, fresh=args.fresh, suggest=not args.no_suggest, pretrained=args.pretrained,
                      audit=args.audit, accel=AccelConfig(precision=args.precision))
    _warn_if_slow(cfg, quiet)
    result = run_round(project, cfg, progress=progress, dist=dist)
    distributed.close()  # only after a round that ended well: a group that lost a rank may not close
    if result is not None:  # rank 0 (or the only process) reports the round
        out = result.to_dict()
        out["queue_length"] = len(result.queue)
        _emit(args, out, round_summary(result))
    if dist.on:
        distributed.leave(0)


def _warn_if_slow(cfg, quiet: bool) -> None:
    """Reference-size models on a CPU take hours (bench/engine.py: about 0.2
    iterations/s on 2 cores); say so before starting rather than after."""
    from vaal_core.loop.round import slow_on_cpu

    if not quiet and slow_on_cpu(cfg):
        print("note: full-size models on a CPU train slowly (hours for a large pool); "
              "add --fast for a quick round, or run on a GPU", file=sys.stderr, flush=True)


def cmd_queue(args: argparse.Namespace) -> None:
    from vaal_core.services import label_words

    project = _project(args.project)
    if args.limit is not None and args.limit < 0:
        raise BadInput(f"--limit must be 0 or more, got {args.limit}")
    round_id = project.current_round_id()
    rows, text = label_words.queue_listing(project, round_id, project.queue(args.limit))
    _emit(args, {"round": round_id, "items": rows}, text)


def cmd_suggest(args: argparse.Namespace) -> None:
    from vaal_core.learn import calibration
    from vaal_core.services.labeling import queue_suggestions

    project = _project(args.project)
    if args.limit is not None and args.limit < 0:
        raise BadInput(f"--limit must be 0 or more, got {args.limit}")
    out = queue_suggestions(project, args.limit)
    task = out["task"]
    if not out["items"]:
        text = "the queue is empty: run a round (python -m vaal_core round PROJECT)"
    elif task is None:
        text = (f"round {out['round']} trained no task model (it needs labels of at least 2 classes); label "
                "some images and run a round")
    else:
        acc = (f"{100 * task['accuracy']:.1f}% ({task['how']})" if task["accuracy"] is not None else task["how"])
        lines = []
        for r in out["items"]:
            conf = "" if r["confidence"] is None else f"{100 * r['confidence']:5.1f}%"
            lines.append(f"{r['rank']:>5}  {r['suggestion'] or '-':<14} {conf:>6}  {r['path']}")
        trust = calibration.of_round(project.round(out["round"])["metrics"])  # its words, as out["calibration"]'s
        text = "\n".join(lines + [f"suggestions of round {out['round']} ({task['model']}): {acc}",
                                   f"confidence: {trust.words()}" + ("" if trust.calibrated else
                                                                      f" ({trust.raw.removeprefix('the ')}, "
                                                                      "often overconfident)")])
    _emit(args, out, text)


def cmd_simulate(args: argparse.Namespace) -> None:
    from vaal_core.config import AccelConfig
    from vaal_core.loop.simulate import SimConfig, print_round, simulate

    names = [s.strip() for s in args.samplers.split(",") if s.strip()]
    cfg = SimConfig(samplers=tuple(names), init=args.init, budget=args.budget, rounds=args.rounds,
                    seeds=args.seeds, fast=args.fast, device=args.device, image_size=args.image_size,
                    test_fraction=args.test_fraction, subset=args.subset, map=args.map, evaluate=args.evaluate,
                    pretrained=args.pretrained, accel=AccelConfig(precision=args.precision))
    result = simulate(Path(args.images), cfg, Path(args.out), progress=None if args.json else print_round)
    lines = [*result["headline"].split(" | "), ""]
    for name, rows in result["summary"].items():
        lines.append(f"{name:>12}: " + "  ".join(f"{r['labeled']}:{100 * r['mean']:.1f}±{100 * r['std']:.1f}"
                                                 for r in rows))
    eff = result.get("efficiency") or {}
    if eff:
        target = next(iter(eff.values()))
        lines.append(f"\nlabels needed to reach random's final accuracy ({100 * target['target']:.1f}% at "
                     f"{target['target_labeled']:,}), mean ± std over the seeds that reached it:")
        for name, e in eff.items():
            lines.append(f"{name:>12}: " + ("not reached" if e["mean"] is None else
                                             f"{e['mean']:,.0f} ± {e['std']:,.0f} ({e['reached']}/{e['seeds']} seeds)"))
    lines.append(f"\nwrote {args.out} and {Path(args.out).with_suffix('.html')}")
    _emit(args, {"out": str(args.out), "headline": result["headline"], "summary": result["summary"],
                 "efficiency": eff},
          "\n".join(lines))


def cmd_embed(args: argparse.Namespace) -> None:
    from vaal_core.maps.cache import latest_latent_round, round_projection

    project = _project(args.project)
    round_id = args.round if args.round is not None else latest_latent_round(project)
    if round_id is None:
        raise BadInput(f"project {project.root} has no round with latents yet; run a round with the "
                       "'vaal' or 'coreset' sampler first")
    project.round(round_id)  # an unknown round is a one-line error
    proj = round_projection(project, round_id, progress=stderr_printer(quiet=args.json))
    _emit(args, {"round": round_id, "points": len(proj.item_ids), "seconds": round(proj.seconds, 2),
                 "cached": proj.cached},
          f"round {round_id}: {len(proj.item_ids):,} points projected in {proj.seconds:.1f} s"
          + (" (cached)" if proj.cached else ""))


def cmd_devices(args: argparse.Namespace) -> None:
    from vaal_core.learn.devices import describe, probe

    found = probe()
    text = (f"auto picks {describe('auto', found)}; CUDA GPUs: {', '.join(found['cuda']) or 'none'}; "
            f"Apple MPS: {'yes' if found['mps'] else 'no'}; PyTorch {found['torch']}")
    _emit(args, found, text)


def cmd_samplers(args: argparse.Namespace) -> None:
    from vaal_core import samplers

    rows = [{"name": s.name, "needs": sorted(s.needs), "description": s.description, "policy": s.is_policy}
            for s in (samplers.get(n) for n in samplers.names())]
    _emit(args, {"samplers": rows}, "\n".join(f"{r['name']:<17} {r['description']}" for r in rows))


# -- parser -----------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from vaal_core import __version__

    p = _Parser(prog="python -m vaal_core", description="VAAL Studio engine: projects, rounds, simulation.")
    p.add_argument("--version", action="version", version=f"VAAL Studio {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, fn, help_text: str, project: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if project:
            sp.add_argument("project", help="project folder (holds project.db)")
        sp.add_argument("--json", action="store_true", help="print one JSON object")
        sp.set_defaults(fn=fn)
        return sp

    sp = command("init", cmd_init, "create a project from an image folder, or add new images to it")
    sp.add_argument("--images", required=True, help="folder of images (scanned recursively)")
    sp.add_argument("--classes", help="comma-separated class names, in key order (1-9)")
    sp.add_argument("--gold-from-folders", action="store_true",
                    help="keep each image's parent folder name as a hidden gold label (evaluation only)")
    sp.add_argument("--image-size", type=int, help="model input size: 32 (default), 64 or 128")
    sp.add_argument("--db", metavar="URL",
                    help="keep the store on a PostgreSQL server (a team project): postgresql://USER@HOST:PORT/DB, "
                         "no password in it (PGPASSWORD or ~/.pgpass); default $VAAL_DATABASE_URL, else SQLite "
                         "in the project folder")
    sp.add_argument("--moved", action="store_true",
                    help="the project's images moved to --images (another disk, a renamed folder): check that "
                         "they are there (paths, sizes, a sample's bytes), then read them from there; labels, "
                         "rounds and the queue are kept")

    command("status", cmd_status, "counts of items, labels, skipped files and rounds")

    sp = command("team", cmd_team, "several annotators: overlap, agreement per pair, conflicts to review")
    sp.add_argument("--overlap", type=float, metavar="SHARE",
                    help="share of images sent to two annotators (0 to 1; 0.1: one in ten)")
    sp.add_argument("--resolve", metavar="ITEM_ID=CLASS", help="resolve a conflict with this class")
    sp.add_argument("--reviewer", metavar="NAME", help="who resolves (recorded with the label)")

    sp = command("round", cmd_round, "train and write a new ranked labeling queue")
    sp.add_argument("--sampler", default="auto",
                    help="sampler name, or auto (the default: chosen by the labels so far; see: python -m vaal_core samplers)")
    sp.add_argument("--budget", type=int, help="queue length (default: 5%% of the items)")
    sp.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    sp.add_argument("--fast", action="store_true", help="small models, few iterations (seconds on a CPU)")
    sp.add_argument("--fresh", action="store_true", help="train from scratch, not from last round's weights")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-suggest", action="store_true",
                    help="skip the task model unless the sampler needs it (no label suggestions this round)")
    sp.add_argument("--pretrained", metavar="FILE",
                    help="ImageNet ResNet-18/50 weights (torchvision .pth, local file): the feature space of "
                         "typiclust, probcover and auto, and (ResNet-18, without --fast) the task model's start")
    sp.add_argument("--audit", type=float, default=0.05, metavar="FRACTION",
                    help="share of the batch drawn at random instead of by the sampler, to estimate the task "
                         "model's accuracy honestly (default 0.05; 0: none; batches under 10 get none)")
    sp.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                    help="training and scoring precision: auto (bf16, or fp16 where a CUDA GPU lacks bf16; fp32 "
                         "on a CPU), fp32, bf16 or fp16 (GPU only)")

    sp = command("queue", cmd_queue, "the current labeling queue, best first")
    sp.add_argument("--limit", type=int)

    sp = command("suggest", cmd_suggest, "the task model's suggested label for each item of the queue")
    sp.add_argument("--limit", type=int)

    from vaal_core import cli_labels  # classes, label, export: what they print comes back to _emit

    for name, (run, help_text, add_arguments) in cli_labels.COMMANDS.items():
        add_arguments(command(name, lambda a, run=run: _emit(a, *run(a, _project(a.project))), help_text))

    sp = command("simulate", cmd_simulate, "play rounds with an oracle and measure accuracy per sampler",
                 project=False)
    sp.add_argument("--images", required=True, help="folder with one subfolder per class (the oracle)")
    sp.add_argument("--samplers", required=True, help="comma-separated sampler names; random is always added")
    sp.add_argument("--init", type=int, required=True,
                    help="size of the random initial labeled set (0: the sampler picks the first batch too)")
    sp.add_argument("--budget", type=int, required=True, help="labels added per round")
    sp.add_argument("--rounds", type=int, required=True)
    sp.add_argument("--seeds", type=int, required=True)
    sp.add_argument("--out", required=True, help="results JSON (the chart goes beside it as .html)")
    sp.add_argument("--fast", action="store_true")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--image-size", type=int, default=32)
    sp.add_argument("--test-fraction", type=float, default=0.2)
    sp.add_argument("--subset", type=int, help="use a stratified random subset of this many images")
    sp.add_argument("--map", action="store_true",
                    help="also compute the 2-D UMAP map of the picks (saved beside --out)")
    sp.add_argument("--evaluate", default="own", choices=["own", "common", "both"],
                    help="whose classifier is measured: each sampler's own, one plain classifier trained fresh "
                         "on every labeled set (common), or both")
    sp.add_argument("--pretrained", metavar="FILE",
                    help="ImageNet ResNet-18/50 weights (local .pth) for the feature space of typiclust, "
                         "probcover and auto (default: learned from the images themselves: SimCLR, or k-means "
                         "patch features with --fast)")
    sp.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                    help="training and scoring precision: auto (bf16, or fp16 where a CUDA GPU lacks bf16; fp32 "
                         "on a CPU), fp32, bf16 or fp16 (GPU only)")

    sp = command("embed", cmd_embed, "compute (and cache) the 2-D UMAP map of a round's VAE latents")
    sp.add_argument("--round", type=int, help="round id (default: the latest with latents)")

    command("samplers", cmd_samplers, "list the registered samplers", project=False)
    command("devices", cmd_devices, "the devices PyTorch can train on here", project=False)
    return p


def _interrupt_on_sigterm() -> None:
    """The app stops a worker with SIGTERM: make it an interruption like
    Ctrl-C, so a round marks itself stopped and keeps the old queue instead
    of dying mid-write."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a test thread)
        pass


def _written_folder(err: OSError, args: argparse.Namespace | None) -> Path:
    """The folder a refused write was for: the failing file's, else the
    command's project (or output)."""
    if err.filename:
        return Path(os.fsdecode(err.filename)).parent
    return Path(getattr(args, "project", None) or getattr(args, "out", None) or ".")


def main(argv: Sequence[str] | None = None) -> int:
    _interrupt_on_sigterm()
    args = None
    if not (sys.argv[1:] if argv is None else argv):  # no command: the list of them, not an error about one
        build_parser().print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        args = build_parser().parse_args(argv)
        args.fn(args)
    except VaalError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; committed work is kept", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # a full disk, a read-only folder: words, not a traceback
        words = cannot_write(err, _written_folder(err, args), writing=False)
        if words is None:
            raise
        print(f"error: {words}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0
