"""Named exceptions for everything a user can cause.

The engine raises these; only the edges (the CLI, a Streamlit page) turn them
into a one-line message and an exit code or an `st.error`. Each message says
what went wrong, naming the file or value, and what to do next.
"""


class VaalError(Exception):
    """Base of every error a user can cause; `str(err)` is the message to show."""


class ProjectNotFound(VaalError):
    pass


class ProjectExists(VaalError):
    pass


class BadImageFolder(VaalError):
    pass


class BadInput(VaalError):
    """A value on the command line or in a file is not acceptable."""


class UnknownClass(BadInput):
    pass


class UnknownItem(BadInput):
    pass


class UnknownSampler(BadInput):
    pass


class BudgetTooLarge(BadInput):
    pass


class WorkerBusy(VaalError):
    """Another process is training a round of this project."""


class TrainingDiverged(VaalError):
    """A loss became NaN or infinite; the round fails and the old queue stays."""


class RoundCancelled(VaalError):
    pass


class RankFailed(VaalError):
    """A process of a round run on several (torchrun) stopped or stopped answering."""


class SchemaTooNew(VaalError):
    pass


class LabelConflict(VaalError):
    """An image's label changed after the page showing it was drawn (another
    tab, another person, an import): the write is refused, not made blind.
    `changed` lists (item id, path, current label, seconds ago, source, the
    token of the gesture that wrote it), first the one the message names."""

    def __init__(self, message: str, changed: list[tuple[int, str, str | None, float, str, str | None]]):
        super().__init__(message)
        self.changed = changed


class ProjectCorrupt(VaalError):
    """project.db is not a VAAL Studio database: damaged, empty, or another
    program's file. Never re-initialised: only `init` creates a database."""


class DatabaseUnreachable(VaalError):
    """The project's database server could not be reached or dropped the
    connection (store/postgres.py); the next call connects again."""


class CannotWrite(VaalError):
    """The operating system refused a write: a read-only or foreign folder, a
    full disk, a file-size limit."""


# errno -> (what happened, what to do)
_WRITE_ERRORS = {
    "ENOSPC": ("the disk is full", "free some space and run it again"),
    "EDQUOT": ("the disk quota is used up (the disk is full for this user)", "free some space and run it again"),
    "EFBIG": ("a file would pass the file size limit of this system or process",
              "raise the limit (ulimit -f) or use a folder on another file system"),
    "EROFS": ("it is on a read-only file system", "copy the project to a writable disk"),
    "EACCES": ("it is read-only or belongs to another user (permission denied)",
               "make it writable (chmod u+w), or use (or copy the project to) a folder you can write to"),
    "EPERM": ("it is read-only or locked (operation not permitted)",
              "make it writable, or use (or copy the project to) a folder you can write to"),
}


def cannot_write(err: OSError, where: object, writing: bool = True) -> CannotWrite | None:
    """The words for an OSError a write raised (disk full, read-only, ...),
    naming `where` (the folder written to), or None for any other error.
    `writing=False`: the error may come from a read too (permission denied)."""
    import errno

    name = errno.errorcode.get(err.errno or 0)
    if name not in _WRITE_ERRORS:
        return None
    what, todo = _WRITE_ERRORS[name]
    doing = "write to" if writing or name not in ("EACCES", "EPERM") else "use"
    return CannotWrite(f"cannot {doing} {where}: {what}; {todo}")
