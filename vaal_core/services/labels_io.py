"""Labels in and out: CSV and JSON files, and an ImageFolder copy.

Imports are all-or-nothing: every row is checked before any is written, so a
typo in row 900 leaves the project exactly as it was and the message names
the row. Exports write to a temporary name and rename at the end, so an
interrupted export never looks finished.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import shutil
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaal_core.errors import BadInput, CannotWrite, UnknownClass, UnknownItem
from vaal_core.files import atomic_dir, write_atomic
from vaal_core.store import Project, now
from vaal_core.store.classes import check_class_name

FORMATS = ("csv", "json", "imagefolder")
_EXTRA = "\0extra"  # where csv.DictReader puts a row's values past the header's columns


def labeled_rows(project: Project) -> list[dict[str, str]]:
    """[{path, label}] of every labeled item, sorted by path."""
    labels = project.labels()
    return sorted(({"path": it.path, "label": labels[it.id]} for it in project.items() if it.id in labels),
                  key=lambda r: r["path"])


def labels_text(project: Project, fmt: str, rows: list[dict[str, str]] | None = None) -> str:
    """The labels as CSV (path,label) or JSON text: what a file export
    writes and what the app offers as a download."""
    rows = labeled_rows(project) if rows is None else rows
    if fmt == "csv":
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=["path", "label"], lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps({"project": str(project.root), "image_root": str(project.image_root),
                           "classes": project.classes(), "exported_at": now(), "labels": rows}, indent=1)
    raise BadInput(f"unknown text format {fmt!r}; use csv or json")


STDOUT = "-"  # export's out for standard output, as Unix tools spell it


def export_labels(project: Project, fmt: str, out: Path | str) -> dict[str, Any]:
    """Write the labels as csv, json or an ImageFolder tree; returns a
    summary. `out` "-" is standard output (csv and json)."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    to_stdout = str(out) == STDOUT
    out = Path(out)
    if fmt == "imagefolder":
        if to_stdout:
            raise BadInput("an ImageFolder copy is a folder of images: give a folder to write it in, not -")
        return _export_imagefolder(project, labeled_rows(project), out)
    if not to_stdout and out.is_dir():
        raise BadInput(f"{out} is a folder; give a file to write the {fmt} export to, "
                       f"e.g. {out / ('labels.' + fmt)}")
    rows = labeled_rows(project)
    if to_stdout:
        sys.stdout.write(labels_text(project, fmt, rows))
        sys.stdout.flush()
    else:
        write_atomic(out, labels_text(project, fmt, rows))
    _log_export(project, {"format": fmt, "out": str(out), "labels": len(rows)})
    return {"format": fmt, "out": str(out), "labels": len(rows)}


def _export_imagefolder(project: Project, rows: list[dict[str, str]], out: Path) -> dict[str, Any]:
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} exists and is not empty; give a new folder for the ImageFolder export")
    missing = []
    with atomic_dir(out, staging=out.with_name(out.name + ".partial")) as tmp:
        for row in rows:
            src = project.image_root / row["path"]
            # Flatten sub-folders into the name so two 'img1.jpg' never collide.
            dest = tmp / row["label"] / row["path"].replace("/", "__")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(src, dest)
            except OSError as err:
                missing.append({"path": row["path"], "reason": err.strerror or str(err)})
        for cls in project.classes():  # every class gets its folder, labeled or not yet
            (tmp / cls).mkdir(parents=True, exist_ok=True)
    _log_export(project, {"format": "imagefolder", "out": str(out), "labels": len(rows)})
    return {"format": "imagefolder", "out": str(out), "labels": len(rows) - len(missing), "not_copied": missing}


def _log_export(project: Project, payload: dict[str, Any]) -> None:
    try:
        project.log_event("export", payload)
    except CannotWrite:
        pass  # a read-only project still exports; only its event log misses this one


def read_label_file(path: Path, fmt: str = "csv") -> list[tuple[str, str, str]]:
    """Rows of a `path,label` CSV file (or, `fmt="json"`, a JSON export) as
    (where, path, label), `where` naming the file and line for messages."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"label file {path} is a folder, not a file; give the path of a CSV file with the "
                       "columns path,label" + (" or of a JSON export" if fmt == "json" else ""))
    if not path.is_file():
        raise BadInput(f"label file {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadInput(f"cannot read label file {path}: {err.strerror or err}") from None
    return parse_labels(data, str(path), fmt)


def parse_labels(data: bytes, name: str, fmt: str) -> list[tuple[str, str, str]]:
    """(where, path, label) rows of a label file's bytes: a `path,label` CSV,
    or JSON as the JSON export writes it ({"labels": [{path, label}, ...]},
    or the list alone). `name` is the file as messages call it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadInput(f"{name} is not UTF-8 text ({err.reason}); save it as UTF-8") from None
    if fmt == "csv":
        return _csv_rows(text, name)
    if fmt == "json":
        return _json_rows(text, name)
    raise BadInput(f"unknown label file format {fmt!r}; use csv or json")


