"""The store, on real temporary files and real second processes; the tests
that take `backend` run twice: on SQLite and on a real PostgreSQL server
(tests/pg_server.py), through the same Project calls."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from vaal_core.errors import (BadInput, ProjectExists, ProjectNotFound, SchemaTooNew, UnknownClass,
                              UnknownItem, WorkerBusy)
from vaal_core.store import Project
from vaal_core.store.schema import SCHEMA_VERSION

from conftest import ROOT


def _project(tmp_path, n_items=5, classes=("cat", "dog", "bird")) -> Project:
    p = Project.create(tmp_path / "proj", tmp_path, 32, classes)
    p.add_items([dict(path=f"img{i}.jpg", size_bytes=100 + i, sha1=f"h{i}", width=32, height=32,
                      cache_index=i) for i in range(n_items)])
    return p


def test_create_open_and_errors(tmp_path):
    p = _project(tmp_path)
    assert p.db.value("PRAGMA journal_mode") == "wal"
    assert p.db.schema_version() == SCHEMA_VERSION
    p.close()
    again = Project.open(tmp_path / "proj")
    assert again.classes() == ["cat", "dog", "bird"]
    assert len(again.items()) == 5
    with pytest.raises(ProjectExists):
        Project.create(tmp_path / "proj", tmp_path)
    with pytest.raises(ProjectNotFound, match="python -m vaal_core init"):
        Project.open(tmp_path / "nothing-here")


def test_newer_schema_is_refused(tmp_path):
    _project(tmp_path).close()
    db = sqlite3.connect(tmp_path / "proj" / "project.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match="upgrade"):
        Project.open(tmp_path / "proj")


def test_classes_edit_keeps_labels(tmp_path, backend):
    p = _project(tmp_path)
    p.set_label(1, "cat")
    p.rename_class("cat", "kitten")
    assert p.labels() == {1: "kitten"}
    p.reorder_classes(["bird", "kitten", "dog"])
    assert p.classes() == ["bird", "kitten", "dog"]
    assert p.add_classes(["dog", "fish"]) == ["fish"]
    p.remove_class("fish")
    with pytest.raises(BadInput, match="rename it"):
        p.remove_class("kitten")
    with pytest.raises(BadInput):
        p.rename_class("dog", "bird")
    for bad in ("", "  ", "a/b", "two\nlines"):
        with pytest.raises(BadInput):
            p.add_classes([bad])
    with pytest.raises(BadInput):
        p.reorder_classes(["bird", "dog"])


def test_labels_history_and_undo(tmp_path, backend):
    p = _project(tmp_path)
    p.set_label(1, "cat")
    p.set_label(1, "dog")  # relabel
    p.set_label(2, "bird")
    assert p.labels() == {1: "dog", 2: "bird"}
    assert p.undo() == {"action": "label", "item_id": 2, "path": "img1.jpg", "restored": None,
                        "items": [{"item_id": 2, "path": "img1.jpg", "restored": None}]}
    assert p.undo()["restored"] == "cat"
    assert p.labels() == {1: "cat"}
    history = p.label_history(1)
    assert [h["label"] for h in history] == ["cat", "dog"]
    assert history[1]["undone_at"] is not None and history[0]["undone_at"] is None
    assert p.undo()["restored"] is None
    assert p.undo() is None
    assert p.labels() == {}
    with pytest.raises(UnknownClass, match="cat, dog, bird"):
        p.set_label(1, "zebra")
    with pytest.raises(UnknownItem):
        p.set_label(999, "cat")


def test_bulk_labels_are_all_or_nothing(tmp_path, backend):
    p = _project(tmp_path)
    with pytest.raises(UnknownClass):
        p.set_labels([(1, "cat"), (2, "dog"), (3, "zebra")])
    assert p.labels() == {}
    assert p.set_labels([(1, "cat"), (2, "dog")]) == 2
    assert p.set_labels([(1, "cat"), (2, "bird")]) == 1  # only the change is written
    assert p.labels() == {1: "cat", 2: "bird"}


def test_a_batch_is_one_undoable_action_and_skips_undo_too(tmp_path, backend):
    p = _project(tmp_path)
    p.set_label(1, "cat")
    assert p.set_labels([(1, "dog"), (2, "dog"), (3, "bird")], source="grid") == 3
    p.postpone(4)
    assert p.postponed_ids() == {4}
    undone = p.undo()  # the skip first: item 4 comes back
    assert undone["action"] == "skip" and undone["item_id"] == 4 and p.postponed_ids() == set()
    undone = p.undo()  # then the whole batch, in one step
    assert undone["action"] == "label" and [i["item_id"] for i in undone["items"]] == [1, 2, 3]
    assert p.labels() == {1: "cat"}
    assert [h["undone_at"] is None for h in p.label_history(1)] == [True, False]
    assert p.undo()["restored"] is None and p.labels() == {}
    with pytest.raises(UnknownItem):
        p.postpone(999)


def test_skips_belong_to_the_round_they_were_made_in(tmp_path, backend):
    p = _project(tmp_path)
    p.postpone(2)
    assert p.postponed_ids() == {2}
    r = p.start_round("random", 2, 0, {})
    p.finish_round(r, [1, 2, 3, 4, 5], [0.5] * 5, [1, 2, None, None, None], 0, {}, {})
    assert p.postponed_ids() == set()  # a new queue: the old "not now" no longer applies


def test_push_to_front_and_round_order(tmp_path, backend):
    p = _project(tmp_path)
    r = p.start_round("random", 2, 0, {})
    p.finish_round(r, [1, 2, 3, 4, 5], [0.1, 0.9, 0.5, 0.7, 0.3], [None, 1, None, 2, None], 0, {}, {})
    assert [i for i, _, _ in p.round_order()] == [2, 4, 3, 5, 1]  # batch by rank, then the rest by score
    p.set_label(2, "cat")
    assert [i for i, _, _ in p.round_order()][0] == 2  # labeled items keep their place
    assert p.push_to_front([5, 1]) == 2
    assert p.push_to_front([3]) == 1
    assert p.priority_ids() == [3, 5, 1]  # the newest push goes first
    p.set_label(5, "dog")
    assert p.priority_ids() == [3, 1]  # labeled ones leave the front
    with pytest.raises(UnknownItem):
        p.push_to_front([42])
    assert p.labeled_ids() == {2, 5}


def test_cancel_flag_reaches_the_running_round(tmp_path, backend):
    p = _project(tmp_path)
    assert p.request_cancel() == 0  # nothing running: nothing flagged
    r = p.start_round("vaal", 2, 0, {})
    assert not p.cancel_requested(r)
    assert Project.open(tmp_path / "proj").request_cancel() == 1  # from another handle
    assert p.cancel_requested(r)


def test_a_version_1_project_is_migrated_with_its_history(tmp_path):
    # Build a schema-1 file the way the first release wrote it.
    from vaal_core.store.db import split_sql
    from vaal_core.store.schema import MIGRATIONS

    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "project.db")
    for statement in split_sql(MIGRATIONS[1]):
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('image_root', ?), ('image_size', '32')", (str(tmp_path),))
    db.execute("INSERT INTO classes(name, position) VALUES ('cat', 0), ('dog', 1)")
    db.execute("INSERT INTO items(path, size_bytes, sha1, width, height, cache_index, label_class_id, added_at) "
               "VALUES ('a.jpg', 1, 'x', 32, 32, 0, 2, 't')")
    db.execute("INSERT INTO labels(item_id, class_id, previous_class_id, author, source, created_at) "
               "VALUES (1, 1, NULL, 'user', 'ui', 't'), (1, 2, 1, 'user', 'ui', 't')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    p = Project.open(root)
    assert p.db.schema_version() == SCHEMA_VERSION
    assert p.labels() == {1: "dog"}
    assert p.undo()["restored"] == "cat"  # old label rows are undoable actions
    assert p.labels() == {1: "cat"}


def test_queue_swaps_only_when_a_round_finishes(tmp_path, backend):
    p = _project(tmp_path)
    r1 = p.start_round("random", 2, 0, {})
    assert p.queue() == []  # a running round shows nothing new
    p.finish_round(r1, [1, 2, 3, 4, 5], [0.9, 0.8, 0.1, 0.2, 0.3], [1, 2, None, None, None], 0, {}, {})
    assert [q["item_id"] for q in p.queue()] == [1, 2]
    r2 = p.start_round("vaal", 2, 0, {})
    p.fail_round(r2, "boom")
    assert [q["item_id"] for q in p.queue()] == [1, 2]  # the old queue stays
    p.set_label(1, "cat")
    assert [q["item_id"] for q in p.queue()] == [2]  # labeled items leave the queue
    st = p.status()
    assert (st["items"], st["labeled"], st["unlabeled"], st["queue"]) == (5, 1, 4, 1)
    assert st["last_round"]["status"] == "failed" and st["last_round"]["error"] == "boom"


def test_suggestions_swap_with_the_queue_and_follow_the_classes(tmp_path, backend):
    p = _project(tmp_path)
    assert p.suggestions() == {}
    r1 = p.start_round("entropy", 2, 0, {})
    p.finish_round(r1, [1, 2, 3], [0.9, 0.8, 0.1], [1, 2, None], 0, {}, {},
                   suggestions=[("cat", 0.75), ("bird", 0.5), None])
    assert p.suggestions() == {1: ("cat", 0.75, r1), 2: ("bird", 0.5, r1)}
    assert p.suggestions([2, 3, 99]) == {2: ("bird", 0.5, r1)}
    assert p.suggestions(range(1, 1200))[1].label == "cat"  # more ids than one SQL statement may bind
    r2 = p.start_round("entropy", 1, 0, {})
    assert p.suggestions()[1].round_id == r1  # a running round changes nothing
    p.fail_round(r2, "boom")
    assert p.suggestions()[1].round_id == r1
    # the suggestion names the class as it is now
    p.rename_class("cat", "kitten")
    assert p.suggestions()[1].label == "kitten"
    # a removed (never used) class takes its suggestions with it, so a later class cannot inherit them
    p.remove_class("bird")
    p.add_classes(["fish"])
    assert 2 not in p.suggestions() and p.suggestions()[1].label == "kitten"
    # a round without a task model: no suggestions for its queue
    r3 = p.start_round("random", 1, 0, {})
    p.finish_round(r3, [4], [0.5], [1], 1, {}, {})
    assert p.suggestions() == {}
    with pytest.raises(ValueError, match="2 suggestions for 1 items"):
        p.finish_round(p.start_round("random", 1, 0, {}), [4], [0.5], [1], 1, {}, {}, [None, None])


def test_missing_files_keep_their_labels(tmp_path, backend):
    p = _project(tmp_path)
    p.set_label(1, "cat")
    stamps = [p.order_stamp()]  # the Label page's cached order is keyed on it: it must see items go and come
    assert p.set_missing({f"img{i}.jpg" for i in range(1, 5)}) == 1
    assert p.status()["items"] == 4 and p.labels() == {}
    stamps.append(p.order_stamp())
    p.set_missing({f"img{i}.jpg" for i in range(5)})
    assert p.labels() == {1: "cat"}
    stamps.append(p.order_stamp())
    assert len(set(stamps)) == 3
    p.set_missing({f"img{i}.jpg" for i in range(5)})  # nothing changed: neither does the stamp
    assert p.order_stamp() == stamps[-1]


def test_reading_while_another_process_writes(tmp_path, backend):
    p = _project(tmp_path, n_items=300)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from vaal_core.store import Project
        p = Project.open({str(tmp_path / 'proj')!r})
        for i in range(1, 301):
            p.set_label(i, ["cat", "dog", "bird"][i % 3])
    """)], cwd=ROOT)
    seen = []
    while writer.poll() is None:
        seen.append(p.status()["labeled"])
        p.set_label(1, "cat")  # this process writes too
    assert writer.returncode == 0
    assert seen == sorted(seen)  # each read saw a committed, growing state
    assert p.status()["labeled"] == 300


