"""The Explore page's map as a Streamlit component (custom components v2):
every point of a round's map drawn in WebGL by regl-scatterplot
(frontend/latent_map, built by `make`), thumbnails on hover, box and lasso
selection, a replay of the rounds.

Only small settings go through the script run: the points (a binary payload)
and the thumbnails come over the app's own routes (views/routes.py), by
project id, round id and item id, so a 50,000-point map costs one download
per state of the store and a hover costs no script run at all. The
selection comes back as item ids.
"""

from __future__ import annotations

import streamlit as st

from vaal_core.maps import palette
from vaal_core.services import workspace
from vaal_core.store import Project
from views.routes import bundle_url, map_url

# A loader, not the bundle: the 230 kB bundle is fetched once from /vaal/js
# (cached by the browser) instead of riding in every script run's message.
_LOADER = """
export default function (component) {
  let cleanup = null, gone = false;
  // the points are asked for now, while the bundle loads (the bundle takes this response)
  const prefetch = (window.__vaalPrefetch = window.__vaalPrefetch || {});
  const url = component.data.map_url;
  if (!prefetch[url]) prefetch[url] = fetch(url, { credentials: 'same-origin' });
  import(new URL(component.data.bundle, window.location.href).href)
    .then((m) => { if (!gone) cleanup = m.mount(component); })
    .catch((err) => { component.parentElement.textContent = 'The map could not start: ' + err.message; });
  return () => { gone = true; if (cleanup) cleanup(); };
}
"""
_component = st.components.v2.component("vaal_latent_map", js=_LOADER, isolate_styles=True)

COLOURS = {"Labeled": "labeled", "Class": "class", "Sampler score": "score", "Discriminator": "disc",
           "Round picked": "round"}


def latent_map(project: Project, round_id: int, colour: str, selected: list[int], key: str,
               height: int = 460, score_words: tuple[str, str] = ("picked first", "picked last")) -> list[int]:
    """Draw round `round_id`'s map; returns the selected item ids (in the order selected)."""
    pid = workspace.project_id(project.root)
    data = {
        "bundle": bundle_url(),
        "map_url": map_url(pid, round_id, project),
        "thumb_url": f"/vaal/thumb/{pid}",
        "colour": COLOURS.get(colour, "labeled"),
        "class_colors": palette.map_colors(project.classes()),
        "selected": [int(i) for i in selected],
        "height": height,
        "texts": {"score_high": score_words[0], "score_low": score_words[1]},
    }
    result = _component(data=data, key=key, default={"selection": []}, on_selection_change=lambda: None)
    return [int(i) for i in (result.get("selection") if isinstance(result, dict) else
                             getattr(result, "selection", None)) or []]