# What a label file's header may separate its columns with: a comma, or the
# semicolon a spreadsheet writes where the comma is the decimal sign, or a tab.
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}


def _delimiter(text: str) -> str:
    """The delimiter whose split of the header line names both path and label (default: comma)."""
    header = text.split("\n", 1)[0]
    for delimiter in _DELIMITERS:
        fields = {f.strip().strip('"').lower() for f in header.split(delimiter)}
        if {"path", "label"} <= fields:
            return delimiter
    return ","


def _csv_rows(text: str, name: str) -> list[tuple[str, str, str]]:
    delimiter = _delimiter(text)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA, delimiter=delimiter)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise BadInput(f"{name} must have a header row with the columns path,label "
                           f"(found: {','.join(reader.fieldnames or []) or 'nothing'})")
        reader.fieldnames = fields
        rows = []
        for r in reader:
            if any(v.strip() for v in r.get(_EXTRA, ())):  # a value with no column: never drop it silently
                raise BadInput(f"{name} line {reader.line_num}: {len(fields) + len(r[_EXTRA])} values where "
                               f"the header has {len(fields)} columns ({delimiter.join(fields)}); put a path "
                               f"or label that holds a {_DELIMITERS[delimiter]} in double quotes "
                               f'("a{delimiter}b.jpg")')
            rows.append((f"{name} line {reader.line_num}", (r.get("path") or "").strip(),
                         (r.get("label") or "").strip()))
        return rows
    except csv.Error as err:
        raise BadInput(f"{name} is not a valid CSV file: {err}") from None


def _json_rows(text: str, name: str) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(f"{name} is not valid JSON ({err.msg} at line {err.lineno})") from None
    entries = data.get("labels") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise BadInput(f"{name} holds no list of labels: give {{\"labels\": [{{\"path\": ..., \"label\": ...}}]}}, "
                       "as the JSON export writes it")
    rows = []
    for k, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise BadInput(f"{name} label {k}: {entry!r} is not an object with a path and a label")
        path, label = entry.get("path"), entry.get("label")
        rows.append((f"{name} label {k}", path.strip() if isinstance(path, str) else "",
                     label.strip() if isinstance(label, str) else ""))
    return rows


def rows_of(source: Any) -> tuple[list[tuple[str, str, str]], str]:
    """(where, path, label) rows of what Python hands an import (a CSV or
    JSON file by its suffix, a DataFrame with path and label columns, a
    {path: label} dict), and its name for messages; values stripped as a
    CSV's are."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser().resolve()
        return read_label_file(path, "json" if path.suffix.lower() == ".json" else "csv"), str(path)
    if isinstance(source, Mapping):
        pairs, what = list(source.items()), "the dict"
    elif hasattr(source, "columns"):  # a DataFrame
        if not {"path", "label"} <= set(source.columns):
            raise BadInput(f"the DataFrame needs the columns path and label (it has: "
                           f"{', '.join(map(str, source.columns))})")
        pairs, what = list(zip(source["path"], source["label"])), "the DataFrame"
    else:
        raise BadInput(f"give the labels as a CSV or JSON file, a DataFrame (path, label) or a {{path: label}} "
                       f"dict, not {type(source).__name__}")
    rows = [(f"{what}'s row {k}", "" if p is None else os.fspath(p).strip() if isinstance(p, os.PathLike)
             else str(p).strip(), "" if lab is None or lab != lab else str(lab).strip())  # lab != lab: NaN
            for k, (p, lab) in enumerate(pairs, start=1)]
    return rows, what


def item_path(path: str, known: Collection[str], image_root: Path) -> str | None:
    """The item path a label file means by `path`, or None. As written
    first; then as other tools write paths: with backslashes (Windows),
    "./" or doubled slashes, absolute inside the image folder, or starting
    with the image folder's own name (a glob run from the folder above)."""
    if path in known:
        return path
    key = posixpath.normpath(path.replace("\\", "/"))
    root = Path(image_root)
    for prefix in dict.fromkeys((root.as_posix(), root.resolve().as_posix(), root.name)):
        if key.startswith(prefix.rstrip("/") + "/"):
            key = key[len(prefix.rstrip("/")) + 1:]
            break
    return key if key in known else None


