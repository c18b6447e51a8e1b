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
import shutil
from pathlib import Path
from typing import Any

from vaal_core.errors import BadInput, CannotWrite, UnknownClass, UnknownItem
from vaal_core.files import atomic_dir, write_atomic
from vaal_core.store import Project, now

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


def export_labels(project: Project, fmt: str, out: Path) -> dict[str, Any]:
    """Write the labels as csv, json or an ImageFolder tree; returns a summary."""
    out = Path(out)
    if fmt not in FORMATS:
        raise BadInput(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if fmt == "imagefolder":
        return _export_imagefolder(project, labeled_rows(project), out)
    rows = labeled_rows(project)
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


def read_label_csv(path: Path) -> list[tuple[int, str, str]]:
    """Rows of a `path,label` CSV as (line number, path, label)."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"label file {path} is a folder, not a file; give the path of a CSV file with the "
                       "columns path,label")
    if not path.is_file():
        raise BadInput(f"label file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, restkey=_EXTRA)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "path" not in fields or "label" not in fields:
                raise BadInput(f"{path} must have a header row with the columns path,label "
                               f"(found: {','.join(reader.fieldnames or []) or 'nothing'})")
            reader.fieldnames = fields
            rows = []
            for r in reader:
                if any(v.strip() for v in r.get(_EXTRA, ())):  # a value with no column: never drop it silently
                    raise BadInput(f"{path} line {reader.line_num}: {len(fields) + len(r[_EXTRA])} values where "
                                   f"the header has {len(fields)} columns ({','.join(fields)}); put a path or "
                                   'label that holds a comma in double quotes ("a,b.jpg")')
                rows.append((reader.line_num, (r.get("path") or "").strip(), (r.get("label") or "").strip()))
            return rows
    except UnicodeDecodeError as err:
        raise BadInput(f"{path} is not UTF-8 text ({err.reason}); save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise BadInput(f"{path} is not a valid CSV file: {err}") from None
    except OSError as err:
        raise BadInput(f"cannot read label file {path}: {err.strerror or err}") from None


def import_labels(project: Project, csv_path: Path, author: str = "import") -> dict[str, Any]:
    """Apply a `path,label` CSV (paths relative to the image root). Checks
    every row first; any unknown path or class aborts with no change."""
    rows = read_label_csv(csv_path)
    ids, _ = project.known_files()
    classes = set(project.classes())
    pairs, seen = [], {}
    for line, path, label in rows:
        where = f"{csv_path} line {line}"
        key = path.replace(os.sep, "/")
        if not path or not label:
            raise BadInput(f"{where}: both path and label are needed (got path={path!r}, label={label!r})")
        if key not in ids:
            raise UnknownItem(f"{where}: {path!r} is not an image of this project "
                              f"(paths are relative to {project.image_root})")
        if label not in classes:
            raise UnknownClass(f"{where}: unknown class {label!r}; the project's classes are: "
                               f"{', '.join(project.classes()) or '(none)'}")
        if key in seen and seen[key] != label:
            raise BadInput(f"{where}: {path!r} is labeled {seen[key]!r} earlier in the file and {label!r} here")
        seen[key] = label
        pairs.append((ids[key], label))
    changed = project.set_labels(pairs, author=author, source="csv")
    project.log_event("import", {"file": str(csv_path), "rows": len(rows), "changed": changed})
    return {"file": str(csv_path), "rows": len(rows), "changed": changed, "unchanged": len(pairs) - changed}
