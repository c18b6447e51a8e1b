"""Set-up as the README tells it: `make run` installs the app's dependencies
only and says what it is doing, `make test` adds the test tools on top, each
set with its own stamp; `make run PORT=...` and `PROJECT=...` reach
Streamlit; .ci/run still goes through `make test`.

The Makefile is read with `make -n` (print, run nothing) against a fresh
environment folder, so nothing is installed; one test starts the real
server through `make run` on a free port, with the stamps already made."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

TEST_TOOLS = ("pytest", "pytest-timeout", "playwright")


def _make(*args: str, venv: Path | None = None) -> str:
    extra = [f"VENV={venv}"] if venv is not None else []
    proc = subprocess.run(["make", "-n", *args, *extra], cwd=ROOT, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _packages(path: Path) -> set[str]:
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return {re.split(r"[=<>~!\[ ]", ln)[0].lower() for ln in lines if ln and not ln.startswith(("#", "-"))}


def test_requirements_split_runtime_from_test_tools():
    runtime, dev = _packages(ROOT / "requirements.txt"), _packages(ROOT / "requirements-dev.txt")
    assert {"torch", "streamlit", "pillow"} <= runtime
    assert not runtime & set(TEST_TOOLS)  # `make run` must not install pytest or Playwright
    assert set(TEST_TOOLS) <= dev and not dev & runtime
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()  # pip install -r dev: everything
    for path in (ROOT / "requirements.txt", ROOT / "requirements-dev.txt"):  # pinned, reproducible
        for ln in path.read_text().splitlines():
            if ln.strip() and not ln.startswith(("#", "-")):
                assert "==" in ln, f"{path.name}: {ln} is not pinned"


def test_make_run_installs_the_app_only_and_says_so(tmp_path):
    out = _make("run", venv=tmp_path / "venv")
    installs = [ln for ln in out.splitlines() if "pip install" in ln and "-r " in ln]
    assert installs == [f"{tmp_path}/venv/bin/python -m pip install -r requirements.txt"]
    assert "requirements-dev" not in out and "-m pytest" not in out
    assert "--quiet" not in out and not re.search(r"pip install.* -q\b", out)  # pip's progress is shown
    said = [ln for ln in out.splitlines() if ln.startswith("echo")]
    assert any("Installing the app's dependencies" in ln for ln in said)
    assert out.index("Installing the app's dependencies") < out.index("pip install -r requirements.txt")
    assert any("Starting VAAL Studio on http://localhost:8501" in ln for ln in said)


def test_make_test_adds_the_test_tools_on_top(tmp_path):
    out = _make("test", venv=tmp_path / "venv")
    app = out.index("pip install -r requirements.txt")
    dev = out.index("pip install -r requirements-dev.txt")
    assert app < dev < out.index("-m pytest")
    assert "Installing the test tools" in out


def test_each_set_has_its_own_stamp(tmp_path):
    """With the app's set installed, `make run` installs nothing and `make
    test` installs only the test tools; with both, neither installs."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed-run").touch()
    assert "pip install" not in _make("run", venv=venv)
    out = _make("test", venv=venv)
    assert "pip install -r requirements-dev.txt" in out and "pip install -r requirements.txt" not in out
    (venv / ".installed-dev").touch()
    assert "pip install" not in _make("test", venv=venv)
    # a changed list (newer than its stamp) is installed again
    older = min((ROOT / name).stat().st_mtime for name in ("requirements.txt", "requirements-dev.txt")) - 60
    os.utime(venv / ".installed-run", (older, older))
    os.utime(venv / ".installed-dev", (older, older))
    assert "pip install -r requirements.txt" in _make("run", venv=venv)


def test_port_and_project_reach_streamlit(tmp_path):
    venv = tmp_path / "venv"
    default = next(ln for ln in _make("run", venv=venv).splitlines() if "streamlit run" in ln)
    assert "--server.port 8501" in default and "--project" not in default
    line = next(ln for ln in _make("run", "PORT=8600", "PROJECT=projects/birds", venv=venv).splitlines()
                if "streamlit run" in ln)
    assert "--server.port 8600" in line and line.endswith("-- --project projects/birds")
    assert "--server.address localhost" in line


def test_ci_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", script, re.MULTILINE)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_make_run_serves_on_the_port_given(tmp_path):
    """The real `make run PORT=...`, on an environment whose stamps say it
    is installed (its programs are this checkout's), answers on that port."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "streamlit"):
        (venv / "bin" / tool).symlink_to(ROOT / ".venv" / "bin" / tool)
    (venv / ".installed-run").touch()
    port = _free_port()
    env = {**os.environ, "VAAL_HOME": str(tmp_path / "home")}
    env.pop("VAAL_PROJECT", None)
    proc = subprocess.Popen(["make", "run", f"PORT={port}", f"VENV={venv}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group: make and the server stop together
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert f"Starting VAAL Studio on http://localhost:{port}" in out
    assert "pip install" not in out
