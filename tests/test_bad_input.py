"""Bad input and a hostile machine, through the real command line (issue 11,
item 6): every case ends in one line on stderr naming the file or value and
what to do (exit 2), never a traceback, with nothing half-made left behind.

Real projects of CIFAR-10 JPEGs, real SQLite files, real processes. The
operating system refuses the writes for real: a read-only project is one
whose permission bits forbid writing (as root, the CLI runs without the
capabilities that override them), a full disk is a small tmpfs (when this
user may mount one) or, anywhere, a file-size limit on the CLI's process
(EFBIG, the same path as ENOSPC).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from vaal_core.store import Project


def _one_line_error(proc: subprocess.CompletedProcess, *matches: str) -> str:
    """The error line (after any progress lines on stderr), checked."""
    assert proc.returncode == 2, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines and lines[-1].startswith("error: "), proc.stderr
    assert not any(line.startswith("error: ") for line in lines[:-1]), proc.stderr
    for match in matches:
        assert match in lines[-1], lines[-1]
    return lines[-1]


def _fails(*args, match: str = "") -> str:
    return _one_line_error(run_cli(*args, check=False), match)


def _json(*args) -> dict:
    return json.loads(run_cli(*args, "--json").stdout)


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("path,label\n" + "".join(f"{r}\n" for r in rows))
    return path


def _gold_rows(project: Path, n: int) -> list[str]:
    """`path,label` lines of n items with their folder's name as label."""
    items = Project.open(project).items()[:n]
    return [f"{it.path},{it.gold}" for it in items]


@pytest.fixture
def project(small_folder, tmp_path) -> Path:
    proj = tmp_path / "proj"
    run_cli("init", proj, "--images", small_folder, "--gold-from-folders")
    return proj


# -- a round refused is refused before it starts --------------------------------------------------

def test_round_requests_are_refused_before_a_round_starts(project, tmp_path):
    not_weights = tmp_path / "weights.pth"
    not_weights.write_text("these are not weights")
    cases = [(("--seed", "-1"), "seed"), (("--seed", str(2 ** 32)), "seed"),
             (("--budget", "0"), "budget"), (("--budget", "-5"), "budget"),
             (("--sampler", "nope"), "unknown sampler"), (("--audit", "nan"), "audit"),
             (("--device", "tpu"), "unknown device"),
             (("--pretrained", tmp_path), "is a folder"),
             (("--sampler", "typiclust", "--pretrained", not_weights), str(not_weights))]
    for args, match in cases:
        _fails("round", project, "--fast", "--device", "cpu", "--sampler", "random", *args, match=match)
    assert Project.open(project).rounds() == []  # no failed round rows for requests that never started


# -- a damaged project.db is named, never re-initialised ---------------------------------------------

def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:20000])


def _random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def _bad_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[:16] = b"not a database!!"
    db.write_bytes(bytes(data))


