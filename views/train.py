"""Train: start a round in a background worker, watch it live, cancel it,
and read the history of every round: one sentence per round for
stakeholders, how far each round's suggestion confidences can be trusted
(a reliability figure of the held-out labels, before and after
calibration: learn/calibration.py), and the engineering figures behind an
expander.

The round never runs in this script: `worker.start_round` starts a separate
process; the live panel polls the store once a second and draws a bar for
every phase the round goes through. Labeling stays usable meanwhile, and the
new queue replaces the old one only when the round has finished. This page
never loads PyTorch: what devices the machine has comes from a short-lived
probe process, asked once per server.
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from vaal_core import samplers
from vaal_core.errors import VaalError
from vaal_core.learn import calibration, devices, pipeline
from vaal_core.loop.audit import DEFAULT_FRACTION, compare
from vaal_core.loop.report import calibration_sentence, history, round_sentence, row_trust
from vaal_core.loop.round import default_budget
from vaal_core.progress import Event, Phase, phase_label
from vaal_core.services import worker
from views.common import chart_text, database_gone_in_words, plain, require_project, show_error

project = require_project()
st.title("Train")
status = project.status(team=False)
settings = project.settings()


# -- start ------------------------------------------------------------------

@st.cache_resource(show_spinner="Looking for GPUs (once per server start)...")
def _probe() -> dict:
    return devices.probe_in_subprocess()


def machine_devices() -> dict:
    """What this machine offers PyTorch, asked once per server; a probe that
    failed is not kept, so the next page run asks again."""
    found = _probe()
    if found.get("error"):
        _probe.clear()
    return found


DEVICES = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA (NVIDIA GPU)", "mps": "MPS (Apple GPU)"}


def device_problem(device: str, found: dict) -> str | None:
    """Why this machine cannot train on `device`, in the page's words (the
    engine's own error names command-line flags); None when it can, or when
    the probe failed and the round's process will check for itself."""
    if found.get("error"):
        return None
    if device == "cuda" and not found.get("cuda"):
        return "This machine has no CUDA GPU; choose Auto or CPU."
    if device == "mps" and not found.get("mps"):
        return "This machine has no Apple GPU (MPS); choose Auto or CPU."
    return None


def sampler_help(names: list[str]) -> str:
    """Every sampler's registry description, for the selectbox's help."""
    lines = [f"- **{plain(n)}**: {plain(samplers.get(n).description)}" for n in names]
    task = [n for n in names if pipeline.uses_task_model(samplers.get(n).needs)]
    if task:
        lines.append("\n" + ", ".join(plain(n) for n in task) + " train a task model on the labels each round, "
                     "from the round whose labels cover 2 classes.")
    return "\n".join(lines)


