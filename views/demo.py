"""Demo: active learning played by itself, for people deciding whether it
is worth it. An oracle (the class folder names) answers; each sampler's
test accuracy is drawn against the number of labels, mean and spread over
seeds, random always beside them; the headline says plainly what was
measured. Runs in a background worker; the page polls its results file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vaal_core import samplers
from vaal_core.errors import VaalError
from vaal_core.loop.chart import chart_figure, picks_figure
from vaal_core.loop.report import summary_csv
from vaal_core.progress import phase_label
from vaal_core.services import demo_runs, workspace
from views.common import database_gone_in_words, plain, show_error

st.title("Demo")
st.caption("An oracle answers with each image's true class, rounds play by themselves, and every sampler is "
           "measured against random on held-out images. The honest question: does the learned sampler "
           "reach random's accuracy with fewer labels?")


def digits_folder() -> Path:
    from vaal_core.data.digits import write_digits

    return write_digits(workspace.data_dir() / "digits")


# -- a new run ------------------------------------------------------------------

def new_run_form() -> None:
    with st.form("demo"):
        source = st.radio("Data set", ["Digits (built in, 1,797 images)", "A folder with one subfolder per class"],
                          horizontal=True)
        folder = st.text_input("Folder (for the second choice)", placeholder="/data/cifar10/train")
        names = [n for n in samplers.names() if n != "random"]
        chosen = st.multiselect("Samplers (random always runs beside them)", names,
                                default=[n for n in ("auto", "vaal") if n in names])
        a, b, c, d, e = st.columns(5)
        subset = a.number_input("Images used", min_value=0, value=600, step=100,
                                help="a stratified subset (0 = all); 20% of it is held out for testing")
        init = b.number_input("Initial labels", min_value=0, value=50, step=10,
                              help="random labels every sampler starts from; 0: each sampler picks the first "
                                   "batch too (a cold start; vaal and the samplers that read a classifier "
                                   "hand it to typiclust, as their descriptions say)")
        budget = c.number_input("Labels per round", min_value=1, value=50, step=10)
        rounds = d.number_input("Rounds", min_value=1, value=4, step=1)
        seeds = e.number_input("Seeds", min_value=1, value=3, step=1, help="repeats with other random starts; the headline "
                                                                           "states a difference from random only when "
                                                                           "it holds in each of 3 or more seeds")
        fast = st.toggle("Quick models (seconds per round on a CPU)", value=True)
        go_ = st.form_submit_button("Play", type="primary", icon=":material/play_arrow:")
    if not go_:
        return
    try:
        images = digits_folder() if source.startswith("Digits") else Path(folder.strip())
        if not str(images).strip() or str(images) == ".":
            raise VaalError("give the folder: one subfolder per class, images inside")
        run = demo_runs.start(images, chosen, int(init), int(budget), int(rounds), int(seeds),
                              subset=int(subset) or None, fast=fast)
    except (VaalError, OSError) as err:
        show_error(err)
        return
    st.session_state["demo_run"] = run.name
    st.rerun()


# -- one run --------------------------------------------------------------------------

def untitled(fig: go.Figure) -> go.Figure:
    """The headline is shown above the chart in full; the chart's own title
    (kept in the HTML download) would repeat it, cut off."""
    return fig.update_layout(title=None, margin={"t": 20})


def overlap_table(result: dict) -> None:
    """How alike the samplers chose: the share of picks two samplers have in
    common, in round 1's batch and over every pick after the initial set."""
    overlap = result.get("overlap") or []
    if not overlap:
        return
    st.markdown("**Overlap between samplers' picks**")
    st.dataframe([{"sampler": o["a"], "with": o["b"], "round 1 batch %": round(100 * o["first_batch"], 1),
                   "all picks %": round(100 * o["all_picks"], 1), "n_seeds": o["n_seeds"]} for o in overlap],
                 hide_index=True)
    st.caption("Share of picks two samplers have in common (mean over seeds): in round 1's batch, and among all "
               "the images they picked after the initial set, by the last round. Near 100% means they choose "
               "almost the same images; two independent random choices share about the fraction of the pool "
               "picked.")


def timing_table(result: dict) -> None:
    """Seconds per round (after round 0), mean over seeds and rounds: the
    selection (encoding, scoring, choosing) and the sampler's own training."""
    rows = []
    for name, by_seed in (result.get("results") or {}).items():
        recs = [r for records in by_seed.values() for r in records if r.get("round", 0) > 0]
        if recs:
            rows.append({"sampler": name,
                         "selection s / round": round(float(np.mean([r.get("select_s") or 0.0 for r in recs])), 3),
                         "training s / round": round(float(np.mean([r.get("train_s") or 0.0 for r in recs])), 3)})
    if rows:
        st.markdown("**Time per round**")
        st.dataframe(rows, hide_index=True)
        st.caption("Mean over seeds and rounds after the initial set. Training: the models the sampler needs; "
                   "selection: encoding, scoring and choosing the batch. The classifier that measures accuracy "
                   "is not counted (every sampler trains the same one).")


