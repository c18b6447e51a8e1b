"""The project store: one SQLite file per project, split by concern (see
project.py for the map). `Project` is the handle everything else uses."""

from vaal_core.store.items import Item, now
from vaal_core.store.project import DB_NAME, Project
from vaal_core.store.queue import Suggestion

__all__ = ["DB_NAME", "Item", "Project", "Suggestion", "now"]
