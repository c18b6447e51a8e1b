"""The Demo page's charts: accuracy against labels, as a Plotly figure and
as a self-contained HTML file (plotly.js inlined, no CDN, so it opens
offline), and where a sampler picked on the latent map, with a replay over
its rounds; `chart_text`, the one escaping of user text for every Plotly
chart of the app."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaal_core.files import atomic_write
from vaal_core.loop.report import BASELINE

if TYPE_CHECKING:  # plotly is imported only when a chart is drawn
    import plotly.graph_objects as go


def chart_text(text: Any) -> str:
    """User text (class names, file paths, run names) made literal for a
    Plotly string: Plotly renders a subset of HTML (<a href>, <b>, <span
    style>, <br>) and entities in legends, axis ticks, hover labels, titles
    and annotations, so '&', '<' and '>' become the entities it shows as
    those characters ('<b>x' is drawn as typed, not bold). Every chart in
    the app passes each such string through here, once."""
    return html.escape(str(text), quote=False)


def chart_figure(result: dict[str, Any]) -> go.Figure:
    """Accuracy (%) against labels, one line per sampler: the mean over seeds
    and a band of ± std (min-max where a round has one seed so far). The one
    place the chart is built, for the HTML file and the Demo page alike;
    works on a partial result (any rounds so far, even none)."""
    import plotly.graph_objects as go
    from plotly.colors import hex_to_rgb, qualitative

    palette = list(qualitative.Plotly)
    fig = go.Figure()
    for i, (sampler, rows) in enumerate(result.get("summary", {}).items()):
        name = chart_text(sampler)
        color = "#7f7f7f" if sampler == BASELINE else palette[i % len(palette)]
        r, g, b = hex_to_rgb(color)
        x = [row["labeled"] for row in rows]
        mean = [100 * row["mean"] for row in rows]
        lo = [100 * (row["mean"] - row["std"] if row["n_seeds"] > 1 else row["min"]) for row in rows]
        hi = [100 * (row["mean"] + row["std"] if row["n_seeds"] > 1 else row["max"]) for row in rows]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=f"rgba({r},{g},{b},0.15)",
                                 line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name))
        hover = [f"{row['labeled']:,} labels: {100 * row['mean']:.1f}% ± {100 * row['std']:.1f} "
                 f"(min {100 * row['min']:.1f}, max {100 * row['max']:.1f}, {row['n_seeds']} seeds)" for row in rows]
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": color, "dash": "dash" if sampler == BASELINE else "solid"},
                                 text=hover, hovertemplate="%{text}<extra>%{fullData.name}</extra>"))
    band = "± 1 std over seeds" if result["config"]["seeds"] > 1 else "min-max (one seed)"
    title = chart_text(result.get("headline") or "no results yet").replace(" | ", "<br>")
    progress = result.get("progress")
    if not result.get("complete") and progress:
        title = f"in progress ({progress['rounds_done']} of {progress['rounds_total']} rounds): {title}"
    fig.update_layout(title={"text": f"<span style='font-size:13px'>{title}</span>", "x": 0.01},
                      xaxis_title="labeled images", yaxis_title=f"test accuracy, % (band: {band})",
                      template="plotly_white", hovermode="closest", margin={"t": 110})
    return fig


def picks_figure(xy: Any, y: Any, classes: list[str], when: Any) -> go.Figure:
    """The pool on the latent map (`xy`), each image coloured by the round
    one sampler picked it in (`when`: 0 the initial set, -1 never; `y` its
    class index, for the hover). Early rounds dark, late ones bright. It
    opens on the whole run; its play button and slider replay it round by
    round (a Plotly animation: in the browser, no script run), each frame
    showing the picks up to that round."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    when = np.asarray(when)
    n_rounds = int(when.max()) + 1 if len(when) else 0
    colours = sample_colorscale("Plasma", [0.85 * r / max(n_rounds - 1, 1) for r in range(n_rounds)])
    names = ["initial set" if r == 0 else f"round {r}" for r in range(n_rounds)]

    def traces(upto: int) -> list:
        later = (when < 0) | (when > upto)
        out = [go.Scattergl(x=xy[later, 0], y=xy[later, 1], mode="markers", name="not picked",
                            marker={"size": 4, "color": "#cbd5e1"},
                            hovertext=[chart_text(classes[c]) for c in y[later]], hoverinfo="text")]
        for r in range(n_rounds):
            sel = when == r if r <= upto else np.zeros(len(when), bool)
            out.append(go.Scattergl(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=names[r],
                                    marker={"size": 7, "color": colours[r]},
                                    hovertext=[chart_text(classes[c]) for c in y[sel]], hoverinfo="text"))
        return out

    fig = go.Figure(data=traces(n_rounds - 1), frames=[go.Frame(data=traces(r), name=names[r])
                                                       for r in range(n_rounds)])
    step = {"frame": {"duration": 900, "redraw": True}, "transition": {"duration": 0}, "mode": "immediate"}
    fig.update_layout(
        # the legend above the map, the replay's button and slider below it
        height=540, margin={"t": 30, "b": 80, "l": 10, "r": 10}, xaxis={"visible": False},
        yaxis={"visible": False}, legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "xanchor": "left", "y": -0.02,
                      "yanchor": "top", "pad": {"r": 8},
                      "buttons": [{"label": "▶ Replay rounds", "method": "animate",
                                   "args": [None, {**step, "fromcurrent": False}]}]}],
        sliders=[{"active": n_rounds - 1, "x": 0.2, "len": 0.8, "y": -0.02, "yanchor": "top",
                  "currentvalue": {"prefix": "picks up to: "},
                  "steps": [{"label": names[r], "method": "animate", "args": [[names[r]], step]}
                            for r in range(n_rounds)]}])
    return fig


def write_chart(result: dict[str, Any], path: Path) -> Path:
    """`chart_figure` as a self-contained HTML file (plotly.js inlined, no
    CDN), so it opens offline."""
    fig = chart_figure(result)
    with atomic_write(path, "w") as fh:
        fig.write_html(fh, include_plotlyjs=True, full_html=True)
    return path
