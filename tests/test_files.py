"""The shared file helpers: writes that readers see whole or not at all, and
OS locks between real processes (released when the holder dies)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from vaal_core.files import (LockBusy, atomic_dir, atomic_write, file_lock, is_locked, read_json,
                             save_array_atomic, save_arrays_atomic, write_atomic, write_json_atomic)

from conftest import ROOT


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".partial")]


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "deep" / "result.json"
    write_json_atomic(target, {"round": 1})
    assert read_json(target) == {"round": 1}
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write('{"round": 2, "half')
            raise RuntimeError("killed half-way")
    assert read_json(target) == {"round": 1}  # the old file, untouched
    assert _leftovers(target.parent) == []  # and no temporary left behind
    write_atomic(target, b"not json")
    assert read_json(target) is None  # unreadable: 'nothing yet' to a poller
    write_atomic(tmp_path / "t.csv", "a,b\r\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n"  # text kept as written (no newline translation)


def test_arrays_saved_atomically_under_their_own_name(tmp_path):
    save_array_atomic(tmp_path / "x.npy", np.arange(5))
    save_arrays_atomic(tmp_path / "y.npz", a=np.ones(2), b=np.zeros(3))
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2, 3, 4]
    with np.load(tmp_path / "y.npz") as data:
        assert sorted(data.keys()) == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npz"]


def test_atomic_dir_is_complete_or_absent(tmp_path):
    out = tmp_path / "export"
    with pytest.raises(OSError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("a")
            raise OSError("disk full")
    assert not out.exists() and _leftovers(tmp_path) == []
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(OSError):  # a folder with something in it is never replaced by default
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with atomic_dir(out, replace_existing=True) as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def _holder(path, seconds=60):
    """A real process holding the lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vaal_core.files import file_lock
        with file_lock({str(path)!r}):
            print("locked", flush=True)
            time.sleep({seconds})
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_held_by_another_process_and_released_when_it_dies(tmp_path):
    path = tmp_path / "train.lock"
    assert not is_locked(path)
    holder = _holder(path)
    try:
        assert is_locked(path)
        with pytest.raises(LockBusy):
            with file_lock(path, wait=False):
                pass
        waited = []
        start = time.monotonic()

        def give_up():
            waited.append(1)
            if time.monotonic() - start > 0.6:
                os.kill(holder.pid, signal.SIGKILL)  # the holder crashes: the kernel drops its lock

        with file_lock(path, while_waiting=give_up, poll_s=0.1) as held:
            assert held and len(waited) >= 3
    finally:
        holder.kill()
        holder.wait()
    assert not is_locked(path)


def test_a_lock_file_that_cannot_be_made(tmp_path):
    missing_parent = tmp_path / "file.txt"
    missing_parent.write_text("x")
    with file_lock(missing_parent / "sub" / "x.lock", required=False) as held:  # a file where a folder must be
        assert held is False
    with pytest.raises(OSError):
        with file_lock(missing_parent / "sub" / "x.lock"):
            pass


def test_read_json_only_returns_objects(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    assert read_json(tmp_path / "list.json") is None
    assert read_json(tmp_path / "missing.json") is None