def test_training_lock_is_exclusive_and_survives_a_crash(tmp_path, backend):
    p = _project(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vaal_core.store import Project
        p = Project.open({str(tmp_path / 'proj')!r})
        with p.training_lock():
            p.start_round("vaal", 2, 0, {{}})
            print("locked", flush=True)
            time.sleep(60)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert p.is_training()
    with pytest.raises(WorkerBusy, match="already being trained"):
        with p.training_lock():
            pass
    holder.send_signal(signal.SIGKILL)  # a worker dies mid-round
    holder.wait()
    deadline = time.time() + 10
    while p.is_training() and time.time() < deadline:
        time.sleep(0.05)
    with p.training_lock():  # the OS released the lock; the orphan round is marked failed
        pass
    assert p.rounds()[-1]["status"] == "failed"
    assert "interrupted" in p.rounds()[-1]["error"]


def test_lookups_by_many_ids_are_chunked(tmp_path, backend):
    """40,000 ids in one call: more than SQLite's 32,766 bound variables, so
    each lookup by ids must split its IN list into chunks."""
    p = Project.create(tmp_path / "proj", tmp_path, 32, ["a", "b"])
    n = 40_000
    p.add_items([{"path": f"x/{i}.jpg", "size_bytes": 1, "sha1": f"{i:040x}", "width": 8, "height": 8,
                  "cache_index": i} for i in range(n)])
    ids = [it.id for it in p.items()]
    assert len(ids) == n
    wanted = ids[::-1]  # the order asked for is the order returned
    assert [it.id for it in p.items(wanted)] == wanted
    assert p.set_labels([(i, "a" if i % 2 else "b") for i in ids], source="import") == n
    assert len(p.labeled_ids()) == n and p.status()["per_class"] == {"a": n // 2, "b": n // 2}
    assert p.push_to_front(ids[:35_000]) == 35_000
    p.postpone(ids)
    assert len(p.postponed_ids()) == n
    round_id = p.start_round("random", 10, 0, {})
    p.finish_round(round_id, ids, [0.5] * n, [None] * n, 0, {}, {}, [("a", 0.9)] * n)
    assert len(p.suggestions(ids)) == n and p.suggestions(ids[:3])[ids[0]].label == "a"
    with pytest.raises(UnknownItem, match="no item with id 999999"):
        p.items([*ids, 999_999])