def _foreign(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes(text)")
        conn.execute("INSERT INTO notes VALUES ('some other program made this file')")
    conn.close()


@pytest.mark.parametrize("damage", [_empty, _truncated, _random_bytes, _bad_header, _foreign],
                         ids=["empty", "truncated", "random-bytes", "bad-header", "another-programs-sqlite"])
def test_a_damaged_database_is_named_and_left_alone(project, small_folder, tmp_path, damage):
    db = project / "project.db"
    labels = _write_csv(tmp_path / "labels.csv", _gold_rows(project, 3))
    damage(db)
    before = db.read_bytes()
    commands = [("status",), ("queue",), ("suggest",), ("embed",), ("classes",), ("label", "--csv", labels),
                ("export", "--format", "csv", "--out", tmp_path / "out.csv"),
                ("round", "--fast", "--device", "cpu", "--sampler", "random"),
                ("init", "--images", small_folder)]
    for command, *rest in commands:
        err = _fails(command, project, *rest, match="is not a VAAL Studio database")
        assert str(db) in err and "backup" in err, err
    assert db.read_bytes() == before  # only init creates a database, and not over a damaged one
    assert not (tmp_path / "out.csv").exists()


# -- a read-only project folder --------------------------------------------------------------------

_CAPS_OVERRIDING_PERMISSIONS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
_PR_CAPBSET_DROP = 24


def _bound_by_permissions() -> None:
    """In the child, before exec: drop the capabilities that let root write
    anywhere, so permission bits bind it as they bind any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS_OVERRIDING_PERMISSIONS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_restricted(*args, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaal_core", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, preexec_fn=preexec, check=False)


def _as_user(*args) -> subprocess.CompletedProcess:
    return _run_restricted(*args, preexec=_bound_by_permissions if os.geteuid() == 0 else None)


def _chmod_tree(root: Path, writable: bool) -> None:
    for folder, dirs, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder) / name, 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


@contextmanager
def _read_only(folder: Path):
    _chmod_tree(folder, writable=False)
    try:
        yield folder
    finally:
        _chmod_tree(folder, writable=True)


def test_a_read_only_project_is_reported_in_words(project, small_folder, tmp_path):
    labels = _write_csv(tmp_path / "labels.csv", _gold_rows(project, 3))
    writes = [("label", "--csv", labels), ("round", "--fast", "--device", "cpu", "--sampler", "random"),
              ("init", "--images", small_folder), ("classes", "--add", "zebra")]
    reads = [("status",), ("queue",), ("classes",), ("export", "--format", "csv", "--out", tmp_path / "out.csv")]
    with _read_only(project):
        for command, *rest in writes:
            _one_line_error(_as_user(command, project, *rest), str(project), "read-only")
        for command, *rest in reads:  # reading may work (SQLite reads a WAL database it cannot write when
            got = _as_user(command, project, *rest)  # its -shm file is there), or fail in words
            assert got.returncode == 0 or _one_line_error(got, str(project), "read-only")
    assert (tmp_path / "out.csv").is_file() == (got.returncode == 0)  # an export is whole, or not there
    assert _json("status", project)["labeled"] == 0 and _json("status", project)["rounds"] == 0

    # A read-only place to write into: a new project, or an export.
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    with _read_only(shelf):
        _one_line_error(_as_user("init", shelf / "new", "--images", small_folder), str(shelf), "read-only")
        for fmt in ("csv", "json", "imagefolder"):
            _one_line_error(_as_user("export", project, "--format", fmt, "--out", shelf / f"out.{fmt}"),
                            str(shelf), "read-only")
    assert list(shelf.iterdir()) == []


# -- a full disk ---------------------------------------------------------------------------------------

@contextmanager
def _small_disk(folder: Path, size: str):
    """A tmpfs of `size` mounted on `folder` (skips where this user may not mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root; the file-size-limit test covers this path")
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path, leave: int = 0) -> Path:
    """Write a file that takes all the free space of folder's file system but `leave` bytes."""
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - leave
        chunk = b"\0" * (1 << 16)
        try:
            while free > 0:
                fh.write(chunk[:min(len(chunk), free)])
                free -= len(chunk)
            fh.flush()
        except OSError:
            pass
    return filler


def _no_temporary_files(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".round-")]
    assert left == [], left


def _last_round(project: Path) -> dict:
    return _json("status", project)["last_round"]


def test_a_full_disk_is_reported_in_words(small_folder, tmp_path):
    with _small_disk(tmp_path / "tiny", "256k") as tiny:
        _one_line_error(run_cli("init", tiny / "proj", "--images", small_folder, check=False),
                        "disk is full", str(tiny))

    with _small_disk(tmp_path / "disk", "16m") as disk:
        proj = disk / "proj"
        run_cli("init", proj, "--images", small_folder, "--gold-from-folders")
        labels = _write_csv(tmp_path / "labels.csv", _gold_rows(proj, 3))
        filler = _fill(disk)
        _one_line_error(run_cli("label", proj, "--csv", labels, check=False), "disk is full", str(proj))
        filler.unlink()
        assert _json("status", proj)["labeled"] == 0


@pytest.mark.slow
def test_a_round_on_a_full_disk_fails_cleanly(small_folder, tmp_path):
    with _small_disk(tmp_path / "disk", "16m") as disk:
        proj = disk / "proj"
        run_cli("init", proj, "--images", small_folder)
        filler = _fill(disk, leave=3 << 20)  # room for the store's writes, not for the VAE's 5 MB checkpoint
        _one_line_error(run_cli("round", proj, "--sampler", "coreset", "--budget", "10", "--fast", "--device", "cpu",
                                check=False), "disk is full")
        filler.unlink()
        last = _last_round(proj)
        assert last["status"] == "failed" and "disk is full" in last["error"], last
        _no_temporary_files(proj)
        assert _json("queue", proj)["items"] == []


def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_round_past_the_file_size_limit_fails_cleanly(project):
    # 2 MB: the store and the image cache fit, the VAE's checkpoint (about 5 MB with --fast) does not
    proc = _run_restricted("round", project, "--sampler", "coreset", "--budget", "10", "--fast", "--device", "cpu",
                           preexec=_file_size_limit(2 << 20))
    _one_line_error(proc, "size limit")
    last = _last_round(project)
    assert last["status"] == "failed" and "size limit" in last["error"], last
    _no_temporary_files(project)
    assert _json("queue", project)["items"] == []


