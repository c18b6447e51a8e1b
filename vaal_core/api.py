"""VAAL Studio from Python: a notebook or a script drives the same projects
as the app and the CLI.

    >>> import vaal_core as vc
    >>> p = vc.create_project("pets", images="~/pets", classes=["cat", "dog"])
    >>> p = vc.open_project("pets")                  # later, or in another kernel
    >>> p.round(sampler="vaal", budget=50, fast=True)["queue_length"]
    50
    >>> p.queue(limit=3)                             # a pandas DataFrame, best first
    >>> p.label("cat/001.jpg", "cat")
    >>> p.labels()
    >>> p.export("labels.csv")

Every call goes through the functions the CLI and the app use (the store,
`init_project`, `run_round`, `export_labels`, `simulate`), so the rules and
the errors are theirs: a mistake raises a `vaal_core.BadInput` (a subclass
such as `UnknownClass` saying what to do) before anything is written, every
label is one transaction, and a round refuses to start while another one
(from the app, the CLI or another kernel) trains the project.

A bare name ("pets") means a project folder in the workspace's projects/
folder (`$VAAL_HOME/projects`, where the app looks); to open one, the
current folder and the app's recent projects are tried next. Anything
with a slash, a leading '.' or '~', or a `pathlib.Path` is a path.
Projects made or opened here join the app's recent list.

pandas and plotly are imported only by the calls that return their objects,
and torch only by the calls that train, so `import vaal_core` stays fast.
"""

from __future__ import annotations

import numbers
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaal_core.errors import BadInput, CannotWrite, ProjectExists, ProjectNotFound, UnknownItem
from vaal_core.progress import describe_with_losses
from vaal_core.api_simulation import Simulation, simulate
from vaal_core.progress_bars import phase_bars

if TYPE_CHECKING:
    import pandas as pd

    from vaal_core.store import Project

__all__ = ["ProjectHandle", "Simulation", "create_project", "open_project", "simulate"]

QUEUE_COLUMNS = ["path", "score", "rank", "suggestion", "confidence", "calibrated", "item_id", "audit"]
LABEL_COLUMNS = ["path", "label", "author", "source", "time", "item_id"]


# -- finding projects ------------------------------------------------------------

def _is_name(value: str | os.PathLike) -> bool:
    """'pets' is a name; './pets', 'data/pets', '~/pets' and Path('pets') are paths."""
    return isinstance(value, str) and not value.startswith((".", "~")) and not any(s in value for s in "/\\")


def _path(value: str | os.PathLike) -> Path:
    return Path(value).expanduser().resolve()


def _project_root(name_or_path: str | os.PathLike) -> Path:
    """Where a project named or pointed at lives: a name is looked up in the
    workspace's projects/ folder, then in the current folder, then among the
    app's recent projects (the first place that holds one wins)."""
    from vaal_core.services import workspace
    from vaal_core.store import DB_NAME, is_project

    if not _is_name(name_or_path):
        root = _path(name_or_path)
        if not is_project(root):
            raise ProjectNotFound(f"no project at {root} (missing {DB_NAME}); create one with "
                                  f"vc.create_project({str(root)!r}, images=...)")
        return root
    name = str(name_or_path)
    in_home = workspace.new_project_path(name)  # a name that cannot be a folder is refused here
    here = Path(name)
    recent = [k.path for k in workspace.known_projects() if k.name == name]
    for root in (in_home, here, *recent[:1]):
        if is_project(root):
            return _path(root)
    raise ProjectNotFound(f"no project named {name!r} in {workspace.projects_dir()}, in the current folder or "
                          f"among the recent projects; create it with vc.create_project({name!r}, images=...), "
                          "or give the project folder's path")


def _remember(root: Path) -> None:
    from vaal_core.services import workspace

    # Only the app's recent list: a home it cannot write to must not fail the project's own work.
    with suppress(OSError, CannotWrite):
        workspace.remember(root)


