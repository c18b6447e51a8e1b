"""The team's pages (the real app script under Streamlit's AppTest, a real
PostgreSQL project of real JPEGs): the Label page asks who is labeling and
hands two annotators different images; the Project page's Team tab shows
agreement and resolves a conflict in one click; a team server reachable from
other machines does not start without sign-in."""

from __future__ import annotations

import pytest

from vaal_core import launch
from vaal_core.data.ingest import init_project
from vaal_core.errors import BadInput
from vaal_core.store import Project
from vaal_core.store.team import doubled

from conftest import drawn, key_button, make_subset, open_page

CLASSES = ["airplane", "cat", "ship"]


@pytest.fixture
def team_project(cifar_root, tmp_path, pg_url, workspace_home) -> Project:
    images = make_subset(cifar_root, tmp_path / "photos", per_class=8, classes=CLASSES)
    project, _, _ = init_project(tmp_path / "team", images, CLASSES, database=pg_url)
    return project


def _start(at, name: str):
    at.text_input(key="who_input").input(name)
    at.button[[b.label for b in at.button].index("Start labeling")].click().run()
    assert not at.exception, at.exception
    return at


def _shown_item(at) -> int:
    [image] = [d for d in drawn(at, "image")]
    return int(image["item"])


def test_the_label_page_asks_who_and_keeps_two_annotators_apart(team_project):
    alice = open_page(team_project.root, "views/label.py")
    assert [t.label for t in alice.text_input] == ["Your name"]  # nothing else until a name is given
    assert not drawn(alice, "image")
    alice.text_input(key="who_input").input("a/b<script>")
    alice.button[[b.label for b in alice.button].index("Start labeling")].click().run()
    assert "cannot be a name here" in alice.error[0].value and not drawn(alice, "image")
    _start(alice, "alice")
    assert alice.query_params["who"] in ("alice", ["alice"])
    bob = _start(open_page(team_project.root, "views/label.py"), "bob")
    a, b = _shown_item(alice), _shown_item(bob)
    assert a != b  # one order, two annotators: bob is handed the next image nobody holds
    assert team_project.held_by_others("bob") == {a}
    key_button(alice, "class_1").click().run()  # alice labels hers: cat
    assert team_project.labels() == {a: "cat"}
    assert team_project.label_history(a)[-1]["author"] == "alice"
    nxt = _shown_item(alice)
    assert nxt not in (a, b)
    # Z on bob's page undoes nothing of alice's
    key_button(bob, "undo").click().run()
    assert team_project.labels() == {a: "cat"}
    assert "nothing to undo" in " ".join(c.value for c in bob.caption)


def test_the_team_tab_shows_agreement_and_resolves_a_conflict(team_project):
    p = team_project
    p.set_overlap(0.5)
    ids = [i for i in (it.id for it in p.items()) if doubled(i, 0.5)][:4]
    for k, i in enumerate(ids):
        p.set_label(i, "cat", author="alice")
        p.set_label(i, "cat" if k else "ship", author="bob")  # they disagree on the first only
    at = open_page(p.root, "views/project.py")
    at.query_params["who"] = "rita"
    at.run()
    frames = [f.value for f in at.dataframe]
    pair = next(f for f in frames if "annotators" in f.columns)
    assert pair.iloc[0]["annotators"] == "alice & bob" and pair.iloc[0]["images both labeled"] == 4
    assert pair.iloc[0]["agreement"] == "75%"
    assert any("Conflicts to review: 1" in m.value for m in at.markdown)
    at.button(key=f"resolve_{ids[0]}_cat").click().run()
    assert not at.exception, at.exception
    assert p.conflicts() == [] and p.training_labels()[ids[0]] == "cat"
    assert p.label_history(ids[0])[-1]["author"] == "rita"
    assert any("resolved as cat by rita" in s.value for s in at.success)


def test_a_team_server_beyond_localhost_needs_sign_in(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    # the console command refuses before anything listens, in one line
    assert launch.main(["app", "--team", "--host", "0.0.0.0"]) == launch.EXIT_USER_ERROR
    assert "needs sign-in" in capsys.readouterr().err
    with pytest.raises(BadInput, match=r"needs sign-in; add an \[auth\] section"):
        launch._check_team_sign_in(tmp_path, "0.0.0.0")
    launch._check_team_sign_in(tmp_path, "localhost")  # this machine only: a name is enough
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "http://team.example:8501/oauth2callback"\ncookie_secret = "x"\n'
        'client_id = "vaal"\nclient_secret = "s"\n'
        'server_metadata_url = "https://id.example/.well-known/openid-configuration"\n')
    launch._check_team_sign_in(tmp_path, "0.0.0.0")


def test_a_lost_database_is_said_in_words_and_the_page_comes_back(cifar_root, tmp_path, monkeypatch, workspace_home):
    from pg_server import SKIP_REASON, PgServer, find_binaries

    if find_binaries() is None:
        pytest.skip(SKIP_REASON)
    server = PgServer().start()  # its own server: this test kills it
    try:
        monkeypatch.setenv("PGPASSWORD", server.password)
        images = make_subset(cifar_root, tmp_path / "photos", per_class=3, classes=CLASSES)
        project, _, _ = init_project(tmp_path / "team", images, CLASSES, database=server.new_database("gone"))
        at = _start(open_page(project.root, "views/label.py"), "alice")
        first = _shown_item(at)
        key_button(at, "class_0").click().run()  # committed before the server dies
        server.kill()
        key_button(at, "class_1").click().run()  # a press while it is away: refused in words, nothing raised
        assert not at.exception, at.exception
        said = " ".join(e.value for e in at.error)
        assert "cannot reach the project's database" in said and "Traceback" not in said
        assert any("Trying again every 3 seconds" in c.value for c in at.caption)
        server.restart()
        at.run()  # what the page's retry does once the server answers
        assert not at.exception, at.exception
        [note] = at.error  # the refused press, said once the page is back
        assert note.value.startswith("Nothing was written") and "cannot reach" in note.value
        at.run()  # said once
        assert not at.error
        assert Project.open(project.root).labels() == {first: "airplane"}  # kept; the refused press wrote nothing
        assert drawn(at, "image") and _shown_item(at) != first
    finally:
        server.stop()
