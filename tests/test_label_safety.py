"""A label lands on the image the person saw, exactly once, and never
overwrites another tab's label in silence: the store's side (tokens, the
label the page showed, undo of the action the page showed), on a real
SQLite file, with a second process as the other tab."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vaal_core.errors import LabelConflict
from vaal_core.store import Project

from conftest import ROOT, tiny_store


def test_a_token_is_written_once(tmp_path):
    p = tiny_store(tmp_path, ["cat", "dog"], 3)
    first = p.set_label(1, "cat", token="tab-a-0")
    assert first is not None
    assert p.set_label(1, "cat", token="tab-a-0") is None  # the same press replayed
    assert p.set_label(1, "dog", token="tab-a-0") is None  # a token is one gesture, whatever it carries
    assert len(p.label_history(1)) == 1 and p.labels() == {1: "cat"}
    # Grids and postponements too: a page written twice is one action, one undo takes it back.
    assert p.set_labels([(2, "dog"), (3, "dog")], source="grid", token="tab-a-1") == 2
    assert p.set_labels([(2, "dog"), (3, "dog")], source="grid", token="tab-a-1") is None
    p.postpone([2], token="tab-a-2")
    p.postpone([2], token="tab-a-2")
    assert p.db.value("SELECT COUNT(*) FROM skips") == 1
    assert p.undo()["action"] == "skip"
    assert p.undo()["items"][0]["item_id"] == 2 and p.labels() == {1: "cat"}
    # An undone press is not written again when its message comes back late.
    assert p.set_labels([(2, "dog"), (3, "dog")], source="grid", token="tab-a-1") is None
    assert p.labels() == {1: "cat"}


def test_a_label_changed_since_the_page_showed_it_is_refused_with_who_and_when(tmp_path):
    p = tiny_store(tmp_path, ["cat", "dog"], 3)
    p.set_label(1, "cat", source="ui", token="tab-b-7")  # tab B labels image 1
    with pytest.raises(LabelConflict) as err:  # tab A still shows it unlabeled
        p.set_label(1, "dog", token="tab-a-1", seen={1: None})
    assert "0.jpg was labeled 'cat'" in str(err.value) and "on the Label page" in str(err.value)
    assert "replace it, or keep it?" in str(err.value)
    item, path, label, ago, source, token = err.value.changed[0]
    assert (item, path, label, source, token) == (1, "0.jpg", "cat", "ui", "tab-b-7") and 0 <= ago < 60
    assert p.labels() == {1: "cat"}  # nothing written, no action recorded
    assert p.db.value("SELECT COUNT(*) FROM actions") == 1
    # Shown as 'cat', the change to 'dog' is what the person chose.
    assert p.set_label(1, "dog", token="tab-a-2", seen={1: "cat"}) is not None
    assert p.labels() == {1: "dog"}
    # A grid page: one tile labeled elsewhere refuses the whole gesture.
    p.set_labels([(3, "cat")], source="csv")
    with pytest.raises(LabelConflict, match="by an import"):
        p.set_labels([(2, "dog"), (3, "dog")], source="grid", token="tab-a-3", seen={2: None, 3: None})
    assert p.labels() == {1: "dog", 3: "cat"}
    # An undone label counts as a change too (the page showed it labeled).
    p.set_label(2, "cat", token="tab-b-8")
    p.undo()
    with pytest.raises(LabelConflict, match="unlabeled"):
        p.set_label(2, "dog", token="tab-a-4", seen={2: "cat"})


def test_undo_takes_back_only_the_action_the_page_showed(tmp_path):
    p = tiny_store(tmp_path, ["cat", "dog"], 3)
    p.set_label(1, "cat")
    p.set_label(2, "dog")
    shown = p.latest_action()
    assert p.undo(only=shown)["item_id"] == 2
    assert p.undo(only=shown) is None  # Z pressed twice on one drawing: one undo
    assert p.labels() == {1: "cat"}
    assert p.undo(only=p.latest_action())["item_id"] == 1
    assert p.latest_action() is None


def test_another_process_labels_between_drawing_and_press(tmp_path):
    """The other tab is a real second process writing the same SQLite file."""
    p = tiny_store(tmp_path, ["cat", "dog"], 2)
    other = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from vaal_core.store import Project
        Project.open({str(p.root)!r}).set_label(1, "dog", token="tab-b-1", seen={{1: None}})
    """)
    subprocess.run([sys.executable, "-c", other], check=True, timeout=60)
    with pytest.raises(LabelConflict):
        p.set_label(1, "cat", token="tab-a-1", seen={1: None})
    assert Project.open(p.root).labels() == {1: "dog"}
