"""The database layer: one connection, transactions, migrations, and
lookups by many ids.

This is the one place that knows the database is SQLite (WAL mode, `BEGIN
IMMEDIATE`, `PRAGMA user_version`, the bound-variable limit). The modules
above it write plain SQL that PostgreSQL understands too: `?` placeholders,
rows read by column name, new ids from `insert()` rather than a cursor
attribute, no SQLite-only operators. A second backend plugs in here.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from vaal_core.errors import SchemaTooNew

# SQLite before 3.32 allows 999 bound variables per statement; chunks of
# ids stay well under it (and under PostgreSQL's 65,535).
IN_CHUNK = 500

Row = Mapping[str, Any]


class Database:
    """A connection shared by the threads of one process (the Streamlit
    server) and safe beside other processes on the same file (a training
    worker, the CLI): writers queue on the busy timeout."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        for pragma in (f"busy_timeout = {int(busy_timeout_s * 1000)}", "journal_mode = WAL",
                       "synchronous = NORMAL", "foreign_keys = ON"):
            self._conn.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction; nested calls join the outer one. BEGIN
        IMMEDIATE takes the write lock up front, so two writers queue on the
        busy timeout instead of failing half-way."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    # -- statements -----------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, params: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        with self._lock:
            self._conn.executemany(sql, params)

    def insert(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one INSERT; returns the new row's id."""
        with self._lock:
            return int(self._conn.execute(sql, params).lastrowid)

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def rows_in(self, sql: str, ids: Iterable[int], params: Sequence[Any] = ()) -> list[Row]:
        """`sql` with `{ids}` standing for an IN list, run over the ids in
        chunks (a lookup of 50,000 ids must not hit the bound-variable
        limit). `params` come before the ids; rows come in chunk order."""
        ids = [int(i) for i in ids]
        out: list[Row] = []
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            out += self.rows(sql.format(ids=",".join("?" * len(chunk))), (*params, *chunk))
        return out

    # -- schema -----------------------------------------------------------------

    def migrate(self, migrations: Mapping[int, str]) -> None:
        """Bring the schema up to the newest migration, each step in its own
        transaction; a database newer than this code is refused."""
        version = self.value("PRAGMA user_version")
        newest = max(migrations)
        if version > newest:
            raise SchemaTooNew(f"{self.path} has schema version {version}, newer than this VAAL Studio "
                               f"understands ({newest}); upgrade VAAL Studio")
        for target in range(version + 1, newest + 1):
            with self.atomic():
                # executescript() would COMMIT on its own: run the statements
                # one by one inside the transaction instead.
                for statement in split_sql(migrations[target]):
                    self.execute(statement)
                self.execute(f"PRAGMA user_version = {int(target)}")

    def schema_version(self) -> int:
        return int(self.value("PRAGMA user_version"))


def split_sql(script: str) -> list[str]:
    """Statements of a migration script (they hold no ';' inside comments or
    strings)."""
    return [s for s in script.split(";") if s.strip()]
