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


class SchemaTooNew(VaalError):
    pass
