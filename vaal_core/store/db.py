"""The database layer: one connection, transactions, migrations, and
lookups by many ids.

`Backend` is what the store's modules call; `Database` is the embedded
SQLite one (WAL mode, `BEGIN IMMEDIATE`, `PRAGMA user_version`, the
bound-variable limit) and `store/postgres.py` the team one. The modules
above write plain SQL both understand: `?` placeholders, rows read by column
name, new ids from `insert()` rather than a cursor attribute, no
backend-only operators (PostgreSQL's side translates the few spellings that
differ, in one place).

It also turns the SQLite errors a user's disk or folder causes into
VaalErrors that name them: a damaged, empty or foreign file
(ProjectCorrupt: never re-initialised, only `create` makes a database), a
read-only folder and a full disk (CannotWrite).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaal_core.errors import ProjectCorrupt, SchemaTooNew, VaalError, cannot_write

# SQLite before 3.32 allows 999 bound variables per statement; chunks of
# ids stay well under it (and under PostgreSQL's 65,535).
IN_CHUNK = 500

Row = Mapping[str, Any]


class Backend:
    """What both backends share: reads built on `rows`, chunked `IN`
    lookups, and the migrations (each step one transaction)."""

    kind = ""

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        raise NotImplementedError

    _lock: threading.RLock
    _depth = 0

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction; nested calls join the outer one. Writers
        queue one after the other (`_begin` takes the write lock up front),
        so none fails half-way and a check made inside holds until the
        commit."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield
                self._commit()
            except BaseException:
                self._abort()
                raise
            finally:
                self._depth = 0

    def schema_version(self) -> int:
        raise NotImplementedError

    def _set_schema_version(self, version: int) -> None:
        raise NotImplementedError

    def where(self) -> str:
        """The database in words, for messages."""
        raise NotImplementedError

    def migration_statement(self, statement: str) -> str:
        """A migration's statement as this backend spells it (they are
        written for SQLite)."""
        return statement

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self.one(sql, params)
        return None if row is None else row[0]

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The first column of every row (what a set of ids is read with)."""
        return [r[0] for r in self.rows(sql, params)]

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

    def migrate(self, migrations: Mapping[int, str]) -> None:
        """Bring the schema up to the newest migration, each step in its own
        transaction; a database newer than this code is refused."""
        version = self.schema_version()
        newest = max(migrations)
        if version > newest:
            raise SchemaTooNew(f"{self.where()} has schema version {version}, newer than this VAAL Studio "
                               f"understands ({newest}); upgrade VAAL Studio")
        for target in range(version + 1, newest + 1):
            with self.atomic():
                # executescript() would COMMIT on its own: run the statements
                # one by one inside the transaction instead.
                for statement in split_sql(migrations[target]):
                    self.execute(self.migration_statement(statement))
                self._set_schema_version(target)


class Database(Backend):
    """A connection shared by the threads of one process (the Streamlit
    server) and safe beside other processes on the same file (a training
    worker, the CLI): writers queue on the busy timeout."""

    kind = "sqlite"

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0, create: bool = False):
        """Open the database at `path`; only with `create` may it be new. An
        existing file that is empty, damaged or holds no schema of ours
        raises ProjectCorrupt and is left exactly as it was."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        if not create and self.path.is_file() and self.path.stat().st_size == 0:
            raise self.corrupt_error()  # SQLite would take it for a new database
        with self._errors():
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        try:
            with self._errors():
                self._conn.row_factory = sqlite3.Row
                self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                if not create and not self._conn.execute("PRAGMA user_version").fetchone()[0]:
                    raise self.corrupt_error()  # a valid SQLite file, but not one of ours: never migrate it
                for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
                    self._conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    # -- SQLite's errors in words -----------------------------------------------------

    def corrupt_error(self) -> ProjectCorrupt:
        return ProjectCorrupt(f"{self.path} is not a VAAL Studio database (corrupt or empty): restore it from a "
                              "backup, or create a new project with init in a new folder")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Errors a user's disk or folder causes, as VaalErrors naming them;
        anything else (a constraint, a bug) stays as it is."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            mapped = self._user_error(err)
            if mapped is None:
                raise
            raise mapped from err

    def _user_error(self, err: sqlite3.DatabaseError) -> VaalError | None:
        code = getattr(err, "sqlite_errorcode", None)
        primary, text = (code & 0xFF if code is not None else None), str(err).lower()
        folder = self.path.parent
        if primary in (_CORRUPT, _NOTADB) or "malformed" in text or "not a database" in text:
            return self.corrupt_error()
        if primary == _FULL or "disk is full" in text or (primary == _IOERR and _no_space(folder)):
            return cannot_write(OSError(errno.ENOSPC, "disk full"), folder)
        if primary in (_READONLY, _PERM, _CANTOPEN) or "readonly" in text or "unable to open" in text:
            return cannot_write(OSError(_why_read_only(folder), "read-only"), folder)
        if primary == _IOERR or "disk i/o error" in text:
            return VaalError(f"a disk error while reading or writing {self.path} ({err}); check the disk, "
                             "then run it again")
        return None

    def _begin(self) -> None:
        # BEGIN IMMEDIATE takes the write lock up front: two writers queue on the busy timeout.
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        with self._errors():
            self._conn.execute("COMMIT")

    def _abort(self) -> None:
        self._rollback()

    def _rollback(self) -> None:
        """Roll back what is still open: after a full disk or an I/O error
        SQLite may have rolled back already, and the error that got us here
        is the one to report."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- statements -----------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock, self._errors():
            return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, params: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        with self._lock, self._errors():
            self._conn.executemany(sql, params)

    def insert(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one INSERT; returns the new row's id."""
        with self._lock, self._errors():
            return int(self._conn.execute(sql, params).lastrowid)

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        with self._lock, self._errors():
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Row | None:
        with self._lock, self._errors():
            return self._conn.execute(sql, params).fetchone()

    # -- schema -----------------------------------------------------------------

    def schema_version(self) -> int:
        return int(self.value("PRAGMA user_version"))

    def _set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def where(self) -> str:
        return str(self.path)


# SQLite's primary result codes (sqlite3.h) for the errors a user's disk or folder causes
_PERM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 8, 10, 11, 13, 14, 26


def _no_space(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _why_read_only(folder: Path) -> int:
    """EROFS for a read-only file system, else EACCES (permissions)."""
    try:
        return errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
    except OSError:
        return errno.EACCES


def split_sql(script: str) -> list[str]:
    """Statements of a migration script (they hold no ';' inside comments or
    strings)."""
    return [s for s in script.split(";") if s.strip()]