def start_form() -> None:
    names = samplers.names()
    default_sampler = settings.get("sampler", samplers.DEFAULT)
    pool = status["unlabeled"]
    if pool == 0:
        st.success("Every image is labeled: there is nothing left to queue.")
        return
    budget_default = min(int(settings.get("budget") or default_budget(status["items"])), pool)
    found = machine_devices()
    saved_device = settings.get("device", "auto")
    if saved_device not in DEVICES or device_problem(saved_device, found):
        saved_device = "auto"  # a default saved before failed choices were refused, or another machine's
    with st.form("start_round", border=True):
        a, b = st.columns(2)
        sampler = a.selectbox("Sampler", names, index=names.index(default_sampler) if default_sampler in names else 0,
                              format_func=lambda n: f"{n}: {samplers.get(n).description}",
                              help=sampler_help(names))
        budget = b.number_input("Budget: images in the new queue", min_value=1, max_value=pool,
                                value=max(1, budget_default), step=1)
        fast = st.radio("Model size", ["Quick", "Full"], horizontal=True,
                        index=0 if settings.get("fast", True) else 1,
                        captions=["small models, few iterations: seconds to minutes on a CPU",
                                  "the VAAL paper's size: for a GPU (hours on a CPU for a large pool)"]) == "Quick"
        with st.expander("Advanced"):
            c, d, e = st.columns(3)
            device = c.selectbox("Device", list(DEVICES), index=list(DEVICES).index(saved_device),
                                 format_func=DEVICES.get)
            seed = d.number_input("Seed", min_value=0, value=int(settings.get("seed", 0)), step=1)
            fresh = e.checkbox("Train from scratch", help="ignore the last round's weights (warm start is the default)")
            audit = st.number_input("Random audit share of the batch", min_value=0.0, max_value=0.45,
                                    value=float(settings.get("audit", DEFAULT_FRACTION)), step=0.01, format="%.2f",
                                    help="drawn at random instead of by the sampler, so the suggestions' accuracy "
                                         "can be estimated honestly (see 'Sampler picks vs random audit picks' "
                                         "below); 0 turns it off; batches under 10 images get none")
            gpus = len(found.get("cuda") or [])
            processes = 1
            if gpus > 1 and device in ("auto", "cuda"):  # one process per GPU (torchrun, learn/distributed.py)
                processes = int(st.number_input("GPUs to train on (one process each)", min_value=1, max_value=gpus,
                                                value=gpus, step=1))
        problem = device_problem(device, found)
        counts = f"Labeled now: {status['labeled']:,}; unlabeled pool: {pool:,}."
        on = f", {processes} GPUs ({processes} processes)" if processes > 1 else ""
        if found.get("error"):  # the probe failed: the round's process checks the device itself
            st.caption(f"Trains on: {DEVICES[device]}, not checked ({found['error']}). {counts}")
        else:
            st.caption(counts if problem else f"Trains on: {devices.describe(device, found)}{on}. {counts}")
        if st.form_submit_button("Start round", type="primary", icon=":material/play_arrow:"):
            if problem:  # refused here, in the page's words; nothing is saved
                st.error(problem, icon=":material/error:")
                return
            try:
                started = worker.start_round(project, sampler, int(budget), device=device, fast=fast,
                                             seed=int(seed), fresh=fresh,
                                             devices=None if found.get("error") else found, audit=float(audit),
                                             processes=processes)
            except VaalError as err:
                show_error(err)
            else:  # only a round that started makes its choices the project's defaults
                project.save_settings(sampler=sampler, budget=int(budget), fast=fast, device=device,
                                      seed=int(seed), audit=float(audit))
                st.session_state["started_worker"] = started.pid
                st.toast(f"Round started ({sampler}, budget {int(budget):,})", icon=":material/play_arrow:")


# -- live ---------------------------------------------------------------------

def loss_chart(curve: list[dict], height: int = 260) -> go.Figure:
    fig = go.Figure()
    its = [p["iteration"] for p in curve]
    for key, name in (("vae_loss", "VAE"), ("disc_loss", "discriminator")):
        if any(key in p for p in curve):
            fig.add_trace(go.Scatter(x=its, y=[p.get(key) for p in curve], name=name, mode="lines"))
    fig.update_layout(height=height, margin={"t": 10, "b": 30, "l": 10, "r": 10}, xaxis_title="iteration",
                      yaxis_title="loss", legend={"orientation": "h"})
    return fig


def phase_bars(prog: dict) -> None:
    """One bar per phase the round goes through, in order: finished ones
    full, the current one moving, the rest waiting."""
    plan, seen, current = prog.get("plan") or [], prog.get("phases") or {}, prog.get("phase")
    order = plan + [p for p in seen if p not in plan]
    at = order.index(current) if current in order else -1
    for k, value in enumerate(order):
        event = Event.from_dict(seen[value]) if value in seen else None
        label = phase_label(value, sentence=True)
        if k < at or (event is not None and event.finished and k == at):
            took = f" in {event.elapsed_s:.1f} s" if event is not None and event.elapsed_s else ""
            st.progress(1.0, text=f"{label}: done{took}")
        elif k == at and event is not None:
            st.progress(event.fraction, text=event.describe(sentence=True))
        else:
            st.progress(0.0, text=f"{label}: waiting")


