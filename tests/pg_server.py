"""A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package.

    server = PgServer().start()      # initdb + pg_ctl start on 127.0.0.1, a free port
    url = server.new_database("t_x") # postgresql://vaal@127.0.0.1:PORT/t_x (password: server.password)
    server.kill()                    # SIGKILL the postmaster (a crash)
    server.restart()                 # the same data folder and port again (crash recovery runs)
    server.stop()                    # pg_ctl stop, then the temp folder is removed

Every server lives in a fresh temp folder (vaal-pg-*) on a fresh port. The
superuser `postgres` connects without a password (trust); role `vaal` (LOGIN
CREATEDB, password `vaal-secret`) must give its password over TCP
(scram-sha-256). initdb refuses to run as root, so as root the server runs as
the system user `vaaltest` (created here when missing). A server left behind by
a test run that was killed is stopped and its folder removed by the next start.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from vaal_core.data.cache import process_running

SKIP_REASON = "PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it"
SYSTEM_USER = "vaaltest"
ROLE = "vaal"
PASSWORD = "vaal-secret"
PREFIX = "vaal-pg-"
TIMEOUT = 60  # seconds pg_ctl waits for the server to start or stop

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    # No fsync: a killed server loses nothing (the kernel keeps what it wrote),
    # only a machine's crash would. synchronous_commit stays on: off would lose
    # the last commits on kill(), and crash tests check that they survive.
    "fsync": "off",
    "full_page_writes": "off",
    # Robust in containers: no huge pages (cgroup hugetlb limits), dynamic
    # shared memory as files in the data folder (a small /dev/shm).
    "huge_pages": "off",
    "dynamic_shared_memory_type": "mmap",
    "log_min_messages": "warning",
}

HBA = f"""\
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       all                      trust
host    all       {ROLE}    127.0.0.1/32   scram-sha-256
host    all       postgres  127.0.0.1/32   trust
host    all       all       127.0.0.1/32   scram-sha-256
"""


def find_binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql (Debian),
    else the one holding pg_ctl on PATH; None when there is none."""
    needed = ("initdb", "pg_ctl", "postgres")

    def complete(bin_dir: Path) -> bool:
        return all(os.access(bin_dir / name, os.X_OK) for name in needed)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)

    root = Path("/usr/lib/postgresql")
    found = sorted((p / "bin" for p in root.glob("*") if complete(p / "bin")), key=lambda b: version(b.parent))
    if found:
        return found[-1]
    on_path = shutil.which("pg_ctl")
    if on_path and complete(Path(on_path).parent):
        return Path(on_path).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL server in a temp folder of its own; see the module's doc."""

    host = "127.0.0.1"
    password = PASSWORD

    def __init__(self, bin_dir: Path | str | None = None):
        bin_dir = bin_dir or find_binaries()
        if bin_dir is None:
            raise RuntimeError(SKIP_REASON)
        self.bin_dir = Path(bin_dir)
        self.port: int | None = None
        self.root: Path | None = None  # the temp folder: data/, sock/, server.log
        self._user: pwd.struct_passwd | None = None  # whom the server runs as (None: this process's user)
        self._running = False

    # -- paths and URLs --------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def url(self) -> str:
        return self.url_for(ROLE)

    def url_for(self, database: str) -> str:
        """The URL of `database` for role vaal, without the password."""
        return f"postgresql://{ROLE}@{self.host}:{self.port}/{quote(database, safe='')}"

    @property
    def running(self) -> bool:
        return self._running

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> PgServer:
        """initdb a fresh temp folder, start the server on a free port, and create
        role vaal and its database vaal. Returns self."""
        if self._running:
            return self
        if self.root is not None:
            raise RuntimeError("this server was started before: use restart()")
        _remove_stale_servers()
        self._user = _system_user() if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_temp_base(self._user is not None)))
        (self.root / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        self.socket_dir.mkdir()
        self.log_file.touch()
        if self._user is not None:
            for path in (self.root, self.socket_dir, self.log_file):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        atexit.register(self._at_exit)
        try:
            self._run("initdb", "-D", self.data_dir, "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-instructions")
            (self.data_dir / "pg_hba.conf").write_text(HBA)
            for attempt in range(5):  # another process may take the free port before the server does
                self.port = free_port()
                settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.socket_dir}'"}
                with open(self.data_dir / "postgresql.conf", "a") as conf:
                    conf.write("\n# tests/pg_server.py\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError as error:
                    if attempt == 4 or "could not bind" not in str(error).lower():
                        raise
            self._admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'",
                        f"CREATE DATABASE {ROLE} OWNER {ROLE}")
        except BaseException:
            self.stop(mode="immediate")
            raise
        return self

    def stop(self, mode: str = "fast", *, remove: bool = True) -> None:
        """Stop the server (pg_ctl stop -m smart|fast|immediate; SIGKILL if that
        fails) and remove its temp folder (remove=False keeps it for restart())."""
        if self.root is None:
            return
        if self._running:
            try:
                self._run("pg_ctl", "stop", "-D", self.data_dir, "-m", mode, "-w", "-t", str(TIMEOUT))
                self._running = False
            except RuntimeError:
                self.kill()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            atexit.unregister(self._at_exit)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its backends are waited for
        (and killed after a few seconds) so that restart() can start again."""
        if not self._running:
            return
        postmaster = self._postmaster_pid()
        if postmaster is not None:
            _kill_tree(postmaster)
        self._running = False

    def restart(self, mode: str = "fast") -> PgServer:
        """Start the server again on the same data folder and port: after kill()
        (crash recovery runs), after stop(remove=False), or when it runs (stopped first)."""
        if self.root is None or not self.data_dir.is_dir():
            raise RuntimeError("no data folder to restart from: start() first (stop() removes it)")
        if self._running:
            self.stop(mode, remove=False)
        self._forget_dead_postmaster()
        self._pg_ctl_start()
        return self

    def new_database(self, name: str) -> str:
        """Create database `name` owned by role vaal; returns its URL (no password)."""
        from psycopg import sql

        self._admin(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE)))
        return self.url_for(name)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<PgServer {self.host}:{self.port} {'running' if self._running else 'stopped'} in {self.root}>"

    # -- helpers -------------------------------------------------------------------------

    def _pg_ctl_start(self) -> None:
        try:
            self._run("pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", str(TIMEOUT))
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n--- {self.log_file} (last lines) ---\n{self._log_tail()}") from None
        self._running = True

    def _run(self, program: str, *args) -> str:
        """Run a PostgreSQL program as the server's user; RuntimeError with its output on failure."""
        command = [str(self.bin_dir / program), *map(str, args)]
        if self._user is not None:
            command = _as_user(self._user) + command
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self._user is not None:
            env.update(HOME=str(self.root), USER=self._user.pw_name, LOGNAME=self._user.pw_name)
        try:
            done = subprocess.run(command, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=TIMEOUT + 30)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"{program} took over {error.timeout} s: {error.output}") from None
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}")
        return done.stdout

    def _admin(self, *statements) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            for statement in statements:
                conn.execute(statement)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _forget_dead_postmaster(self) -> None:
        """After a kill the postmaster may stay a zombie (nothing reaps it where
        PID 1 does not), and postgres then takes its lock files for a live server:
        remove them once no process of the old server is left."""
        pid = self._postmaster_pid()
        if pid is not None and not _alive(pid):
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)

    def _at_exit(self) -> None:
        try:
            self.stop(mode="immediate")
        except Exception:
            pass


