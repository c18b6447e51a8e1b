"""The command line's label commands: `classes`, `label` and `export`.

Each command takes the parsed arguments and the open project and returns
what to print: the `--json` object and the text. cli.py builds the parser
(with `add_arguments` of each) and prints; nothing here prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from vaal_core.errors import BadInput

Output = tuple[dict[str, Any], str | None]  # None: the command printed already


def classes(args: argparse.Namespace, project) -> Output:
    """List the classes with their keys and label counts, after the changes
    asked for: added, renamed, put in order, removed, in that order and in
    one transaction (a refused change leaves the classes as they were)."""
    from vaal_core.data.ingest import parse_classes
    from vaal_core.services.label_words import class_keys

    renames = []
    for given in args.rename or []:
        old, sep, new = given.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise BadInput(f"--rename takes OLD=NEW, got {given!r}")
        renames.append((old.strip(), new.strip()))
    added: list[str] = []
    if args.add or renames or args.order or args.remove:  # a plain listing takes no write lock
        with project.atomic():
            added = project.add_classes(parse_classes(args.add, what="--add"))
            for old, new in renames:
                project.rename_class(old, new)
            if args.order:
                project.reorder_classes(parse_classes(args.order, what="--order"))
            for name in args.remove or []:
                project.remove_class(name)
    names, counts = project.classes(), project.status(team=False)["per_class"]
    added = [n for n in added if n in names]  # not one removed again by the same command
    rows = [{"key": key, "name": name, "labels": counts.get(name, 0)}
            for key, name in zip(class_keys(names), names)]
    lines = [f"{r['key'] or '-':>3}  {r['name']}  ({r['labels']:,} label{'' if r['labels'] == 1 else 's'})"
             for r in rows]
    head = f"{len(names)} classes (number key, name, labels)" if names else \
        "no classes yet: add some with --add a,b,c"
    if added:
        head += f"; added: {', '.join(added)}"
    return {"classes": rows, "added": added}, "\n".join([head, *lines])


def add_classes_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--add", metavar="A,B", help="comma-separated class names to add after the project's own")
    sp.add_argument("--rename", metavar="OLD=NEW", action="append",
                    help="rename a class; its labels follow it (give it again for several)")
    sp.add_argument("--order", metavar="A,B,C", help="every class, in the order of the number keys 1-9, then 0")
    sp.add_argument("--remove", metavar="NAME", action="append",
                    help="remove a class no label ever used (give it again for several)")


def label(args: argparse.Namespace, project) -> Output:
    from vaal_core.services.labels_io import import_labels

    # Labeling while a round trains is allowed: that round uses the labels it
    # started with, and the queue hides items labeled since.
    out = import_labels(project, Path(args.csv or args.json_file), author=args.annotator or "import",
                        fmt="csv" if args.csv else "json", replace=not args.keep, add_classes=args.add_classes,
                        switch="--add-classes")
    added = f"; classes added: {', '.join(out['classes_added'])}" if out["classes_added"] else ""
    return out, (f"{out['changed']} labels set from {out['file']} ({out['unchanged']} unchanged"
                 + (f", {out['kept']} labeled otherwise kept" if out["kept"] else "") + f"){added}")


def add_label_arguments(sp: argparse.ArgumentParser) -> None:
    source = sp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="a CSV file with the columns path,label")
    source.add_argument("--json-file", metavar="FILE", help="labels as `export --format json` writes them")
    sp.add_argument("--keep", action="store_true",
                    help="leave the images labeled otherwise now as they are (default: the file's label wins)")
    sp.add_argument("--annotator", metavar="NAME", help="who gave these labels (default: import)")
    sp.add_argument("--add-classes", action="store_true",
                    help="add the classes the file names that the project lacks (default: refuse the file)")


def export(args: argparse.Namespace, project) -> Output:
    from vaal_core.services.labels_io import STDOUT, export_labels

    out = export_labels(project, args.format, args.out)
    text = f"exported {out['labels']} labels as {out['format']} to {out['out']}"
    for miss in out.get("not_copied", []):
        text += f"\n  not copied {miss['path']}: {miss['reason']}"
    if args.out == STDOUT:  # the labels went to standard output: what is said goes beside them, to stderr
        print(json.dumps(out) if args.json else text.replace(" to -", " to standard output"), file=sys.stderr)
        return out, None
    return out, text


def add_export_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", required=True, choices=["csv", "json", "imagefolder"])
    sp.add_argument("--out", required=True, help="the file (csv, json) or folder (imagefolder) to write; "
                                                 "- for standard output")


# name -> (the command, its one-line help, what adds its arguments), in the order `--help` lists them
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, Any], Output], str,
                          Callable[[argparse.ArgumentParser], None]]] = {
    "classes": (classes, "list the classes with their keys and label counts; add, rename, reorder or remove them",
                add_classes_arguments),
    "label": (label, "set labels from a CSV file with the columns path,label, or a JSON export", add_label_arguments),
    "export": (export, "write the labels as csv, json or an ImageFolder copy", add_export_arguments),
}
