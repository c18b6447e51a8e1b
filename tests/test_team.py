"""Several annotators on one project (store/team.py, services/labeling.py's
team path): leases that keep them apart and expire, overlap and agreement,
conflicts resolved by a reviewer, who gave each label, a team project made
and used from the command line, and a database server that goes away.

The tests that take `backend` run on SQLite and on a real PostgreSQL server
(tests/pg_server.py); processes are real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from vaal_core.errors import DatabaseUnreachable
from vaal_core.services import labeling
from vaal_core.store import Project
from vaal_core.store.team import doubled

from conftest import ROOT, run_cli, tiny_store

CLASSES = ["cat", "dog", "bird"]


def _take(p: Project, order, who: str, start: int = 0) -> int | None:
    """What the Label page does for an annotator: the next image, leased."""
    pos = labeling.next_for(p, order, who, p.labeled_ids(), p.postponed_ids(), start)
    return None if pos is None else order.ids[pos]


def test_leases_keep_annotators_apart_and_expire(tmp_path, backend):
    p = tiny_store(tmp_path, CLASSES, 10)
    order = labeling.label_order(p)
    a, b = _take(p, order, "alice"), _take(p, order, "bob")
    assert (a, b) == (order.ids[0], order.ids[1])  # both walk one order; bob passes alice's image by
    assert p.held_by_others("bob") == {a} and p.held_by_others("alice") == {b}
    p.set_label(a, "cat", author="alice", seen={a: None})
    a2 = _take(p, order, "alice", start=1)
    assert a2 == order.ids[2]  # not bob's
    assert {(x["item_id"], x["annotator"]) for x in p.leases()} == {(a2, "alice"), (b, "bob")}  # hers moved on
    # An idle session's lease runs out, and the image goes to whoever asks next.
    assert p.claim("bob", [b], ttl_s=0.3) == [b]
    assert _take(p, order, "carol") == order.ids[3]
    time.sleep(0.5)
    assert _take(p, order, "carol") == b
    assert p.claim("bob", [b]) == []  # carol holds it now
    # Z undoes an annotator's own latest label, never a teammate's.
    p.set_label(b, "dog", author="carol")
    assert p.latest_action("alice") != p.latest_action()
    assert p.undo(author="alice")["item_id"] == a
    assert p.labels() == {b: "dog"}
    assert p.labels_by_annotator() == {"carol": 1}


def test_two_processes_racing_for_images_never_share_one(tmp_path, backend):
    """Two app servers (here: two processes, each walking the queue as fast
    as it can) never lease one image to both annotators."""
    p = tiny_store(tmp_path, CLASSES, 200)
    script = textwrap.dedent(f"""
        import json, sys
        from vaal_core.services import labeling
        from vaal_core.store import Project
        who = sys.argv[1]
        p = Project.open({str(p.root)!r})
        order, mine, conflicts = labeling.label_order(p), [], 0
        for k in range(60):
            pos = labeling.next_for(p, order, who, p.labeled_ids(), set())
            item = order.ids[pos]
            try:
                p.set_label(item, ["cat", "dog", "bird"][k % 3], author=who, token=f"{{who}}-{{k}}", seen={{item: None}})
            except Exception as err:
                conflicts += 1
            mine.append(item)
        print(json.dumps({{"shown": mine, "conflicts": conflicts}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, who], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for who in ("alice", "bob")]
    out = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    assert [o["conflicts"] for o in out] == [0, 0]
    alice, bob = (set(o["shown"]) for o in out)
    assert len(alice) == len(bob) == 60 and not alice & bob
    rows = p.db.rows("SELECT item_id, author FROM labels WHERE undone_at IS NULL")
    assert len(rows) == 120 and len({r["item_id"] for r in rows}) == 120
    assert {r["item_id"] for r in rows if r["author"] == "alice"} == alice
    assert p.status()["by_annotator"] == {"alice": 60, "bob": 60}


def _kappa(pairs: list[tuple[str, str]]) -> float:
    """Cohen's kappa by its definition: (observed - chance) / (1 - chance)."""
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    names = {x for pair in pairs for x in pair}
    chance = sum((sum(a == c for a, _ in pairs) / n) * (sum(b == c for _, b in pairs) / n) for c in names)
    return (observed - chance) / (1 - chance)


def test_overlap_sends_a_share_to_two_annotators_and_measures_agreement(tmp_path, backend):
    p = tiny_store(tmp_path, CLASSES, 300)
    p.set_overlap(0.1)
    ids = [it.id for it in p.items()]
    twice = {i for i in ids if doubled(i, 0.1)}
    assert 18 <= len(twice) <= 42  # about one in ten, spread by the hash
    order = labeling.label_order(p)
    truth = {i: CLASSES[i % 3] for i in ids}
    while (item := _take(p, order, "alice")) is not None:  # alice labels everything she is given
        p.set_label(item, truth[item], author="alice")
    assert len(p.labels()) == 300
    assert labeling.label_order(p).ids == order.ids  # one order however the rows moved (PostgreSQL rewrites them)
    # bob is given exactly the doubled images, one at a time, as unlabeled; he disagrees on four
    disagree = sorted(twice)[:4]
    given = []
    while (item := _take(p, order, "bob")) is not None:
        given.append(item)
        other = CLASSES[(CLASSES.index(truth[item]) + 1) % 3]
        p.set_label(item, other if item in disagree else truth[item], author="bob", seen={item: truth[item]})
    assert sorted(given) == sorted(twice)
    assert p.needs_opinion("carol") == set()  # two opinions each: nobody else is asked
    [pair] = p.agreement()
    pairs = [(truth[i], CLASSES[(CLASSES.index(truth[i]) + 1) % 3] if i in disagree else truth[i]) for i in twice]
    assert (pair["a"], pair["b"], pair["n"]) == ("alice", "bob", len(twice))
    assert pair["agree"] == pytest.approx((len(twice) - 4) / len(twice), abs=1e-4)
    assert pair["kappa"] == pytest.approx(_kappa(pairs), abs=1e-3)
    conflicts = p.conflicts()
    assert [c["item_id"] for c in conflicts] == disagree
    assert conflicts[0]["by"] == {"alice": truth[disagree[0]], "bob": CLASSES[(CLASSES.index(truth[disagree[0]]) + 1) % 3]}
    # training leaves the conflicts out until a reviewer resolves them; the resolution is kept in the history
    assert set(p.labels()) - set(p.training_labels()) == set(disagree)
    p.resolve_conflict(disagree[0], "bird", "rita")
    assert [c["item_id"] for c in p.conflicts()] == disagree[1:]
    assert p.training_labels()[disagree[0]] == "bird"
    assert [(h["author"], h["source"]) for h in p.label_history(disagree[0])][-1] == ("rita", "review")
    assert p.undo(author="rita")["item_id"] == disagree[0]  # undone: the conflict is back
    assert [c["item_id"] for c in p.conflicts()] == disagree
    assert p.status()["conflicts"] == 4


def test_a_team_project_from_the_command_line(tmp_path, small_folder, pg_url, pg_server):
    proj = tmp_path / "team"
    with_password = pg_url.replace("postgresql://vaal@", f"postgresql://vaal:{pg_server.password}@")
    refused = run_cli("init", proj, "--images", small_folder, "--db", with_password, check=False)
    assert refused.returncode != 0 and "holds a password" in refused.stderr and pg_server.password not in refused.stderr
    assert not proj.exists()
    run_cli("init", proj, "--images", small_folder, "--classes", ",".join(CLASSES), "--db", pg_url)
    record = json.loads((proj / "database.json").read_text())
    assert record["url"] == pg_url and not (proj / "project.db").exists()
    status = json.loads(run_cli("status", proj, "--json").stdout)
    assert status["backend"] == "postgresql" and status["items"] == 200
    paths = [it.path for it in Project.open(proj).items()][:5]
    csv = tmp_path / "a.csv"
    csv.write_text("path,label\n" + "".join(f"{path},cat\n" for path in paths))
    run_cli("label", proj, "--csv", csv, "--annotator", "alice")
    assert json.loads(run_cli("status", proj, "--json").stdout)["by_annotator"] == {"alice": 5}
    # classes on the server: a refused change rolls back the ones before it; a file's new class comes with its label
    refused = run_cli("classes", proj, "--add", "lion", "--remove", "cat", check=False)
    assert refused.returncode == 2 and "has labels in its history" in refused.stderr
    csv.write_text(f"path,label\n{paths[0]},lion\n")
    run_cli("label", proj, "--csv", csv, "--annotator", "alice", "--add-classes")
    listed = json.loads(run_cli("classes", proj, "--json").stdout)["classes"]
    assert [c["name"] for c in listed] == CLASSES + ["lion"] and listed[-1]["labels"] == 1
    # a labeled image renamed in the folder: the item on the server follows it, its label kept
    (small_folder / paths[1]).rename(small_folder / "renamed.jpg")
    rescan = run_cli("init", proj, "--images", small_folder)
    assert "1 image was found under a new name" in rescan.stdout and ", 0 missing" in rescan.stdout
    exported = run_cli("export", proj, "--format", "csv", "--out", "-").stdout
    assert "renamed.jpg,cat" in exported.splitlines() and paths[1] not in exported
    team = json.loads(run_cli("team", proj, "--overlap", "0.25", "--json").stdout)
    assert team["overlap"] == 0.25 and team["conflicts"] == [] and team["by_annotator"] == {"alice": 5}
    # the project records no password: without one, every command says where to give it, in one line
    wrong = run_cli("status", proj, check=False, env={"PGPASSWORD": "not-it"})
    assert wrong.returncode != 0 and "PGPASSWORD" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    # $VAAL_DATABASE_URL stands for --db
    run_cli("init", tmp_path / "second", "--images", small_folder, env={"VAAL_DATABASE_URL": pg_url})
    assert (tmp_path / "second" / "database.json").is_file()


def test_a_database_server_that_goes_away_loses_no_committed_label(tmp_path, monkeypatch):
    from pg_server import SKIP_REASON, PgServer, find_binaries

    if find_binaries() is None:
        pytest.skip(SKIP_REASON)
    server = PgServer().start()  # its own server: this test kills it
    try:
        monkeypatch.setenv("PGPASSWORD", server.password)
        monkeypatch.setenv("VAAL_DATABASE_URL", server.new_database("lost"))
        p = tiny_store(tmp_path, CLASSES, 40)
        for i in range(1, 11):
            p.set_label(i, "cat", author="alice", token=f"t{i}")
        # A client killed -9 inside a transaction: what it committed stays, its open transaction is gone,
        # and it holds no lock once dead.
        client = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import time
            from vaal_core.store import Project
            p = Project.open({str(p.root)!r})
            p.set_label(11, "dog", author="bob")
            with p.atomic():
                p.set_label(12, "dog", author="bob")
                print("inside", flush=True)
                time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "inside"
        client.kill()
        client.wait()
        p.set_label(13, "bird", author="alice")  # not blocked by the dead client's lock
        assert p.labels() == {**{i: "cat" for i in range(1, 11)}, 11: "dog", 13: "bird"}
        # The server killed -9: a press says so in words and writes nothing ...
        server.kill()
        with pytest.raises(DatabaseUnreachable, match="cannot reach the project's database"):
            p.set_label(14, "dog", author="alice", token="t14")
        # ... and once it is back, the same press (the page retries it) is written, once.
        server.restart()
        assert p.set_label(14, "dog", author="alice", token="t14") is not None
        assert p.set_label(14, "dog", author="alice", token="t14") is None
        assert len(p.labels()) == 13 and p.labels()[14] == "dog"
    finally:
        server.stop()


def test_the_audit_accuracy_never_scores_a_disputed_label(tmp_path):
    from vaal_core.loop.audit import compare

    p = tiny_store(tmp_path, CLASSES, 40)
    p.set_overlap(1.0)  # every image to two annotators
    ids = [it.id for it in p.items()]
    audit = ids[:4]
    rid = p.start_round("entropy", 10, 0, {})
    p.finish_round(rid, ids, [1.0] * 40, [k + 1 if k < 10 else None for k in range(40)], 0, {},
                   {"audit": {"fraction": 0.4, "n": 4, "ids": audit}}, suggestions=[("cat", 0.8)] * 40, audit=audit)
    for i in audit:
        p.set_label(i, "cat", author="alice")
    p.set_label(audit[0], "dog", author="bob")  # disputed: is it the suggestion's cat or not?
    p.set_label(audit[1], "cat", author="bob")
    [row] = compare(p)
    assert (row["labeled"], row["audit"]["n"], row["audit"]["correct"]) == (3, 3, 3)
    p.resolve_conflict(audit[0], "dog", "rita")
    [row] = compare(p)
    assert (row["labeled"], row["audit"]["n"], row["audit"]["correct"]) == (4, 4, 3)


def test_a_team_project_from_python(tmp_path, small_folder, pg_url, workspace_home):
    import vaal_core as vc

    p = vc.create_project(tmp_path / "py-team", images=small_folder, classes=CLASSES, database=pg_url, progress=False)
    assert p.status()["backend"] == "postgresql"
    path = Project.open(tmp_path / "py-team").items()[0].path  # no round yet: an image by its path
    assert p.label(path, "dog", annotator="carol")["label"] == "dog"
    again = vc.open_project(tmp_path / "py-team")  # by the folder alone: database.json names the server
    assert again.status()["by_annotator"] == {"carol": 1}
    assert list(again.labels()["author"]) == ["carol"]
