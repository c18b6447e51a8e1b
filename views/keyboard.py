"""The Label page's keys, sent with the drawing they were pressed on.

A Streamlit button shortcut sends only "button X was pressed"; which image
that meant is whatever the server drew last, and while a run streams the
browser can still show the one before (a round training makes runs slow).
Keys were then applied to the wrong image or twice. Here one small
component (st.components.v2: a script in the page, no build) listens to the
keyboard and sends each press with the token of the drawing on screen when
it was pressed; the page keeps the actions of its recent drawings by token,
so a press does what its own drawing offered, to the image that drawing
showed, and the store writes each (drawing, key) once.
"""

from __future__ import annotations

import base64
import io
from collections import OrderedDict
from typing import Any, Callable

import streamlit as st
from PIL import Image

# One listener per browser tab, bound to the latest drawing's data. Keys typed
# into text fields are the field's; held keys (auto-repeat) are one press.
JS = r"""
export default function (component) {
  const { data, setTriggerValue } = component;
  const state = window.__vaalKeyboard || (window.__vaalKeyboard = { n: 0, early: [] });
  const deliver = (key) => {
    state.n += 1;
    state.send("press", { key: key, drawing: state.data.drawing, n: state.n });
  };
  if (data.listen) {
    // Mounted first on the page: a key pressed while the first drawing is still on its way is kept
    // (a few seconds) and given to that drawing, not lost.
    if (!state.listener) {
      state.listener = (e) => {
        if (e.defaultPrevented || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
        const t = e.target;
        const typing = t && (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
          (t.tagName === "INPUT" && !["checkbox", "radio", "button"].includes(t.type)));
        if (typing) return;
        const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
        if (!state.data) {
          if (/^[0-9a-z]$|^(Enter|ArrowLeft|ArrowRight)$/.test(key)) state.early.push([key, Date.now()]);
          return;
        }
        if (!state.data.keys.includes(key)) return;
        e.preventDefault();
        deliver(key);
      };
      document.addEventListener("keydown", state.listener);
    }
    return () => {
      document.removeEventListener("keydown", state.listener);
      Object.assign(state, { listener: null, data: null, early: [] });
    };
  }
  // A drawing: the keys mean what it offers from the moment its image is on screen. The image is
  // drawn here, decoded first and swapped in in the same step as the keys, so what the person
  // sees and what a key does never disagree.
  const seq = (state.seq = (state.seq || 0) + 1);
  const bind = () => {
    if (seq !== state.seq) return;  // a later drawing arrived first
    state.data = data;
    state.send = setTriggerValue;
    const early = state.early.filter(([key, at]) => Date.now() - at < 15000 && data.keys.includes(key));
    state.early = [];
    if (early.length) deliver(early[0][0]);  // one: the first drawing shows one image
  };
  // No clean-up that unbinds: until the next drawing is on screen, keys mean the last one shown (the
  // listener's own clean-up, when the person leaves the page, drops everything).
  if (!data.image) { bind(); return undefined; }
  const next = new Image();
  next.src = data.image;
  next.alt = data.path;
  next.className = "vaal-shown";
  next.dataset.path = data.path;
  next.dataset.drawing = data.drawing;
  // At most `width` px, smaller on a short screen (a 1280 x 720 laptop shows the whole view), never tiny.
  next.style.width = `clamp(200px, calc(100vh - 360px), ${data.width}px)`;
  next.style.maxWidth = "100%";
  next.style.imageRendering = data.pixelated ? "pixelated" : "auto";
  next.decode().catch(() => null).then(() => {
    if (seq !== state.seq) return;
    const old = component.parentElement.querySelector("img.vaal-shown");
    if (old) old.replaceWith(next); else component.parentElement.appendChild(next);
    bind();
  });
  return undefined;
}
"""

_component = st.components.v2.component("vaal_keyboard", js=JS, isolate_styles=False)

KEEP = 64  # drawings remembered per tab: a press older than that is refused, not guessed
Action = tuple[Callable[..., Any], tuple]


def listen(key: str = "keyboard_listen") -> None:
    """Mount first on the page, before anything slow: from here on a key
    pressed before the first drawing is bound waits for it."""
    _component(key=key, data={"listen": True}, height=0)


def keys(drawing: str, actions: dict[str, Action], key: str = "keyboard", image: Image.Image | None = None,
         path: str = "", width: int = 0) -> None:
    """Bind `actions` ({key: (function, args)}; keys as KeyboardEvent.key,
    letters lower case: "1", "s", "Enter", "ArrowLeft") to this drawing.
    With `image`, the component draws it (`width` px wide, less on a short
    screen, titled `path`)
    and the keys change meaning the moment it is on screen; without, call
    it right after what the person looks at."""
    drawings: OrderedDict = st.session_state.setdefault("drawings", OrderedDict())
    drawings[drawing] = actions
    while len(drawings) > KEEP:
        drawings.popitem(last=False)
    data: dict[str, Any] = {"drawing": drawing, "keys": sorted(actions)}
    if image is not None:
        data.update(image=data_url(image), path=path, width=width, pixelated=max(image.size) < width)
    _component(key=key, data=data, height="content" if image is not None else 0,
               on_press_change=lambda: _dispatch(key))


def data_url(img: Image.Image) -> str:
    """The image as a data: URL. Pictures arrive already scaled (smoothly)
    to the size drawn (views/common.picture), so JPEG at quality 90 loses
    nothing a person sees and costs under 1 ms and ~20 KB for a 448 px photo,
    where PNG cost ~45 ms and ~160 KB on every key. PNG for other modes."""
    buf = io.BytesIO()
    if img.mode in ("RGB", "L"):
        img.save(buf, format="JPEG", quality=90)
        kind = "jpeg"
    else:
        img.save(buf, format="PNG")
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _dispatch(key: str) -> None:
    press = (st.session_state.get(key) or {}).get("press")
    if not press:
        return
    actions = st.session_state.get("drawings", {}).get(press.get("drawing"))
    if actions is None:
        st.session_state["label_error"] = ("That key was pressed on a page that is no longer shown (reloaded or "
                                           "restarted): nothing was written. Press it again.")
        return
    action = actions.get(press.get("key"))
    if action is not None:
        func, args = action
        func(*args)


def hint(key: str | None) -> str:
    """The key, shown on its button (markdown inline code)."""
    return f" `{key}`" if key else ""
