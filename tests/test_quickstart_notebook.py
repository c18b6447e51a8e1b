"""examples/quickstart.ipynb runs headless from top to bottom (nbclient, a
real ipykernel), and what it printed and stored is what it says: a digits
project, two --fast rounds, the queue labeled by the folder names, the
widgets' views in the outputs, a simulation's files and chart."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from vaal_core.store import Project

from conftest import ROOT

pytestmark = pytest.mark.slow
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif "data" in o:
            out.append(str(o["data"].get("text/plain", "")))
    return "".join(out)


def test_quickstart_runs_and_stores_what_it_says(tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("VAAL_QUICKSTART_DIR", str(work))
    monkeypatch.setenv("VAAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # kept without outputs
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    by_source = {c.source.splitlines()[0]: c for c in code}

    assert "1797 images in" in _text(code[0])
    status = _text(by_source['p = vc.create_project(WORK / "digits-project", images=images, gold_from_folders=True,'])
    assert "'items': 1797" in status and "'labeled': 0" in status
    assert "round 1: 20 images queued by typiclust" in _text(by_source["summary = p.round(budget=20, fast=True)"])
    # The widgets were displayed (a widget view in the output), not just their repr.
    for first_line in ("lab = vc.Labeler(p)", 'm = vc.LatentMap(p, color_by="class")'):
        assert any(WIDGET_VIEW in o.get("data", {}) for o in by_source[first_line].outputs), first_line
    assert "task model accuracy on held-out labels:" in _text(by_source['second = p.round(sampler="entropy", budget=20, fast=True)'])

    with Project.open(work / "digits-project") as p:
        labels = p.labels()
        rows = p.label_rows()
        assert len(labels) == 20 and {r["source"] for r in rows} == {"api"}
        # The oracle cell labeled each image with its folder (its true class, kept as the hidden gold).
        assert all(p.item(i).gold == label for i, label in labels.items())
        assert [r["status"] for r in p.rounds()] == ["done", "done"]
        assert p.round(2)["metrics"]["task"]["n_train"] > 0

    sim = json.loads((work / "simulation" / "simulation.json").read_text())
    assert set(sim["summary"]) == {"random", "entropy"}
    assert sim["headline"] and sim["headline"] in _text(by_source['sim = vc.simulate(images, ["entropy"], init=40, budget=40, rounds=2, seeds=3, subset=600, fast=True,'])
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in by_source["sim.figure"].outputs)