# -- the system user (as root) ------------------------------------------------------------


def _system_user() -> pwd.struct_passwd:
    """The user `vaaltest`, created when missing (several test runs may race to create it)."""
    for _ in range(20):
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        if not os.access(useradd, os.X_OK):
            break
        # Exit status 9: it exists (another run made it); 10: /etc/passwd is locked by another run.
        subprocess.run([useradd, "--system", "--no-create-home", "--user-group",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            time.sleep(0.1)
    try:
        return pwd.getpwnam("nobody")  # no useradd: a user that is not root all the same
    except KeyError:
        raise RuntimeError(f"running as root, and could not create the user {SYSTEM_USER!r} for PostgreSQL") from None


def _as_user(user: pwd.struct_passwd) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user.pw_name, "--"]


def _temp_base(other_user: bool) -> str:
    """The temp folder's parent: the system's, unless another user cannot reach it."""
    candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    if not other_user:
        return candidates[0]
    for base in candidates:
        path = Path(base).resolve()
        if path.is_dir() and all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents]):
            return str(path)
    raise RuntimeError(f"no temp folder that the user {SYSTEM_USER!r} can reach among {candidates}")


# -- processes ------------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (the app's own test)."""
    return process_running(pid)


def _start_time(pid: int) -> str:
    stat = _proc_stat(pid)
    return stat[19] if stat else "?"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == str(pid):
                out.append(int(entry.name))
    return out


def _kill_tree(postmaster: int, grace: float = 5.0) -> None:
    """SIGKILL the postmaster; its backends notice and exit (SIGKILL after `grace` s).
    Returns once none of them is left (zombies aside)."""
    children = _children(postmaster) if Path("/proc").is_dir() else []
    try:
        os.kill(postmaster, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(postmaster, os.WNOHANG)  # reaped here if it happens to be our child
    except ChildProcessError:
        pass
    deadline = time.monotonic() + grace
    pids = [postmaster, *children]
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
        time.sleep(0.02)


def _remove_stale_servers() -> None:
    """Stop the servers, and remove the folders, of test runs that died without stopping theirs."""
    bases = {tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"}
    for base in bases:
        try:
            folders = list(Path(base).glob(PREFIX + "*"))
        except OSError:
            continue
        for folder in folders:
            try:
                pid_text, start = (folder / "owner").read_text().split()
                owner = int(pid_text)
            except (OSError, ValueError):
                continue  # not (yet) one of ours
            if _alive(owner) and _start_time(owner) in (start, "?"):
                continue  # its test run is still going
            try:
                postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
                if Path(f"/proc/{postmaster}/comm").read_text().strip() in ("postgres", "postmaster"):
                    _kill_tree(postmaster, grace=2.0)
            except (OSError, ValueError, IndexError, PermissionError):
                pass
            shutil.rmtree(folder, ignore_errors=True)