# -- a killed round -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_round_is_interrupted_and_its_models_are_not_used(project, tmp_path):
    run_cli("label", project, "--csv", _write_csv(tmp_path / "labels.csv", _gold_rows(project, 40)))
    args = ["round", project, "--sampler", "vaal", "--budget", "10", "--fast", "--device", "cpu"]
    worker = subprocess.Popen([sys.executable, "-m", "vaal_core", *map(str, args)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list((project / "checkpoints").rglob("task.pt")):  # the task model is saved, the VAE trains
            assert worker.poll() is None and time.monotonic() < deadline, "the round ended before it was killed"
            time.sleep(0.05)
    finally:
        worker.kill()  # SIGKILL: no handler runs
        worker.wait()

    last = _last_round(project)
    assert last["status"] == "interrupted" and "ended" in last["error"], last
    assert "interrupted" in run_cli("status", project).stdout

    out = _json(*args)  # the next round trains from scratch: nothing of the killed one is used
    assert out["metrics"]["task"]["warm_start"] is False and out["metrics"]["warm_start"] is False
    assert [r["status"] for r in Project.open(project).rounds()] == ["failed", "done"]
    assert (project / "checkpoints" / "task.pt").is_file()  # the finished round's models are kept
    _no_temporary_files(project)


def test_only_a_finished_rounds_checkpoints_are_moved_in(tmp_path):
    import torch

    from vaal_core.learn.checkpoints import CheckpointDir, settle

    folder = tmp_path / "checkpoints"
    CheckpointDir(folder, round_id=1).save("task", {"w": torch.ones(2)})
    killed = CheckpointDir(folder, round_id=2)
    killed.save("task", {"w": torch.zeros(2)})
    assert killed.load("task")["w"].sum() == 0  # a round reads back what it saved itself
    assert not CheckpointDir(folder).has("task")  # no one else does before it is done
    (folder / ".task.pt.123.456.tmp").write_bytes(b"half a checkpoint")  # a write cut short
    settle(folder, finished=lambda round_id: round_id == 1)  # 1 was killed after its 'done', 2 before
    assert CheckpointDir(folder).load("task")["w"].sum() == 2
    assert sorted(p.name for p in folder.iterdir()) == ["task.pt"]


# -- label files and the command line itself ------------------------------------------------------------

def test_label_files_and_usage_errors(project, tmp_path):
    first, second = _gold_rows(project, 2)
    extra = _write_csv(tmp_path / "extra.csv", [first, second + ",dog"])
    err = _fails("label", project, "--csv", extra, match="line 3")
    assert str(extra) in err and "3 values" in err
    assert _json("status", project)["labeled"] == 0  # all or nothing

    _fails("label", project, "--csv", tmp_path, match="is a folder")
    bare = run_cli(check=False)  # no command: the commands listed (test_cli), and the program named once
    assert bare.returncode == 2 and bare.stderr.startswith("usage: python -m vaal_core [-h]")
    _fails("bogus", match="python -m vaal_core --help")
    _fails("round", project, "--budget", "ten", match="python -m vaal_core round --help")


@pytest.mark.parametrize("content, said", [
    (b"{", "bad.json is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    (b'{"project": "x"}', "bad.json holds no list of labels"),
    (b'["cat/1.jpg"]', "bad.json label 1: 'cat/1.jpg' is not an object with a path and a label"),
    (b"\xff\xfe\x00", "bad.json is not UTF-8 text"),
])
def test_a_json_label_file_that_is_not_one_is_named(content, said):
    from vaal_core.errors import BadInput
    from vaal_core.services.labels_io import parse_labels

    with pytest.raises(BadInput) as err:
        parse_labels(content, "bad.json", "json")
    assert str(err.value).startswith(said)


def test_a_json_export_reads_back_as_the_labels_it_holds(project):
    from vaal_core.services.labels_io import labels_text, parse_labels, plan_import

    p = Project.open(project)
    items = p.items()[:3]
    p.set_labels([(it.id, it.gold) for it in items])
    rows = parse_labels(labels_text(p, "json").encode(), "labels.json", "json")
    assert [(path, label) for _, path, label in rows] == sorted((it.path, it.gold) for it in items)
    plan = plan_import(p, rows, "labels.json")
    assert (plan.new, plan.changed, plan.unchanged) == ([], [], 3)  # the project's own labels: nothing to do