def create_project(name: str | os.PathLike, images: str | os.PathLike, classes: Sequence[str] | str = (), *,
                   gold_from_folders: bool = False, image_size: int | None = None, exist_ok: bool = False,
                   progress: bool = True, database: str | None = None) -> "ProjectHandle":
    """Create a project from a folder of images (scanned recursively; every
    image decoded once into the project's cache) and open it.

    `name`: a bare name makes the project in the workspace's projects/
    folder (where the app lists it); a path makes it there. `classes`: the
    class names in key order (a list, or "cat,dog"); more can come later.
    `gold_from_folders`: each image's parent folder name is its hidden
    true class (for evaluation; the classes come from the folders when none
    are given). `image_size`: 32 (the default), 64 or 128. `exist_ok`: if
    the project exists, add the folder's new images to it (labels kept)
    instead of refusing. `database`: a PostgreSQL URL (no password in it:
    PGPASSWORD or ~/.pgpass) to keep the store on a team's server (default
    $VAAL_DATABASE_URL, else SQLite in the project folder). The ingest's
    report is `.ingest_report`.

        >>> p = vc.create_project("pets", images="~/pets", classes=["cat", "dog"])
        >>> p.ingest_report["added"], p.ingest_report["skipped"]
        (2000, [])
        >>> digits = vc.create_project("/tmp/digits", images="data/digits", gold_from_folders=True)
    """
    from vaal_core.data.ingest import init_project, parse_classes
    from vaal_core.services import workspace
    from vaal_core.store import is_project

    root = workspace.new_project_path(name) if _is_name(name) else _path(name)
    if is_project(root) and not exist_ok:
        raise ProjectExists(f"a project already exists at {root}; open it with vc.open_project({str(name)!r}), "
                            "or pass exist_ok=True to add the folder's new images to it")
    with phase_bars(progress) as show:
        project, report, _ = init_project(root, Path(images), parse_classes(classes, what="classes"), image_size,
                                          gold_from_folders=gold_from_folders, progress=show, database=database)
    _remember(root)
    handle = ProjectHandle(project)
    handle.ingest_report = report.to_dict()
    return handle


def open_project(name_or_path: str | os.PathLike) -> "ProjectHandle":
    """Open an existing project by its name (in the workspace's projects/
    folder, the current folder or the app's recent list) or its path.

        >>> p = vc.open_project("pets")
        >>> p = vc.open_project("~/work/pets")
    """
    from vaal_core.store import Project

    root = _project_root(name_or_path)
    project = Project.open(root)
    _remember(root)
    return ProjectHandle(project)


# -- a project -------------------------------------------------------------------

