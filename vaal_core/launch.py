"""The `vaal-studio` command (pyproject.toml's console script).

    vaal-studio app [PROJECT] [--port N] [--host ADDR]   the Streamlit app
    vaal-studio init|status|round|...                    the CLI (python -m vaal_core)

`app` starts what `make run` starts, `streamlit run app.py` on
localhost:8501, with the settings of the app's .streamlit/config.toml given
as flags: Streamlit reads that file only from the current folder, and this
command runs from any. Every other command goes to vaal_core.cli unchanged.
Streamlit is not imported here: `app` replaces this process with
`python -m streamlit run`, so Ctrl-C and signals reach the server itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaal_core import __version__, cli
from vaal_core.errors import BadInput, VaalError
# where an installed app keeps projects/ when $VAAL_HOME is unset (workspace.home() says the same)
from vaal_core.services.workspace import INSTALLED_HOME

PROG = "vaal-studio"
EXIT_USER_ERROR = cli.EXIT_USER_ERROR
DB_NAME = "project.db"  # vaal_core.store.DB_NAME, without importing the store (numpy) for --help
DATABASE_FILE = "database.json"  # vaal_core.store.DATABASE_FILE: a team project's store on PostgreSQL
BUNDLED_APP = Path(__file__).resolve().parent / "_app"  # the wheel's copy (pyproject.toml)
CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding vaal_core/: a checkout or an editable install


def app_dir() -> Path:
    """The folder holding app.py, views/ and .streamlit/: the copy inside
    the wheel when installed from one, else the checkout (which an editable
    install also points at). The wheel's copy is looked for first, as the
    folder above an installed vaal_core is site-packages, where another
    package's app.py could lie."""
    for folder in (BUNDLED_APP, CHECKOUT):
        if (folder / "app.py").is_file() and (folder / "views").is_dir():
            return folder
    raise VaalError(f"the app's files are missing: no app.py in {BUNDLED_APP} or {CHECKOUT}; "
                    "reinstall vaal-studio")


def streamlit_settings(folder: Path) -> dict[str, Any]:
    """The app's .streamlit/config.toml as {"section.option": value}."""
    path = folder / ".streamlit" / "config.toml"
    if not path.is_file():
        return {}
    flat: dict[str, Any] = {}

    def walk(table: dict[str, Any], prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict):  # nested sections: [theme.sidebar]
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(tomllib.loads(path.read_text(encoding="utf-8")), "")
    return flat


def _flag_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list):  # a multiple option (server.allowedHosts): the flag once per value
        return [v for item in value for v in _flag_values(item)]
    return [str(value)]


def streamlit_command(folder: Path, host: str, port: int, project: Path | None) -> list[str]:
    """`python -m streamlit run app.py` with the app's settings and the
    Makefile's run flags (those win over the config file)."""
    settings = streamlit_settings(folder)
    settings.update({"server.address": host, "server.port": port, "browser.gatherUsageStats": False})
    flags = [arg for key, value in settings.items() for v in _flag_values(value) for arg in (f"--{key}", v)]
    cmd = [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"), *flags]
    if project is not None:
        cmd += ["--", "--project", str(project)]
    return cmd


def _project_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name in (DB_NAME, DATABASE_FILE):
        folder = folder.parent
    if not (folder / DB_NAME).is_file() and not (folder / DATABASE_FILE).is_file():
        why = "does not exist" if not folder.exists() else f"holds no {DB_NAME}"
        raise BadInput(f"no project at {path} (it {why}); create one with: {PROG} init {path} --images DIR")
    return folder.resolve()


def run_app(args: argparse.Namespace) -> int:
    project = _project_folder(args.project) if args.project else None
    if not 0 < args.port < 65536:
        raise BadInput(f"--port {args.port} is not a port number (1-65535)")
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:  # found, not imported
        raise VaalError(f"Streamlit is not installed in {sys.prefix}: pip install vaal-studio installs it")
    folder = app_dir()
    env = dict(os.environ)
    if args.team:
        _check_team_sign_in(folder, args.host)
        env["VAAL_TEAM"] = "1"  # views/team.py: names asked for, sign-in required when configured
    if not env.get("VAAL_HOME") and folder == BUNDLED_APP:
        home = INSTALLED_HOME.expanduser()
        env["VAAL_HOME"] = str(home)
        print(f">>> Projects and data go to {home} (set VAAL_HOME to choose another folder)", file=sys.stderr)
    cmd = streamlit_command(folder, args.host, args.port, project)
    print(f">>> Starting VAAL Studio on http://{args.host}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, cmd, env)  # does not return: the server takes this process's place
    try:  # Windows has no exec that keeps the console: wait for the server
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


def _commands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (vaal_core.cli) with `app` added, for `vaal-studio
    --help`, `app` and unknown commands; the CLI's own commands are parsed
    by vaal_core.cli.main."""
    parser = cli.build_parser()
    parser.prog = PROG
    parser.description = ("VAAL Studio: `vaal-studio app` starts the labeling app in the browser; "
                          "the other commands are the engine's CLI (also: python -m vaal_core).")
    version = next(a for a in parser._actions if isinstance(a, argparse._VersionAction))  # the CLI's --version
    version.version = f"{PROG} {__version__}"
    sub = _commands(parser)
    sub.metavar = "COMMAND"
    help_text = "start the labeling app (Streamlit) on http://localhost:8501"
    sp = sub.add_parser("app", prog=f"{PROG} app", help=help_text, description=help_text)
    sub._choices_actions.insert(0, sub._choices_actions.pop())  # listed first in --help
    sp.add_argument("project", nargs="?", help="project folder to open (holds project.db); "
                                               "default: the last one opened, else the digits demo")
    sp.add_argument("--port", type=int, default=8501, help="default 8501")
    sp.add_argument("--host", default="localhost",
                    help="address to listen on (default localhost: this machine only)")
    sp.add_argument("--team", action="store_true",
                    help="a server shared by a team: every label records its annotator; listening beyond "
                         "localhost needs sign-in configured (an [auth] section in .streamlit/secrets.toml)")
    sp.set_defaults(fn=run_app)
    return parser


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def _check_team_sign_in(folder: Path, host: str) -> None:
    """A team server that other machines can reach signs people in through
    Streamlit's st.login (OIDC), or it does not start: refused here, before
    anything listens."""
    if host in LOCAL_HOSTS:
        return
    places = [Path.cwd() / ".streamlit" / "secrets.toml", Path.home() / ".streamlit" / "secrets.toml"]  # Streamlit's
    for path in places:
        try:
            if "auth" in tomllib.loads(path.read_text(encoding="utf-8")):
                return
        except (OSError, tomllib.TOMLDecodeError):
            continue
    raise BadInput(f"--team --host {host}: a team server reachable from other machines needs sign-in; add an "
                   f"[auth] section (OIDC provider) to {places[0]} as the README's team set-up shows, or listen "
                   "on localhost only")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # no command: the list of them (app first), as python -m vaal_core does
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    if argv[0] != "app" and argv[0] in _commands(parser).choices:
        return cli.main(argv)  # a CLI command: its parser, its errors, its exit codes
    try:
        args = parser.parse_args(argv)  # app, --help, --version, or a word no command has
        return args.fn(args)
    except VaalError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