def activity(last: dict | None, job) -> str | None:
    """'running' (a round trains now), 'starting' (its worker is loading
    PyTorch and has not opened the round yet) or None."""
    if last and last["status"] == "running" and project.is_training():
        return "running"
    if job is not None and job.running and (last is None or last["created_at"] < job.started_at):
        return "starting"
    return None


def redraw_on_change() -> tuple[dict | None, str | None]:
    """(the last round, its activity); the whole page is drawn again when a
    round starts, ends or fails (history, counts, last_round_panel)."""
    last = project.last_round()
    active = activity(last, worker.round_worker(project))
    seen = st.session_state.get("live_seen")
    now_seen = (last["id"] if last else None, last["status"] if last else None, active)
    st.session_state["live_seen"] = now_seen
    if seen is not None and seen != now_seen:
        st.rerun()
    return last, active


@st.fragment(run_every=5.0)
@database_gone_in_words
def idle_watch() -> None:
    """While no round runs: notices one started elsewhere (the CLI, a
    notebook) every 5 s and draws nothing. Not every second: a click on the
    finished round's link could be lost when it met a fragment run (the
    newcomer browser test saw that under a full run's load)."""
    redraw_on_change()


@st.fragment(run_every=1.0)
@database_gone_in_words
def live_panel() -> None:
    """A round training or starting, redrawn every second."""
    last, active = redraw_on_change()
    if active == "running":
        prog = last["progress"] or {}
        st.markdown(f"**Round {last['id']}** ({plain(last['sampler'])}, budget {last['budget']:,}): "
                    f"{phase_label(prog.get('phase', Phase.START))}")
        phase_bars(prog)
        now = (prog.get("phases") or {}).get(prog.get("phase"))
        if now:
            event = Event.from_dict(now)
            shown = [(label, event.values.get(key)) for key, label in
                     (("vae_loss", "VAE loss"), ("disc_loss", "Discriminator loss"), ("task_loss", "Task loss"))]
            shown += [("Images/s", event.per_s), ("Elapsed in this phase (s)", event.elapsed_s)]
            shown = [(label, value) for label, value in shown if value is not None]
            for col, (label, value) in zip(st.columns(max(len(shown), 1)), shown):
                col.metric(label, f"{value:.4g}")
        if prog.get("curve"):
            st.plotly_chart(loss_chart(prog["curve"]), key="live_curve")
        if st.button("Cancel round", icon=":material/stop:"):
            worker.cancel_round(project)
            st.toast("Cancelling: the round stops within a second and the old queue stays")
    elif active == "starting":  # the worker has not opened its round yet (importing PyTorch takes seconds)
        st.info("Starting the training worker (loading PyTorch)...", icon=":material/hourglass_top:")
        if st.button("Cancel", icon=":material/stop:"):
            worker.cancel_round(project)


def last_round_panel() -> None:
    """The last round's outcome while none runs: finished (with the link
    to label its queue), interrupted, failed, or none yet."""
    last = project.last_round()
    job = worker.round_worker(project)
    if activity(last, job) is not None:
        return
    if last is None:
        if job is not None and job.error:
            st.error(f"The round could not start: {plain(job.error)}")
        else:
            st.info("No round yet. Start one now: with no labels, auto (the default) picks the most typical "
                    "image of each region of a feature space it learns from your images (TypiClust), so the "
                    "first batch covers the data.")
        return
    if job is not None and job.error and job.started_at > (last["created_at"] or ""):
        st.error(f"The last round could not start: {plain(job.error)}")
    if last["status"] == "done":
        took = (last["timings"] or {}).get("total_s")
        st.success(f"Round {last['id']} ({plain(last['sampler'])}) finished" + (f" in {took:.1f} s" if took else "")
                   + f": its queue has {status['queue']:,} unlabeled images left.", icon=":material/check_circle:")
        for line in round_choices(last["metrics"] or {}):
            st.caption(line)
        st.page_link("views/label.py", label="Label the new queue", icon=":material/label:")
    elif last["status"] == "running":
        st.warning(f"Round {last['id']} was interrupted (its process ended). The previous queue is kept; "
                   "start a new round.")
    else:
        reason = last["error"] or "no reason recorded"
        st.error(f"Round {last['id']} {last['status']}: {plain(reason)}"
                 + ("" if "queue is kept" in reason else ". The previous queue is kept."))


