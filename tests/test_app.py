"""The Streamlit entry page, run by Streamlit's AppTest on a real project."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from vaal_core.project import Project

from conftest import ROOT


def _run(monkeypatch, project: str | None) -> AppTest:
    if project is None:
        monkeypatch.delenv("VAAL_PROJECT", raising=False)
    else:
        monkeypatch.setenv("VAAL_PROJECT", project)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()


def test_page_shows_project_counts(monkeypatch, tmp_path):
    p = Project.create(tmp_path / "proj", tmp_path, 32, ["cat", "dog"])
    p.add_items([dict(path=f"{i}.jpg", size_bytes=1, sha1=str(i), width=32, height=32, cache_index=i)
                 for i in range(3)])
    p.set_label(1, "dog")
    at = _run(monkeypatch, str(tmp_path / "proj"))
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Items": "3", "Labeled": "1", "Unlabeled": "2", "Skipped": "0"}


def test_page_without_or_with_a_bad_project(monkeypatch, tmp_path):
    at = _run(monkeypatch, None)
    assert not at.exception and "No project open" in at.info[0].value
    at = _run(monkeypatch, str(tmp_path / "missing"))
    assert not at.exception and "no project at" in at.error[0].value