class ProjectHandle:
    """One open project: its status, rounds, queue and labels. Writes go to
    the project's store at once (one transaction each), so the app, open on
    the same project, sees them on its next refresh. `.project` is the
    store's `Project`, for anything this class does not cover."""

    ingest_report: dict[str, Any] | None = None  # what create_project's ingest found

    def __init__(self, project: Project):
        self.project = project

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def name(self) -> str:
        return self.project.root.name

    def __repr__(self) -> str:
        st = self.project.status()
        return (f"<vaal_core project {self.name!r} at {self.root}: {st['items']} images, {st['labeled']} labeled, "
                f"{st['rounds']} rounds>")

    def close(self) -> None:
        self.project.close()

    def __enter__(self) -> "ProjectHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def classes(self) -> list[str]:
        """The class names, in key order."""
        return self.project.classes()

    def add_classes(self, names: Sequence[str] | str) -> list[str]:
        """Add classes after the project's own (a list, or one comma-separated
        string); names it has already are left as they are. Returns the names
        added. The number keys follow the order: 1-9, then 0.

            >>> p.add_classes(["bird", "fish"])
            ['bird', 'fish']
        """
        from vaal_core.data.ingest import parse_classes

        return self.project.add_classes(parse_classes(names, what="add_classes"))

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class; its labels, suggestions and history follow it."""
        self.project.rename_class(old, new)

    def reorder_classes(self, names: Sequence[str]) -> None:
        """Put the classes in this order (every class, once): the number keys follow it."""
        self.project.reorder_classes(list(names))

    def remove_class(self, name: str) -> None:
        """Remove a class that no label ever used (history included); a used
        one is refused: rename it instead."""
        self.project.remove_class(name)

    def status(self) -> dict[str, Any]:
        """Counts of images, labels and rounds: the dict `python -m
        vaal_core status PROJECT --json` prints (`image_folder_problem`: a
        sentence when the image folder is gone, else None).

            >>> p.status()["labeled"], p.status()["per_class"]
            (12, {'cat': 7, 'dog': 5})
        """
        from vaal_core.data.images import status_of

        return status_of(self.project)

    def add_images(self, *, progress: bool = True) -> dict[str, Any]:
        """Scan the image folder again and add its new images (labels kept;
        images whose file has gone are marked missing, and one moved or
        renamed inside the folder keeps its item: `renamed` counts them;
        `hidden` counts the files and folders named with a leading "." left
        out): the ingest's report, as `create_project(..., exist_ok=True)` gives it."""
        return self._ingest(self.project.image_root, progress)

    def move_images(self, folder: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
        """The project's images moved to `folder` (another disk, a renamed
        folder): check that they are there (each image's path and size, and
        a sample's bytes), read them from there from now on, and scan it as
        `add_images` does. Labels, rounds and the queue are kept; images not
        found there are marked missing, their labels kept. Raises
        BadImageFolder, naming a file, when `folder` holds none of the
        project's images or other images under their names, and changes
        nothing then. The report's `moved` says what was found.

            >>> p.move_images("/mnt/big-disk/pets")["moved"]
            {'old': '/home/me/pets', 'new': '/mnt/big-disk/pets', 'images': 2000, 'found': 2000, 'hashed': 256}
        """
        return self._ingest(_path(folder), progress, moved=True)

    def _ingest(self, folder: Path, progress: bool, moved: bool = False) -> dict[str, Any]:
        from vaal_core.data.ingest import init_project

        with phase_bars(progress) as show:
            scanned, report, _ = init_project(self.project.root, folder, progress=show, moved=moved)
        scanned.close()  # its own connection; this handle's reads the same store
        return report.to_dict()

    def round(self, sampler: str = "auto", budget: int | None = None, *, fast: bool = False, seed: int = 0,
              device: str = "auto", fresh: bool = False, suggest: bool = True, pretrained: str | None = None,
              audit: float | None = None, progress: bool = True) -> dict[str, Any]:
        """Train what `sampler` needs and write a new labeling queue (its
        ranked batch of `budget` images); blocks until done, with a progress
        bar per phase. Returns the round's summary: what `round --json`
        prints, less the queue itself (see `queue()`) and with its length.

        `budget`: the queue's ranked batch (default 5% of the images).
        `fast`: small models, few iterations (seconds on a CPU). `suggest`:
        also train the task model for label suggestions. `audit`: the share
        of the batch drawn at random to measure the suggestions honestly
        (default 0.05). Raises WorkerBusy when another process trains this
        project, and BadInput (UnknownSampler, BudgetTooLarge, ...) before
        any training. An interrupted round keeps the previous queue.

            >>> summary = p.round(sampler="vaal", budget=50, fast=True)
            >>> summary["round_id"], summary["queue_length"]
            (1, 50)
        """
        from vaal_core.loop.round import RoundConfig, check_round, run_round, slow_on_cpu

        cfg = RoundConfig(sampler=sampler, budget=budget, seed=seed, device=device, fast=fast, fresh=fresh,
                          suggest=suggest, pretrained=pretrained, **({} if audit is None else {"audit": audit}))
        check_round(self.project, cfg)  # a mistake is refused before the note about slow rounds
        if progress and slow_on_cpu(cfg):
            print("note: full-size models on a CPU train slowly (hours for a large pool); pass fast=True for a "
                  "quick round, or run on a GPU", file=sys.stderr, flush=True)
        with phase_bars(progress, describe_with_losses) as show:
            result = run_round(self.project, cfg, progress=show)
        summary = {k: v for k, v in result.to_dict().items() if k != "queue"}
        summary["queue_length"] = len(result.queue)
        return summary

    def queue(self, limit: int | None = None) -> "pd.DataFrame":
        """The last round's batch, its images still unlabeled, in rank
        order, with the suggested class and its confidence (the task
        model's, combined with a linear probe on the feature space when the
        round had one; None where the round trained no task model). Columns:
        path, score, rank, suggestion, confidence, calibrated (whether that
        confidence is calibrated on held-out labels; False: a raw one, often
        overconfident), item_id, audit (a random audit pick, not the
        sampler's). `.attrs` holds the round id, the suggestions' accuracy
        estimate (`attrs["task"]`: `model` says what made them, `accuracy`
        theirs, `task_accuracy` the task model's alone, `probe_accuracy` the
        probe's; None without a task model) and `attrs["calibration"]`
        (`calibrated`, `words` as the Label page says them, `preselect_at`).

            >>> p.queue(limit=2)
                      path     score  rank suggestion  confidence  calibrated  item_id  audit
            0  cat/014.jpg  0.981231     1        cat    0.912300        True       15  False
            1  dog/201.jpg  0.977002     2        dog    0.640522        True      702  False
        """
        import pandas as pd

        from vaal_core.services.labeling import queue_suggestions

        if limit is not None and limit < 0:
            raise BadInput(f"limit must be 0 or more, got {limit}")
        out = queue_suggestions(self.project, limit)
        trust = out["calibration"]
        rows = [{**r, "calibrated": None if r["confidence"] is None else trust["calibrated"]} for r in out["items"]]
        frame = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
        frame.attrs.update(round=out["round"], task=out["task"], calibration=trust)
        return frame

    def label(self, item: str | os.PathLike | int, label: str | None, *, annotator: str | None = None,
              author: str = "user") -> dict[str, Any]:
        """Label one image, given by its path (relative to the image folder,
        as in `queue()`) or its item id; `label=None` clears its label. One
        transaction, kept in the history like a label given in the app, with
        who gave it (`annotator`; `author` is its older name). An
        unknown class or image raises UnknownClass / UnknownItem (both
        BadInput) and writes nothing.

            >>> p.label("cat/001.jpg", "cat")
            {'item_id': 1, 'path': 'cat/001.jpg', 'label': 'cat'}
            >>> p.label(1, "dog")
            {'item_id': 1, 'path': 'cat/001.jpg', 'label': 'dog'}
        """
        item_id, path = self._item(item)
        self.project.set_label(item_id, label, author=annotator or author, source="api")
        return {"item_id": item_id, "path": path, "label": label}

    def import_labels(self, source: "str | os.PathLike | pd.DataFrame | Mapping[str, str]", *, replace: bool = True,
                      annotator: str | None = None, add_classes: bool = False) -> dict[str, Any]:
        """Many labels at once: a `path,label` CSV file or a JSON export (by suffix), a
        DataFrame with path and label columns (as `labels()` gives), or a {path: label} dict.
        Every row is checked first (an unknown image, a class the project lacks without
        `add_classes`, or an image given two labels, raises BadInput naming the row; nothing is
        written), then one undoable action, as in the app. `replace=False` leaves images labeled
        otherwise now as they are. Returns the counts (rows, new: unlabeled before, changed:
        labeled otherwise before, unchanged, written) and the classes added.

            >>> p.import_labels(old_labels_df, replace=False)
            {'rows': 500, 'new': 420, 'changed': 12, 'unchanged': 68, 'written': 420, 'classes_added': []}
        """
        from vaal_core.services import labels_io

        rows, name = labels_io.rows_of(source)
        plan = labels_io.plan_import(self.project, rows, name, add_classes=add_classes)
        written = labels_io.apply_import(self.project, plan, annotator or "import", replace=replace)
        return {"rows": plan.rows, "new": len(plan.new), "changed": len(plan.changed),
                "unchanged": plan.unchanged, "written": written, "classes_added": list(plan.new_classes)}

    def _item(self, item: str | os.PathLike | int) -> tuple[int, str]:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            found = self.project.item(int(item))  # UnknownItem names the id
            return found.id, found.path
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item).replace(os.sep, "/")
            try:
                return self.project.item_id(path), path
            except UnknownItem:  # names the path, unless it is an item's written another way (absolute, ./)
                from vaal_core.services.labels_io import item_path

                ids, _ = self.project.known_files()
                key = item_path(path, ids, self.project.image_root)
                if key is None:
                    raise
                return ids[key], key
        raise BadInput(f"give an image by its path (as in the queue) or its item id, not {item!r}")

    def labels(self) -> "pd.DataFrame":
        """Every labeled image, sorted by path, with who labeled it, how
        ('ui', 'grid', 'suggestion' and 'explore' in the app, 'csv' for an
        import, 'api' from here) and when (UTC). Columns: path, label,
        author, source, time, item_id.

            >>> p.labels().groupby("label").size()
            label
            cat    7
            dog    5
        """
        import pandas as pd

        frame = pd.DataFrame(self.project.label_rows()).rename(columns={"created_at": "time"})
        frame = frame.reindex(columns=LABEL_COLUMNS)  # the columns even with no labels yet
        frame["time"] = pd.to_datetime(frame["time"], format="ISO8601", utc=True)
        return frame

    def export(self, out: str | os.PathLike, format: str | None = None) -> dict[str, Any]:
        """Write the labels as a `path,label` CSV, a JSON file or an
        ImageFolder copy (a folder per class). The format is `format`, or
        the file's suffix (.csv, .json). Returns what `export --json` prints.

            >>> p.export("labels.csv")
            {'format': 'csv', 'out': 'labels.csv', 'labels': 12}
            >>> p.export("~/pets-labeled", format="imagefolder")["labels"]
            12
        """
        from vaal_core.services.labels_io import export_labels

        out = Path(out).expanduser()
        fmt = format or {".csv": "csv", ".json": "json"}.get(out.suffix.lower())
        if fmt is None:
            raise BadInput(f"say which format to write {out} in: format='csv', 'json' or 'imagefolder'")
        return export_labels(self.project, fmt, out)
