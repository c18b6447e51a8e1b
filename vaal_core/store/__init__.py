"""The project store: one SQLite file per project, or a schema on a team's
PostgreSQL server, split by concern (see project.py for the map). `Project`
is the handle everything else uses."""

from vaal_core.store.items import Item, now
from vaal_core.store.project import DATABASE_FILE, DB_NAME, Project, is_project, store_file
from vaal_core.store.queue import Suggestion

__all__ = ["DATABASE_FILE", "DB_NAME", "Item", "Project", "Suggestion", "is_project", "now", "store_file"]
