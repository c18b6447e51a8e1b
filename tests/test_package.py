"""The package (pyproject.toml): a wheel built from this working tree holds
the engine, the app and the `vaal-studio` command, and a copy installed
from it runs on its own, from any folder, without the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

# The working tree as a checkout would have it: tracked files and new ones
# git does not ignore (not .venv, data/, projects/, caches).
SOURCE_ENTRIES = ["pyproject.toml", "README.md", "requirements.txt", "requirements-notebook.txt", "app.py",
                  "vaal_core", "views", "assets", ".streamlit"]  # the fallback without git


def _source_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]  # not files deleted but unstaged
    except (OSError, subprocess.SubprocessError):
        return [str(p.relative_to(ROOT)) for entry in SOURCE_ENTRIES for p in
                ([ROOT / entry] if (ROOT / entry).is_file() else (ROOT / entry).rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """A wheel built from a copy of the working tree (so setuptools' build/
    and *.egg-info stay out of the checkout, and no stale build/ leaks in)."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    files = _source_files()
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp / "dist"), str(src)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list((tmp / "dist").glob("vaal_studio-*.whl"))
    assert len(wheels) == 1, wheels
    return {"tmp": tmp, "wheel": wheels[0], "files": files}


@pytest.fixture(scope="module")
def site(built) -> Path:
    """The wheel installed (without its dependencies, which .venv has) into a
    folder of its own."""
    target = built["tmp"] / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                           str(target), str(built["wheel"])], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return target


def _installed_env(site: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VAAL_PROJECT", "VAAL_HOME", "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", **extra}


def _run_installed(site: Path, cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    """`python -c CODE` in `cwd` (not the checkout) with only the installed copy on the path."""
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_installed_env(site, **env),
                          check=False, capture_output=True, text=True, timeout=120)


def _metadata(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(f".dist-info/{name}"))).decode()


def test_the_wheel_holds_the_engine_the_app_and_nothing_else(built):
    with zipfile.ZipFile(built["wheel"]) as zf:
        names = set(zf.namelist())
    # Every engine file (modules, and the notebook widgets' .js and .css): a
    # new subpackage not listed in pyproject.toml shows up here.
    engine = {f for f in built["files"] if f.startswith("vaal_core/")}
    assert engine >= {"vaal_core/__init__.py", "vaal_core/cli.py", "vaal_core/launch.py",
                      "vaal_core/store/__init__.py"}
    assert engine - names == set(), ("pyproject.toml does not ship these (a new subpackage of vaal_core goes "
                                     f"in [tool.setuptools] packages): {sorted(engine - names)}")
    # The app, as vaal_core/_app/: the script, every page, its assets (the logo) and its Streamlit settings.
    app = {"app.py", ".streamlit/config.toml", *(f for f in built["files"] if f.startswith(("views/", "assets/")))}
    assert {"views/common.py", "views/label.py", "assets/logo.png"} <= app
    assert {f"vaal_core/_app/{f}" for f in app} - names == set(), \
        "pyproject.toml's package-data does not ship these files of the app"
    # Nothing else: no tests, benchmarks or docs, and no top-level name but vaal_core.
    shipped = {n for n in names if ".dist-info/" not in n}
    assert shipped == engine | {f"vaal_core/_app/{f}" for f in app}, sorted(shipped - engine)
    assert _metadata(built["wheel"], "top_level.txt").split() == ["vaal_core"]


