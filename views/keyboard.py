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

The single view's buttons are drawn by the same component (`buttons`), not
as Streamlit buttons: a Streamlit button's click names the button, so each
drawing needed buttons keyed by its own token, and a page of new buttons on
every key cost the browser ~115 ms of script (React, styles, markdown) and
put the keypress p95 over 150 ms. Drawn here, a click is a press like a key,
sent with its drawing's token, and the buttons change in the same step as
the image.
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
  if (data.buttons) return showButtons(component, state);
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
        if (e.key === "/" && state.find && state.find.isConnected) {  // many classes: type to find one
          e.preventDefault();
          state.find.focus();
          return;
        }
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
    // The buttons change with the image: this drawing's, or none clickable until they arrive.
    if (state.buttons) state.buttons.data.drawing === data.drawing ? state.buttons.draw() : state.buttons.hold();
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
  if (data.item != null) next.dataset.item = data.item;
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

// The buttons of a drawing: drawn when that drawing's image is on screen (now, if it already is),
// in the same step as the keys; a click is sent like a key press, with the drawing's token.
function showButtons(component, state) {
  const { data, setTriggerValue, parentElement } = component;
  const draw = () => {
    const box = document.createElement("div");
    box.className = "vaal-buttons";
    let find = null;
    // A class with no number key (label_words.class_keys: past the tenth) is found by typing.
    if (data.buttons.flat().some((b) => b.id.startsWith("class_") && !b.key)) {
      find = document.createElement("input");
      find.type = "search";
      find.className = "vaal-find";
      find.placeholder = "Find a class (key: /): type, Enter picks";
      find.setAttribute("aria-label", "Find a class");
      box.appendChild(find);
    }
    const lines = [];
    for (const row of data.buttons) {
      const line = document.createElement("div");
      line.className = "vaal-row";
      line.style.gridTemplateColumns = `repeat(${row.length}, minmax(0, 1fr))`;
      for (const b of row) {
        const el = document.createElement("button");
        el.type = "button";
        el.className = b.primary ? "vaal-button primary" : "vaal-button";
        el.dataset.action = b.id;
        el.disabled = !!b.disabled;
        el.title = b.help || b.label;  // the whole name on hover, however the row lays it out
        if (b.icon) {
          const icon = document.createElement("span");
          icon.setAttribute("aria-hidden", "true");
          icon.textContent = b.icon + " ";
          el.appendChild(icon);
        }
        el.appendChild(document.createTextNode(b.label));
        if (b.key) {
          const key = document.createElement("code");
          key.textContent = b.key;
          el.append(" ", key);
        }
        el.addEventListener("click", () => {
          state.n += 1;
          setTriggerValue("press", { key: b.id, drawing: data.drawing, n: state.n });
        });
        line.appendChild(el);
      }
      box.appendChild(line);
      lines.push(line);
    }
    if (find) {
      const matching = () => [...box.querySelectorAll("button[data-action^='class_']")]
        .filter((el) => !el.hidden && !el.disabled);
      find.addEventListener("input", () => {
        const words = find.value.trim().toLowerCase();
        box.querySelectorAll("button[data-action^='class_']").forEach((el) => {
          el.hidden = !!words && !el.title.toLowerCase().includes(words);
        });
        lines.forEach((line) => { line.hidden = ![...line.children].some((el) => !el.hidden); });
      });
      find.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          const first = matching()[0];
          if (!first) return;
          state.findFocus = true;  // the next image's box takes the typing on
          first.click();
        } else if (e.key === "Escape") {
          state.findFocus = false;
          find.value = "";
          find.dispatchEvent(new Event("input"));
          find.blur();
        }
      });
      find.addEventListener("blur", () => { if (!find.value) state.findFocus = false; });
    }
    state.find = find;
    const old = parentElement.querySelector(".vaal-buttons");
    if (old) old.replaceWith(box); else parentElement.appendChild(box);
    if (find && state.findFocus) find.focus();
  };
  const hold = () => parentElement.querySelectorAll(".vaal-buttons button").forEach((el) => { el.disabled = true; });
  state.buttons = { data, draw, hold };
  if (state.data && state.data.drawing === data.drawing) draw();
  return undefined;
}
"""

# Streamlit's own button look (theme variables of st.components.v2), so these sit among st.buttons unnoticed.
CSS = """
.vaal-buttons { display: flex; flex-direction: column; gap: 0.5rem; }
.vaal-row { display: grid; column-gap: 1rem; }
.vaal-button {
  font-family: var(--st-font, inherit); font-size: 0.9rem; line-height: 1.6; min-height: 2.5rem;
  padding: 0.25rem 0.75rem; border-radius: var(--st-button-radius, 0.5rem); cursor: pointer;
  border: 1px solid var(--st-border-color, rgba(49, 51, 63, 0.2));
  background: var(--st-background-color, #fff); color: var(--st-text-color, #31333f);
  overflow-wrap: anywhere; }  /* a long class name wraps: cut to "black-capped chi…", it hid its own key */
.vaal-find { font: inherit; font-size: 0.9rem; padding: 0.4rem 0.75rem; border-radius: 0.5rem;
  border: 1px solid var(--st-border-color, rgba(49, 51, 63, 0.2)); background: var(--st-background-color, #fff);
  color: var(--st-text-color, #31333f); }
.vaal-button[hidden], .vaal-row[hidden] { display: none; }
.vaal-button:hover:enabled { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
.vaal-button.primary { background: var(--st-primary-color, #ff4b4b); border-color: var(--st-primary-color, #ff4b4b);
  color: #fff; }
.vaal-button.primary:hover:enabled { color: #fff; filter: brightness(0.92); }
.vaal-button:disabled { cursor: not-allowed; opacity: 0.4; }
.vaal-button code { font-size: 0.75em; padding: 0.1em 0.25em; border-radius: 0.25rem;
  color: var(--st-code-text-color, #09ab3b); background: var(--st-code-background-color, rgba(128, 128, 128, 0.1)); }
.vaal-button.primary code { color: inherit; background: rgba(255, 255, 255, 0.2); }
"""

_component = st.components.v2.component("vaal_keyboard", js=JS, css=CSS, isolate_styles=False)

KEEP = 64  # drawings remembered per tab: a press older than that is refused, not guessed
Action = tuple[Callable[..., Any], tuple]


def listen(key: str = "keyboard_listen") -> None:
    """Mount first on the page, before anything slow: from here on a key
    pressed before the first drawing is bound waits for it."""
    _component(key=key, data={"listen": True}, height=0)


def keys(drawing: str, actions: dict[str, Action], key: str = "keyboard", image: Image.Image | None = None,
         path: str = "", width: int = 0, item: int | None = None) -> None:
    """Bind `actions` ({key: (function, args)}; keys as KeyboardEvent.key,
    letters lower case: "1", "s", "Enter", "ArrowLeft") to this drawing.
    With `image`, the component draws it (`width` px wide, less on a short
    screen, titled `path`, its element marked with the store's `item` id)
    and the keys change meaning the moment it is on screen; without, call
    it right after what the person looks at."""
    drawings: OrderedDict = st.session_state.setdefault("drawings", OrderedDict())
    drawings[drawing] = actions
    while len(drawings) > KEEP:
        drawings.popitem(last=False)
    data: dict[str, Any] = {"drawing": drawing, "keys": sorted(actions)}
    if image is not None:
        data.update(image=data_url(image), path=path, width=width, pixelated=max(image.size) < width, item=item)
    _component(key=key, data=data, height="content" if image is not None else 0,
               on_press_change=lambda: _dispatch(key))


def buttons(drawing: str, rows: list[list[dict[str, Any]]], key: str = "keyboard_buttons") -> None:
    """Draw `rows` of buttons for this drawing, whose actions `keys` bound
    (call `keys` first). A button is {"id": its action, "label", "key": the
    key shown on it, "primary", "disabled", "help", "icon"}; a click does
    what the action does for the drawing on screen when it was clicked."""
    _component(key=key, data={"drawing": drawing, "buttons": rows}, height="content",
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
