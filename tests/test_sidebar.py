"""The sidebar's counts name the quantity the Label page shows: what is left
of the current round's batch (its ranked picks and the images pushed from
Explore), counted from the same order the Label page walks. Through
Streamlit's AppTest (the real app script, no browser)."""

from __future__ import annotations

import pytest

from vaal_core.services import labeling, workspace

from conftest import ROOT

pytestmark = pytest.mark.slow  # runs the app's pages


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAAL_PROJECT", raising=False)
    return tmp_path / "home"


def _project(tmp_path):
    """30 real digit images in a project of two classes."""
    from sklearn.datasets import load_digits

    from vaal_core.data.digits import digit_image
    from vaal_core.data.ingest import init_project

    images = tmp_path / "images"
    images.mkdir()
    for i, values in enumerate(load_digits().images[:30]):
        digit_image(values).save(images / f"{i:02d}.png")
    return init_project(tmp_path / "proj", images, ["cat", "dog"])[0]


def _sidebar(project) -> str:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["project"] = workspace.remember(project.root).id
    at.run()
    at.switch_page("views/demo.py").run()
    assert not at.exception, at.exception
    return "\n".join(c.value for c in at.sidebar.caption)


def test_sidebar_counts_the_label_pages_batch(home, tmp_path):
    project = _project(tmp_path)
    assert _sidebar(project) == "0 of 30 labeled"  # no round yet: no batch to speak of
    ids = [it.id for it in project.items()]
    rid = project.start_round("random", 10, 0, {})
    project.finish_round(rid, ids, [1.0 - k / 30 for k in range(30)], [k + 1 if k < 10 else None for k in range(30)],
                         0, {}, {})
    project.push_to_front(ids[20:22])  # from Explore: part of the batch the Label page walks
    for i in ids[:3] + ids[25:26]:  # three of the ranked batch, one beyond it
        project.set_label(i, "cat")
    order = labeling.label_order(project)
    batch = set(order.ids[:order.batch])
    assert len(batch) == 12 and len(batch - project.labeled_ids()) == 9  # what the Label page counts
    assert labeling.batch_ids(project) == (rid, batch)  # what the sidebar counts, read without the order
    assert _sidebar(project) == f"4 of 30 labeled · 9 of 12 left in round {rid}'s batch"
    for i in batch - project.labeled_ids():
        project.set_label(i, "dog")
    order = labeling.label_order(project)  # a labeled push leaves the front of the queue, on the page too
    assert set(order.ids[:order.batch]) <= project.labeled_ids()
    assert labeling.batch_ids(project) == (rid, set(order.ids[:order.batch]))
    assert _sidebar(project) == f"13 of 30 labeled · round {rid}'s batch of {order.batch} done"
    gone = project.item(ids[4]).path  # a batch image whose file went away leaves the batch on both counts
    project.set_missing({it.path for it in project.items()} - {gone})
    order = labeling.label_order(project)
    assert ids[4] not in order.ids and labeling.batch_ids(project) == (rid, set(order.ids[:order.batch]))
