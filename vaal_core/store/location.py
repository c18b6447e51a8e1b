"""Where a project's store lives: the folder's own SQLite file
(`project.db`), or a schema on a team's PostgreSQL server named by the
folder's `database.json` (its URL, never a password, and the schema). The
one place that tells the two apart by what the folder holds.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from vaal_core.errors import BadInput, ProjectNotFound
from vaal_core.store.db import Backend, Database

DB_NAME = "project.db"
DATABASE_FILE = "database.json"  # a team project: its store on a PostgreSQL server
URL_ENV = "VAAL_DATABASE_URL"  # init's --db when it is not given

def store_file(root: str | os.PathLike) -> Path:
    """The file that makes a folder a project: database.json when its store
    is on a server, else project.db (which may not exist yet)."""
    root = Path(root)
    return root / DATABASE_FILE if (root / DATABASE_FILE).is_file() else root / DB_NAME


def is_project(root: str | os.PathLike) -> bool:
    return store_file(root).is_file()


def database_url(url: str | None) -> str | None:
    """The PostgreSQL URL a new project is made on: `url`, else
    $VAAL_DATABASE_URL, else None (the embedded SQLite store). One holding
    a password is refused: the project folder records the URL."""
    from vaal_core.store.postgres import has_password, safe_url

    url = url or os.environ.get(URL_ENV) or None
    if url is None or url.lower() in ("sqlite", "none"):
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise BadInput(f"--db {url!r}: give a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE), "
                       "or leave it out for the embedded SQLite store")
    if has_password(url):
        raise BadInput(f"the database URL {safe_url(url)} holds a password, and the project folder records the "
                       "URL: leave the password out and set PGPASSWORD, or add a line to ~/.pgpass")
    return url


def open_database(root: Path, create: bool, url: str | None) -> Backend:
    if url is not None or (root / DATABASE_FILE).is_file():
        from vaal_core.store.postgres import PostgresDatabase

        if url is None:
            try:
                record = json.loads((root / DATABASE_FILE).read_text())
                url, schema = str(record["url"]), str(record["schema"])
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise BadInput(f"{root / DATABASE_FILE} cannot be read ({err}); it should hold "
                               '{"url": "postgresql://...", "schema": "vaal_..."}') from None
        else:
            schema = f"vaal_{uuid.uuid4().hex[:12]}"
        return PostgresDatabase(url, schema, create=create)
    db_path = root / DB_NAME
    if not create and not db_path.is_file():
        raise ProjectNotFound(f"no project at {root} (missing {DB_NAME}); "
                              f"create it with: python -m vaal_core init {root} --images DIR")
    return Database(db_path, create=create)  # only create makes a new database


def record_database(root: Path, url: str, schema: str) -> None:
    """Write the folder's database.json: the URL without its password."""
    from vaal_core.files import write_json_atomic
    from vaal_core.store.postgres import safe_url

    write_json_atomic(root / DATABASE_FILE, {"url": safe_url(url), "schema": schema}, indent=1)