def round_choices(metrics: dict) -> list[str]:
    """What the round chose, in words: the sampler `auto` used and why, and
    the feature space the typicality and coverage samplers picked in."""
    lines = []
    policy = metrics.get("policy")
    if policy:
        lines.append(f"**{plain(policy['name'])}** used **{plain(policy['chose'])}** this round. Why: "
                     f"{plain(policy['why'].split(': ', 1)[-1])}.")
    space = metrics.get("features")
    if space:
        if space.get("source") == "pretrained":
            what = f"ImageNet {space.get('arch')} features (weights: {plain(Path(space['file']).name)})"
        elif space.get("source") == "patches":
            what = (f"k-means patch features learned from this project's {space.get('images', 0):,} images "
                    f"({space.get('centroids')} centroids, {space.get('dim')} dimensions"
                    f"{', centroids kept from an earlier round' if space.get('warm_start') else ''}; no label read)")
        else:
            what = (f"self-supervised SimCLR features trained on this project's {space.get('images', 0):,} "
                    f"images ({space.get('arch')}, {space.get('epochs') or 0:g} epochs"
                    f"{', warm-started' if space.get('warm_start') else ''})")
        lines.append(f"Feature space: {what}" + (", kept from an earlier round (no image added since)."
                                                 if space.get("reused") else "."))
    return lines


# -- history ------------------------------------------------------------------

def task_estimate(row: dict) -> None:
    """The latest round's suggestions' accuracy, always with how it was
    measured (a few held-out labels make a rough number), and, when the
    feature probe had a part, each of the two alone on the same labels."""
    how = row.get("task_how")
    if how is None and row.get("task_accuracy") is None:
        return  # that round trained no task model
    acc, n_val = row.get("task_accuracy"), row.get("task_n_val")
    model = row.get("suggest_model") or "task model"
    head = f":material/model_training: Suggestions of round {row['round']} ({model}): "
    if acc is None:  # too few labels to hold some out: `how` says so
        st.caption(head + plain(how))
        return
    what = f"{acc:.0%} right on {n_val:,} held-out labels" if n_val else f"{acc:.0%} right"
    parts = ""
    if row.get("probe_accuracy") is not None and row.get("model_accuracy") is not None:
        parts = (f" (the task model alone {row['model_accuracy']:.0%}, the linear probe on the feature space "
                 f"alone {row['probe_accuracy']:.0%})")
    st.caption(head + f"**{what}**" + parts + (f" — {plain(how)}" if how else ""))


def discriminator_note(done: list[dict]) -> None:
    """The verdict on the last round's queue when a discriminator ranked it
    (a warning when it is close to a random order: disc_quality.near_chance)."""
    last = done[-1]
    if last.get("disc_verdict"):
        text = f"Round {last['round']} ({plain(last['sampler'])}): {last['disc_verdict']}"  # our words and figures
        if last["disc_near_chance"]:
            st.warning(text, icon=":material/casino:")
        else:
            st.caption(f":material/insights: {text}")


DISC_COLUMNS = ("**disc AUC**: how well the round's discriminator tells the labeled images from the unlabeled "
                "ones it learnt from (0.5 is a coin toss, 1 is perfect; below 0.6 the queue is close to random "
                "order). **top batch × chance**: how many times more of the top 5% of the queue two seeds of the "
                "discriminator agree on than two random orders would (below 2x the order is mostly noise; a "
                "VAE trained again with another seed agrees less, most in a first round).")