def test_the_wheel_declares_the_command_the_pins_and_the_notebook_extra(built):
    entry_points = _metadata(built["wheel"], "entry_points.txt")
    assert "[console_scripts]" in entry_points
    assert "vaal-studio = vaal_core.launch:main" in entry_points
    meta = _metadata(built["wheel"], "METADATA")
    from vaal_core import __version__

    assert f"\nVersion: {__version__}\n" in meta and "\nName: vaal-studio\n" in meta
    assert "\nRequires-Python: >=3.11\n" in meta
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]

    def pins(name: str) -> list[str]:
        return [line.strip() for line in (ROOT / name).read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    assert "torch==2.14.1" in pins("requirements.txt")  # the files are read as they are: exact pins
    assert [r for r in requires if "extra ==" not in r] == pins("requirements.txt")
    assert "Provides-Extra: notebook" in meta
    notebook = pins("requirements-notebook.txt")
    assert 'anywidget==0.11.0; extra == "notebook"' in requires
    assert [r for r in requires if "extra ==" in r] == [f'{p}; extra == "notebook"' for p in notebook]
    assert not any(r.startswith(("pytest", "playwright")) for r in requires)  # requirements-dev.txt is not read


def test_the_installed_copy_finds_its_own_app_from_any_folder(site, tmp_path):
    proc = _run_installed(site, tmp_path / "elsewhere", "import sys, vaal_core, vaal_core.launch as l; "
                          "print(vaal_core.__file__); print(l.app_dir()); "
                          "print(l.streamlit_command(l.app_dir(), 'localhost', 8501, None))")
    assert proc.returncode == 0, proc.stderr
    engine, app, cmd = proc.stdout.splitlines()
    assert Path(engine).is_relative_to(site)
    assert Path(app) == site / "vaal_core" / "_app"
    assert (Path(app) / "app.py").is_file() and (Path(app) / "views" / "label.py").is_file()
    # The app's .streamlit/config.toml, which Streamlit would not read from this folder, as flags.
    assert "'--runner.postScriptGC', 'false'" in cmd and "'--server.fileWatcherType', 'none'" in cmd
    assert f"'{app}/app.py'" in cmd and "'--server.address', 'localhost'" in cmd


def test_the_command_helps_with_app_and_the_cli_and_refuses_a_missing_project(site, tmp_path):
    script = site / "bin" / "vaal-studio"  # the console script pip wrote
    assert script.is_file()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=cwd, env=_installed_env(site),
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: vaal-studio")
    for command in ("app", "init", "round", "simulate", "samplers"):
        assert f"\n    {command} " in proc.stdout, proc.stdout
    proc = subprocess.run([sys.executable, str(script), "--version"], cwd=cwd, env=_installed_env(site),
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("vaal-studio "), proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=_installed_env(site),
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: vaal-studio") and "\n    app " in proc.stderr

    # Help and errors import no Streamlit; a CLI command goes to the CLI.
    proc = _run_installed(site, cwd, "import sys\nfrom vaal_core.launch import main\n"
                                     "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
                                     "assert 'streamlit' not in sys.modules\n"
                                     "sys.exit(main(['samplers', '--json']))")
    assert proc.returncode == 0, proc.stderr
    assert '"samplers"' in proc.stdout.splitlines()[-1]

    for project in ("/nonexistent", str(cwd)):  # a missing folder; a folder without project.db
        proc = _run_installed(site, cwd, "import sys\nfrom vaal_core.launch import main\n"
                                         f"code = main(['app', {project!r}])\n"
                                         "assert 'streamlit' not in sys.modules\nsys.exit(code)")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(f"error: no project at {project} ("), proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_vaal_studio_app_serves_the_installed_app(site, tmp_path):
    """`vaal-studio app` for real, from the installed copy in a folder that
    is not the checkout: the server answers, and it is the copy's app.py,
    with its settings and, $VAAL_HOME unset, a home outside site-packages."""
    port = _free_port()
    cwd, home = tmp_path / "elsewhere", tmp_path / "user"
    cwd.mkdir()
    home.mkdir()
    code = f"from vaal_core.launch import main; main(['app', '--port', '{port}'])"
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=_installed_env(site, HOME=str(home)),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                "the server did not start:\n" + (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert response.status == 200
            assert b"<html" in response.read().lower()
        # The launcher became the server (exec): same process, the copy's script and settings.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert [b"-m", b"streamlit", b"run", str(site / "vaal_core" / "_app" / "app.py").encode()] == cmdline[1:5]
        assert b"--runner.postScriptGC" in cmdline
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert f"VAAL_HOME={home / 'vaal-studio'}".encode() in environ
        assert "Starting VAAL Studio on" in (tmp_path / "server.log").read_text()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the server did not stop on SIGTERM")


@pytest.mark.slow
def test_the_installed_app_draws_its_first_page(site, tmp_path):
    """The copy's app.py run as a page view (Streamlit's AppTest): its pages
    and views/ resolve inside the copy, and a first start builds the demo
    project and opens the Label page."""
    proc = _run_installed(site, tmp_path / "elsewhere", "\n".join([  # noqa: FLY002 (one statement a line)
        "import sys",
        "from streamlit.testing.v1 import AppTest",
        "import vaal_core.launch as l",
        "at = AppTest.from_file(str(l.app_dir() / 'app.py'), default_timeout=90)",
        "at.run()",
        "assert not at.exception, at.exception",
        "print(sys.modules['views.common'].__file__)",
        "print(at.session_state['project'].root)",
    ]), VAAL_HOME=str(tmp_path / "home"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    views, project = proc.stdout.splitlines()[-2:]
    assert Path(views) == site / "vaal_core" / "_app" / "views" / "common.py"
    assert Path(project).is_relative_to(tmp_path / "home")


def test_the_launcher_names_the_store_s_database_file():
    from vaal_core import launch
    from vaal_core.store import DB_NAME

    assert launch.DB_NAME == DB_NAME  # launch.py spells it out so that --help does not load the store (numpy)
