"""Shared fixtures: real CIFAR-10 JPEGs from ../shared/datasets, extracted once
per test session, and small class-folder subsets of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where this checkout's machine keeps the tarball; a machine without ../shared
# (a lent GPU: bench/gpu.sh) names its copy in VAAL_CIFAR_TAR.
CIFAR_TAR = Path(os.environ.get("VAAL_CIFAR_TAR") or ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz")
# The device the GPU path's checks in tests/test_accel.py run on: this
# machine's CPU in CI; on a lent GPU, bench/gpu.sh runs the same checks with
# VAAL_TEST_DEVICE=cuda.
TEST_DEVICE = os.environ.get("VAAL_TEST_DEVICE", "cpu")
PER_CLASS = 300  # images per class and split extracted for tests
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """The extracted CIFAR-10 JPEG folder (train/<class>/*.jpg, test/...)."""
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 JPEGs not found at {CIFAR_TAR} (see ../shared/datasets/README.md)")
    out = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(CIFAR_TAR) as tar:
        # Only the first PER_CLASS images of each class: tests use small
        # subsets, and 60,000 files per session make temp clean-up slow.
        tar.extractall(out, members=(m for m in tar if not m.isfile() or _index(m.name) < PER_CLASS),
                       filter="data")
    return out


def _index(name: str) -> int:
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else 0


def make_subset(cifar_root: Path, dest: Path, per_class: int, classes=CLASSES, split="train",
                offset: int = 0) -> Path:
    """Copy `per_class` real JPEGs of each class into dest/<class>/."""
    for cls in classes:
        files = sorted((cifar_root / split / cls).iterdir())[offset:offset + per_class]
        (dest / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dest / cls / f.name)
    return dest


@pytest.fixture
def small_folder(cifar_root, tmp_path) -> Path:
    """20 real JPEGs per class, 200 in all."""
    return make_subset(cifar_root, tmp_path / "images", per_class=20)


def run_cli(*args: str, check: bool = True, cwd: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m vaal_core ARGS` through the real entry point."""
    proc = subprocess.run([sys.executable, "-m", "vaal_core", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, env={**os.environ, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"vaal_core {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def open_page(project_root: Path, page: str, timeout: float = 90):
    """The app (Streamlit's AppTest: the real script, no browser) on this
    project, switched to `page` ("views/train.py"), checked for exceptions."""
    from streamlit.testing.v1 import AppTest

    from vaal_core.services import workspace

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params["project"] = workspace.remember(project_root).id
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def tiny_store(tmp_path: Path, classes: list[str], n: int):
    """A real project store with n placeholder items (no images decoded):
    for tests of the store and the services above it."""
    from vaal_core.store import Project

    p = Project.create(tmp_path / "proj", tmp_path, 32, classes)
    p.add_items([dict(path=f"{i}.jpg", size_bytes=1, sha1=str(i), width=32, height=32, cache_index=i)
                 for i in range(n)])
    return p


def drawn(at, what: str) -> list[dict]:
    """The data of the keyboard components drawn on the page (views/keyboard.py)
    that carry `what` ("image", "buttons")."""
    return [json.loads(e.proto.json) for e in at.get("bidi_component") if f'"{what}"' in e.proto.json]


class DrawnButton:
    """A button the keyboard component draws (the Label page's single view):
    its label, whether it is the primary one, and a click sent as the
    browser sends it: a press naming the button and its drawing's token."""

    def __init__(self, at, element, drawing: str, button: dict):
        self.at, self.element, self.drawing, self.button = at, element, drawing, button
        self.key, self.label = button["id"], button["label"] + (f" {button['key']}" if button.get("key") else "")
        self.type = "primary" if button.get("primary") else "secondary"
        self.disabled = bool(button.get("disabled"))

    def click(self):
        return self

    def run(self):
        from streamlit.components.v2.bidi_component.main import _make_trigger_id
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        assert not self.disabled, f"{self.key} is disabled"
        states = self.at._tree.get_widget_states()
        press = WidgetState(id=_make_trigger_id(self.element.proto.id, "events"))
        press.json_trigger_value = json.dumps([{"event": "press", "value": {
            "key": self.key, "drawing": self.drawing, "n": 1}}])
        states.widgets.append(press)
        return self.at._run(states)


def key_button(at, name: str):
    """A Label page button by its stem ("class_1", "undo", "gaccept"): a
    Streamlit button (its key also names the drawing it belongs to:
    views/label.py), or one the keyboard component draws (DrawnButton)."""
    hits = [b for b in at.button if b.key and (b.key == name or b.key.startswith(name + "_"))]
    for element in at.get("bidi_component"):
        data = json.loads(element.proto.json)
        hits += [DrawnButton(at, element, data["drawing"], b) for row in data.get("buttons", []) for b in row
                 if b["id"] == name]
    assert len(hits) == 1, f"{len(hits)} buttons named {name!r}: {[b.key for b in at.button]}"
    return hits[0]


# -- handwritten digits (scikit-learn) as a small image folder -----------------------

DIGITS = {"one": 1, "two": 2, "three": 3}  # class folder -> digit
DIGITS_PER_CLASS = 30


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """90 real digits (30 each of 1, 2, 3) as PNG files in class folders named one/, two/, three/."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from vaal_core.data.digits import digit_pixels

    data = load_digits()
    root = tmp_path_factory.mktemp("digits") / "images"
    for name, digit in DIGITS.items():
        (root / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(data.target == digit)[:DIGITS_PER_CLASS]):
            Image.fromarray(digit_pixels(data.images[i])).save(root / name / f"{k:03d}.png")
    return root


@pytest.fixture
def workspace_home(tmp_path, monkeypatch) -> Path:
    """A workspace of this test's own: projects/ and the recent list in a temp folder."""
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# -- a real PostgreSQL server (tests/pg_server.py) -------------------------------------


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole session (a PgServer: .url,
    .admin_url, .password, .kill(), .restart(), .new_database(name)); skips
    when Debian's postgresql package is not installed."""
    from pg_server import SKIP_REASON, PgServer, find_binaries

    if find_binaries() is None:
        pytest.skip(SKIP_REASON)
    server = PgServer().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server, monkeypatch) -> str:
    """A fresh database of this test's own, owned by role vaal: its URL (no
    password in it; PGPASSWORD is set for the test so libpq finds it)."""
    from uuid import uuid4

    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    return pg_server.new_database(f"t_{uuid4().hex[:10]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    """Where Project.create puts the store: the folder's SQLite file, or a
    fresh database on the test PostgreSQL server ($VAAL_DATABASE_URL). A test
    that takes it runs once on each."""
    monkeypatch.delenv("VAAL_DATABASE_URL", raising=False)
    if request.param == "postgresql":
        monkeypatch.setenv("VAAL_DATABASE_URL", request.getfixturevalue("pg_url"))
    return request.param