def reliability_figure(cal: dict) -> go.Figure:
    """Confidence shown vs how often it was right, per confidence bin of the
    held-out labels: the raw confidence and the calibrated one, the diagonal a
    perfectly calibrated model would follow, and the labels in each bin."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dash", "color": "#888888"}, hoverinfo="skip"))
    counted = cal.get("reliability_after") or cal.get("reliability_before") or []
    width = 1 / (cal.get("bins") or calibration.BINS)
    fig.add_trace(go.Bar(x=[(b["lo"] + b["hi"]) / 2 for b in counted], y=[b["count"] for b in counted],
                         width=width, yaxis="y2", name="held-out labels in the bin", opacity=0.25,
                         marker_color="#7f7f7f", hovertemplate="%{y} labels<extra></extra>"))
    for key, name, colour in (("reliability_before", "raw (uncalibrated)", "#d55e00"),
                              ("reliability_after", "calibrated", "#0072b2")):
        bins = cal.get(key) or []
        if bins:
            fig.add_trace(go.Scatter(
                x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                name=name, line={"color": colour}, customdata=[b["count"] for b in bins],
                hovertemplate="shown %{x:.0%}, right %{y:.0%} (%{customdata} labels)<extra>" + name + "</extra>"))
    step = max(1, math.ceil(max([b["count"] for b in counted] or [1]) / 4))  # whole labels on the right axis
    fig.update_layout(height=360, margin={"t": 10, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.22, "x": 0},
                      xaxis={"title": "confidence shown", "range": [0, 1], "tickformat": ".0%"},
                      yaxis={"title": "share right", "range": [0, 1.02], "tickformat": ".0%"},
                      yaxis2={"title": "labels per bin", "overlaying": "y", "side": "right", "showgrid": False,
                              "range": [0, 5 * step], "dtick": step, "tickformat": "d"})
    return fig


def calibration_section(done: list[dict]) -> None:
    """The reliability figure of a round the user picks (the latest by
    default) with its calibration error before and after, or why it has none."""
    with_task = [r for r in done if r.get("task_how") is not None or r.get("calibration")]
    if not with_task:
        return
    st.subheader("How far the suggestions' confidence can be trusted")
    pick = st.selectbox("Round", [r["round"] for r in with_task], index=len(with_task) - 1, key="calibration_round",
                        format_func=lambda n: f"Round {n}")
    row = next(r for r in with_task if r["round"] == pick)
    words = calibration_sentence(row)
    if row_trust(row).calibrated:
        st.plotly_chart(reliability_figure(row["calibration"]), key="reliability")
        st.caption(words)
    else:
        st.info(words, icon=":material/info:")


def history_section() -> None:
    rows = history(project)
    if not rows:
        return
    st.subheader("Round history")
    st.markdown("\n".join(f"- {plain(round_sentence(r))}" for r in reversed(rows)))  # newest first; wraps
    done = [r for r in rows if r["status"] == "done"]
    if done:
        task_estimate(done[-1])
        discriminator_note(done)
        calibration_section(done)
        fig = go.Figure()
        ids = [f"#{r['round']}" for r in done]
        for name in project.classes():
            fig.add_trace(go.Bar(x=ids, y=[r["class_counts"].get(name, 0) for r in done], name=chart_text(name)))
        fig.update_layout(barmode="stack", title="Labels per class when each round started", height=320,
                          margin={"t": 40, "b": 30}, xaxis_title="round", yaxis_title="labeled images")
        st.plotly_chart(fig, key="class_counts")
    with st.expander("Details for engineers"):
        engineering(rows, done)


def engineering(rows: list[dict], done: list[dict]) -> None:
    """The figures behind the sentences: every round's settings, timings and
    losses, the time per step, the VAE's loss curves."""
    table = [{**{k: r[k] for k in ("round", "sampler", "budget", "status", "labeled", "device", "precision",
                                   "iterations",
                                   "warm_start", "features_s", "train_s", "score_s", "select_s", "total_s",
                                   "vae_loss", "disc_loss")},
              "suggestions acc %": None if r.get("task_accuracy") is None else round(100 * r["task_accuracy"], 1),
              "task model acc %": None if r.get("model_accuracy") is None else round(100 * r["model_accuracy"], 1),
              "probe acc %": None if r.get("probe_accuracy") is None else round(100 * r["probe_accuracy"], 1),
              "held-out n": r.get("task_n_val"),
              "temperature": (r.get("calibration") or {}).get("temperature"),
              "ECE raw": (r.get("calibration") or {}).get("ece_before"),
              "ECE calibrated": (r.get("calibration") or {}).get("ece_after"),
              "disc AUC": r.get("disc_auc"), "top batch × chance": r.get("disc_overlap_x"),
              **{k: r[k] for k in ("started", "error")}} for r in rows]
    st.dataframe(table, hide_index=True, width="stretch")
    if any(r.get("disc_verdict") for r in done):
        st.caption(DISC_COLUMNS)
    if not done:
        return
    ids = [f"#{r['round']}" for r in done]
    fig = go.Figure()
    for key, name in (("features_s", "feature space"), ("task_s", "task model"), ("predict_s", "task predictions"),
                      ("probe_s", "suggestions' probe"), ("train_s", "VAE training"), ("score_s", "scoring"), ("select_s", "selection")):
        fig.add_trace(go.Bar(x=ids, y=[r.get(key) or 0 for r in done], name=name))
    fig.update_layout(barmode="stack", title="Time per round (s)", height=320, margin={"t": 40, "b": 30},
                      xaxis_title="round", yaxis_title="seconds")
    st.plotly_chart(fig, key="timings")
    with_curve = [r for r in done if r["curve"]]
    if with_curve:
        pick = st.selectbox("Loss curve of round", [r["round"] for r in with_curve], index=len(with_curve) - 1)
        chosen = next(r for r in with_curve if r["round"] == pick)
        st.plotly_chart(loss_chart(chosen["curve"], height=300), key="history_curve")
        if chosen["cold_start"]:
            st.caption(plain(chosen["cold_start"]))


