"""The one progress shape: phases with labels, events that survive a trip
through the store's JSON, the throttle, and the step counter."""

from __future__ import annotations

import json
import time

from vaal_core.progress import Event, Phase, Steps, Throttle, announce, phase_label


def test_every_phase_has_a_label_and_stored_values_read_back():
    for phase in Phase:
        assert phase.label and phase.unit
        assert phase_label(phase.value) == phase.label
    assert phase_label("task") == "training the task model"
    assert phase_label("from-a-newer-version") == "from-a-newer-version"


def test_event_round_trips_through_json():
    event = Event(Phase.TRAIN, 40, 150, 2.5, 7.1, 512.0, {"vae_loss": 0.2, "seed": 1})
    back = Event.from_dict(json.loads(json.dumps(event.to_dict())))
    assert back == event and back.phase is Phase.TRAIN
    assert back.fraction == 40 / 150 and not back.finished
    assert back.describe() == "training the VAE and discriminator: iteration 40 of 150, about 7 s left"
    assert Event(Phase.SELECT).describe() == "selecting the batch" and Event(Phase.SELECT).fraction == 0.0
    assert Event(Phase.TASK, 600, 600).finished and "left" not in Event(Phase.TASK, 600, 600, eta_s=0).describe()


def test_throttle():
    gate = Throttle(0.2)
    assert gate.ready() and not gate.ready()
    assert gate.ready(force=True)
    time.sleep(0.25)
    assert gate.ready()


def test_steps_always_report_the_first_and_last_step():
    events: list[Event] = []
    steps = Steps(events.append, Phase.TASK, 1000, items_per_step=64, interval_s=60)
    for done in range(1001):
        steps(done, task_loss=1.0 / (done + 1))
    assert [e.done for e in events] == [0, 1000]  # everything between was throttled away
    last = events[-1]
    assert last.finished and last.values["task_loss"] == round(1 / 1001, 5)
    assert last.per_s and last.per_s > 0 and last.eta_s == 0
    quick: list[Event] = []
    steps = Steps(quick.append, Phase.SCORE, 3, interval_s=0)
    for done in range(4):
        steps(done)
    assert [e.done for e in quick] == [0, 1, 2, 3]
    Steps(None, Phase.SCORE, 3)(1)  # no callback: nothing to do, no error
    announce(quick.append, Phase.SELECT, seed=2)
    assert quick[-1] == Event(Phase.SELECT, values={"seed": 2})