@st.fragment(run_every=1.5)
@database_gone_in_words
def live(run: demo_runs.DemoRun) -> None:
    """While the worker plays: progress, the growing curves, a Stop button."""
    result = run.result()
    job = run.worker()
    if not run.running():
        st.rerun()  # finished (or failed) since the last poll: draw the final page
    prog = (result or {}).get("progress") or {}
    done, total = prog.get("rounds_done", 0), prog.get("rounds_total") or 0
    cur = prog.get("current") or {}
    phase = phase_label(prog.get("phase"))
    text = "reading the images..." if result is None else \
        f"{done} of {total} rounds played" + (f" · seed {cur['seed']}, {cur['sampler']}, round {cur['round']}: "
                                            f"{phase}" if cur else f" · {phase}")
    st.progress(done / total if total else 0.0, text=text)
    if result and result.get("summary"):
        st.plotly_chart(untitled(chart_figure(result)), key="live_chart")
        st.caption(plain(result.get("headline", "")))
    if st.button("Stop", icon=":material/stop:"):
        demo_runs.stop(run)
    st.caption(f"Worker process {job.pid if job else '?'}; log: {plain(job.log) if job else '-'}")


def finished(run: demo_runs.DemoRun) -> None:
    result = run.result()
    job = run.worker()
    if result is None:
        st.error(f"The run ended before writing results: {plain(job.error) if job and job.error else 'see its log'}")
        if job:
            st.code(job.log_tail(), language=None)
        return
    if result.get("error"):
        st.error(f"The run failed: {plain(result['error'])}")
    elif not result.get("complete"):
        st.warning("The run was stopped before the end; below is what it finished.")
    headline = result.get("headline") or "no results"
    st.info(headline.replace(" | ", "\n\n"), icon=":material/campaign:")  # our words, sampler names, figures
    st.plotly_chart(untitled(chart_figure(result)), key="final_chart")
    st.dataframe([{"sampler": name, **{k: row[k] for k in ("labeled", "n_seeds")},
                   "accuracy %": round(100 * row["mean"], 1), "± std": round(100 * row["std"], 1)}
                  for name, rows in result["summary"].items() for row in rows], hide_index=True)
    overlap_table(result)
    timing_table(result)
    a, b, c = st.columns(3)
    a.download_button("Results (JSON)", run.result_path.read_bytes(), file_name=f"{run.name}.json",
                      mime="application/json", icon=":material/download:")
    b.download_button("Table (CSV)", summary_csv(result), file_name=f"{run.name}.csv", mime="text/csv",
                      icon=":material/download:")
    html = run.result_path.with_suffix(".html")
    c.download_button("Chart (HTML)", html.read_bytes() if html.is_file() else
                      chart_figure(result).to_html(include_plotlyjs=True),
                      file_name=f"{run.name}.html", mime="text/html", icon=":material/download:")
    try:
        pm = demo_runs.picks_map(run, result)
    except (VaalError, OSError, KeyError) as err:
        show_error(err)
        return
    if pm is None:
        st.caption("No latent map: none of the chosen samplers trains a VAE (pick vaal or coreset).")
        return
    st.subheader("Where each sampler picked, on the VAE's latent map (seed 0)")
    options = list(pm.picked_in)
    sampler = st.segmented_control("Sampler", options, default=options[-1], key="map_sampler") or options[-1]
    st.plotly_chart(picks_figure(pm.xy, pm.y, pm.classes, pm.picked_in[sampler]), key="picks_map")
    st.caption("Replay rounds (or the slider) shows the picks round by round: where the sampler looked first, "
               "and how its batches spread over the map.")
    counts = np.bincount(pm.y[pm.picked_in[sampler] >= 0], minlength=len(pm.classes))
    st.caption("Picked per class: " + ", ".join(f"{plain(c)} {n}" for c, n in zip(pm.classes, counts)))


# -- the page -------------------------------------------------------------------------

runs = demo_runs.runs()
with st.expander("New run", expanded=not runs):
    new_run_form()
if not runs:
    st.stop()
names = [r.name for r in runs]
current = st.session_state.get("demo_run")
pick = st.selectbox("Run", names, index=names.index(current) if current in names else 0)
st.session_state["demo_run"] = pick
run = next(r for r in runs if r.name == pick)
if run.running():
    live(run)
else:
    finished(run)