def _acc(a: dict) -> str | None:
    """'80% (49–94%)': the suggestions' accuracy with its 95% interval."""
    if not a["n"]:
        return None
    return f"{a['accuracy']:.0%} ({a['low']:.0%}–{a['high']:.0%})"


def audit_section() -> None:
    """The suggestions' accuracy on each round's random audit picks (an
    honest estimate) beside that on its sampler's picks (vaal_core.loop.audit)."""
    rows = [r for r in compare(project) if r["audit"]["n"]]
    if not rows:
        return
    st.subheader("Sampler picks vs random audit picks")
    st.dataframe([{"round": r["round"], "sampler": r["sampler"], "audit labels": r["audit"]["n"],
                   "audit picks": r["picks"], "accuracy on audit picks (95% CI)": _acc(r["audit"]),
                   "sampler labels": r["sampler_picks"]["n"],
                   "accuracy on sampler picks (95% CI)": _acc(r["sampler_picks"]),
                   "audit labels given by accepting": None if r["audit"]["accepted"] is None
                   else f"{r['audit']['accepted']:.0%}"} for r in rows], hide_index=True, width="stretch")
    st.caption("How often each round's task-model suggestion matched the label you gave. The audit picks are "
               "drawn at random from the unlabeled pool, so their row is an honest estimate of how often the "
               "suggestions are right on images you have not labeled; the sampler picks hard images on purpose, "
               "so its row is lower by design. With few audit labels the interval is wide (5 of 5 right still "
               "means 57% to 100%); it also assumes you label the audit picks you are shown rather than skip them.")


start_form()
if activity(project.last_round(), worker.round_worker(project)) is None:
    idle_watch()
else:
    live_panel()
last_round_panel()
history_section()
audit_section()