@dataclass(frozen=True)
class ImportPlan:
    """What a label file would change, checked whole before anything is
    written: each image it names, with the label it gives and the one it
    has now (`current`, None: unlabeled)."""

    name: str
    rows: int
    labels: dict[int, str]  # item id -> the file's label
    current: dict[int, str | None]  # item id -> its label when the file was read
    # Classes the file names that the project lacks, in the file's order:
    # added with the labels, in the same transaction (only when asked for).
    new_classes: tuple[str, ...] = ()

    @property
    def new(self) -> list[int]:
        return [i for i in self.labels if self.current[i] is None]

    @property
    def changed(self) -> list[int]:
        return [i for i, lab in self.labels.items() if self.current[i] is not None and self.current[i] != lab]

    @property
    def unchanged(self) -> int:
        return sum(self.current[i] == lab for i, lab in self.labels.items())

    def pairs(self, replace: bool = True) -> list[tuple[int, str]]:
        """(item id, label) to write: the new ones, and with `replace` the changed ones."""
        return [(i, self.labels[i]) for i in self.new + (self.changed if replace else [])]


def plan_import(project: Project, rows: list[tuple[str, str, str]], name: str,
                add_classes: bool = False, switch: str = "add_classes=True") -> ImportPlan:
    """Check every row against the project (known image, one label per
    image, a known class); BadInput names the first bad row. A class the
    project lacks is refused, naming every such class the file uses and
    `switch` (how the caller asks for them), unless `add_classes`: then the
    plan adds them (`new_classes`)."""
    ids, _ = project.known_files()
    classes = set(project.classes())
    wanted: dict[int, str] = {}
    missing: dict[str, str] = {}  # class the project lacks -> the first row that names it
    for where, path, label in rows:
        if not path or not label:
            raise BadInput(f"{where}: both path and label are needed (got path={path!r}, label={label!r})")
        key = item_path(path, ids, project.image_root)
        if key is None:
            raise UnknownItem(f"{where}: {path!r} is not an image of this project "
                              f"(paths are relative to {project.image_root})")
        if label not in classes and label not in missing:
            try:
                check_class_name(label)
            except BadInput as err:
                raise BadInput(f"{where}: {err}") from None
            missing[label] = where
        if ids[key] in wanted and wanted[ids[key]] != label:
            raise BadInput(f"{where}: {path!r} is labeled {wanted[ids[key]]!r} in an earlier row and {label!r} here")
        wanted[ids[key]] = label
    if missing and not add_classes:
        first, where = next(iter(missing.items()))
        more = f" (the file names {len(missing)} classes the project lacks: {', '.join(missing)})" \
            if len(missing) > 1 else ""
        raise UnknownClass(f"{where}: unknown class {first!r}{more}; the project's classes are: "
                           f"{', '.join(project.classes()) or '(none)'}; fix the file, or add the classes with "
                           f"its labels ({switch})")
    return ImportPlan(name, len(rows), wanted, project.labels_of(list(wanted)), tuple(missing))


def apply_import(project: Project, plan: ImportPlan, author: str, replace: bool = True,
                 token: str | None = None) -> int:
    """Write a plan as one undoable action, only if none of its images' labels
    changed since it was read (LabelConflict otherwise, naming one); returns
    how many labels changed."""
    pairs = plan.pairs(replace)
    with project.atomic():  # the classes come with the labels or not at all (a conflict adds none)
        added = project.add_classes(plan.new_classes) if plan.new_classes else []
        changed = project.set_labels(pairs, author=author, source="csv", token=token,
                                     seen={i: plan.current[i] for i, _ in pairs}) or 0
        project.log_event("import", {"file": plan.name, "rows": plan.rows, "changed": changed,
                                     **({"classes_added": added} if added else {})})
    return changed


def import_labels(project: Project, path: Path, author: str = "import", fmt: str = "csv",
                  replace: bool = True, add_classes: bool = False, switch: str = "add_classes=True") -> dict[str, Any]:
    """Apply a `path,label` CSV or a JSON export (paths relative to the
    image root). Checks every row first; any unknown path, or a class the
    project lacks without `add_classes`, aborts with no change.
    `replace=False` keeps the labels that differ (`kept`)."""
    plan = plan_import(project, read_label_file(path, fmt), str(path), add_classes, switch)
    changed = apply_import(project, plan, author, replace=replace)
    return {"file": str(path), "rows": plan.rows, "changed": changed, "unchanged": plan.unchanged,
            "kept": 0 if replace else len(plan.changed), "classes_added": list(plan.new_classes)}
