"""Background workers as real processes: a `--fast` round started the way
the app starts it, cancelled through the store, failures surfaced, and a
worker that is still starting stopped by signal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vaal_core.services import worker
from vaal_core.errors import BudgetTooLarge, UnknownSampler, WorkerBusy
from vaal_core.data.ingest import init_project
from vaal_core.store import Project

from conftest import make_subset

pytestmark = pytest.mark.slow


@pytest.fixture
def project(cifar_root, tmp_path) -> Project:
    images = make_subset(cifar_root, tmp_path / "images", per_class=10, classes=["cat", "dog", "ship"])
    proj, _, _ = init_project(tmp_path / "proj", images, ["cat", "dog", "ship"])
    return proj


def _wait(predicate, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_round_runs_in_the_background_and_its_queue_appears(project):
    # coreset: no labels here, and a round that trains the VAE (vaal would hand it to typiclust)
    job = worker.start_round(project, "coreset", 6, device="cpu", fast=True)
    assert job.running and job.command[1:3] == ["-m", "vaal_core"]
    with pytest.raises(WorkerBusy):  # a second start while the first is alive is refused
        worker.start_round(project, "random", 6, device="cpu", fast=True)
    _wait(lambda: not worker.round_worker(project).running, what="the round worker to end")
    state = worker.round_worker(project)
    assert state.error is None, state.log_tail()
    last = project.rounds()[-1]
    assert last["status"] == "done" and len(project.queue()) == 6
    assert last["metrics"]["curve"] and last["metrics"]["curve"][-1]["iteration"] == last["metrics"]["iterations"]
    assert '"queue_length": 6' in state.log_tail(5)


def test_cancel_through_the_store_keeps_the_old_queue(project):
    worker.start_round(project, "random", 5, device="cpu", fast=True)
    _wait(lambda: not worker.round_worker(project).running, what="the random round")
    before = project.queue()
    assert len(before) == 5
    # Full-size models on a CPU: slow enough to be cancelled mid-training.
    worker.start_round(project, "coreset", 5, device="cpu", fast=False, fresh=True)
    _wait(lambda: (project.rounds()[-1]["progress"] or {}).get("phase") == "train", what="training to start")
    assert worker.cancel_round(project)
    _wait(lambda: not worker.round_worker(project).running, timeout=60, what="the cancelled worker to end")
    last = project.rounds()[-1]
    assert last["status"] == "cancelled" and "previous queue is kept" in last["error"]
    assert project.queue() == before
    assert "cancelled" in worker.round_worker(project).error


def test_a_worker_still_starting_is_stopped_by_signal(project):
    job = worker.start_round(project, "vaal", 5, device="cpu", fast=True)
    assert project.rounds() == []  # it is still importing torch: no round row to flag yet
    assert worker.cancel_round(project)  # falls back to SIGTERM
    _wait(lambda: not worker.round_worker(project).running, timeout=60, what="the stopped worker")
    rounds = project.rounds()
    assert rounds == [] or rounds[-1]["status"] == "cancelled", rounds
    assert not project.is_training() and job.pid == worker.round_worker(project).pid


def test_bad_requests_fail_before_any_process_starts(project):
    with pytest.raises(UnknownSampler, match="random"):
        worker.start_round(project, "bogus", 5)
    with pytest.raises(BudgetTooLarge, match="30 items"):
        worker.start_round(project, "vaal", 31)
    assert worker.round_worker(project) is None


def test_a_failing_worker_reports_its_error_line(tmp_path):
    job = worker.launch(tmp_path, "status", ["status", str(tmp_path / "missing-project")])
    _wait(lambda: not worker.state(tmp_path, "status").running, timeout=60, what="the worker")
    state = worker.state(tmp_path, "status")
    assert state.pid == job.pid and "no project at" in state.error
    assert Path(state.log).is_file()
