// vc.Labeler's view (anywidget). Python draws (the `state` trait: one
// drawing, with its token); this file shows it and sends each key or click
// back as {type: "press", token, action, index?, ids?}. The token names the
// drawing the person saw, so a press always acts on that image.

const KEYS_HELP = "Keys (click the widget first): 1-9, 0 class (past 10 classes: / finds one) · Enter accept · S skip · Z undo · ← → move · G grid · V single · Esc leaves";

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);  // text, never HTML: names stay names
  }
  return node;
}

function render({ model, el }) {
  const root = h("div", { class: "vaal-labeler", tabindex: "0", "data-lm-suppress-shortcuts": "true" });
  el.append(root);
  let ticked = new Set();  // grid tiles ticked, for the current drawing only
  let token = null;
  let findFocus = false;  // the find box had the typing: the next drawing's box takes it on

  const send = (action, extra = {}) => {
    const s = model.get("state");
    model.send({ type: "press", token: s.token, action, ...extra });
  };
  const button = (label, action, opts = {}) =>
    h("button", {
      class: "vaal-btn" + (opts.primary ? " primary" : ""), type: "button", title: opts.title,
      disabled: opts.disabled, "data-action": action, "data-index": opts.index,
      onclick: (e) => { e.preventDefault(); if (opts.onclick) opts.onclick(); else send(action, opts.extra || {}); root.focus(); },
    }, label, opts.key ? h("kbd", {}, opts.key) : null);

  function classButtons(s, highlight) {
    const box = h("div", { class: "vaal-classes" }, s.classes.map((c, i) =>
      button(c.name, "class", {
        key: c.key, index: String(i), primary: highlight === c.name, title: c.name,
        extra: s.view === "grid" ? { index: i, ids: [...ticked] } : { index: i },
      })));
    if (s.classes.every((c) => c.key)) return box;
    // A class with no number key (past the tenth) is found by typing part of its name, as on the Label page.
    const shown = () => [...box.children].filter((b) => !b.hidden);
    const find = h("input", {
      type: "search", class: "vaal-find", placeholder: "Find a class (key: /)",
      "aria-label": "Find a class",
      oninput: () => {
        const words = find.value.trim().toLowerCase();
        for (const b of box.children) b.hidden = !!words && !b.title.toLowerCase().includes(words);
      },
      onkeydown: (e) => {
        e.stopPropagation();  // typed letters are the name's, not the widget's or the notebook's keys
        if (e.key === "Enter") {
          e.preventDefault();
          const first = shown()[0];
          if (first) { findFocus = true; first.click(); }
        } else if (e.key === "Escape") {
          findFocus = false;
          find.value = "";
          find.dispatchEvent(new Event("input"));
          root.focus({ preventScroll: true });
        }
      },
    });
    return h("div", { class: "vaal-finding" }, find, box);
  }

  function single(s) {
    const c = s.card;
    const sug = c.suggestion;
    const highlight = c.label || (sug && sug.sure ? sug.label : null);
    const right = h("div", { class: "vaal-side" },
      h("div", { class: "vaal-what" }, c.label ? `Labeled ${c.label}: press a key to change it`
        : "Pick the class" + (!sug ? "" : sug.sure ? ", or press Enter to accept the suggestion"
          : "; Enter takes the suggestion only if you agree with it")),
      sug ? h("div", { class: "vaal-suggestion" }, sug.text) : null,
      sug && !c.label ? button(`✓ Accept: ${sug.label}`, "accept", { key: "Enter", primary: sug.sure }) : null,
      classButtons(s, highlight),
      h("div", { class: "vaal-moves" },
        button("Prev", "prev", { disabled: c.first, title: "Key: ←" }),
        button("Skip", "skip", { title: "Key: S (it comes back after every other image of this round)" }),
        button("Undo", "undo", { title: "Key: Z" }),
        button("Next", "next", { disabled: c.last, title: "Key: →" })));
    const left = h("div", { class: "vaal-image" },
      h("img", { src: c.src, alt: c.path, "data-item": String(c.item_id) }),
      h("div", { class: "vaal-path" }, c.path),
      h("div", { class: "vaal-caption" }, `${c.position} · ${c.where}` + (c.skipped ? " · skipped earlier" : "")),
      c.audit ? h("div", { class: "vaal-caption" }, "🎲 " + c.audit) : null,
      c.note ? h("div", { class: "vaal-caption warn" }, "⚠ " + c.note) : null);
    return h("div", { class: "vaal-single" }, left, right);
  }

  function grid(s) {
    const tiles = h("div", { class: "vaal-tiles" }, s.tiles.map((t) => {
      const tile = h("div", {
        class: "vaal-tile" + (ticked.has(t.item_id) ? " ticked" : ""), "data-item": String(t.item_id),
        title: t.path,
        onclick: () => {
          ticked.has(t.item_id) ? ticked.delete(t.item_id) : ticked.add(t.item_id);
          draw();
        },
      },
        h("img", { src: t.src, alt: t.path }),
        h("div", { class: "vaal-tile-caption" },
          (ticked.has(t.item_id) ? "☑ " : "☐ ") +
          (t.suggestion ? `${t.sure ? "✓ " : ""}${t.suggestion} ${Math.round(t.confidence * 100)}%` : t.path)));
      return tile;
    }));
    const sel = ticked.size ? `${ticked.size} ticked` : "none ticked: a key labels the whole page";
    return h("div", { class: "vaal-grid" },
      classButtons(s, null),
      h("div", { class: "vaal-moves" },
        button("All", "all", { key: "A", onclick: () => { s.tiles.forEach((t) => ticked.add(t.item_id)); draw(); } }),
        button("None", "none", { key: "N", onclick: () => { ticked.clear(); draw(); } }),
        button("Skip page", "skip", { key: "S" }),
        button("Undo", "undo", { key: "Z" }),
        button("Accept ✓", "accept", { key: "Enter", primary: s.tiles.some((t) => t.sure),
                                        extra: { ids: [...ticked] } })),
      h("div", { class: "vaal-caption" }, `Tick images of one class and press its key (${sel}).` +
        (s.grid_words ? " " + s.grid_words + "." : "")),
      tiles);
  }

  function draw() {
    const s = model.get("state");
    if (!s || !s.classes) return;
    if (s.token !== token) { token = s.token; ticked = new Set(); }
    const hadFocus = root.contains(document.activeElement);
    const p = s.progress;
    const head = h("div", { class: "vaal-head" },
      h("span", { class: "vaal-progress" },
        (p.round === null ? "No round yet: images in random order" :
          `Round ${p.round}'s batch: ${p.batch_left.toLocaleString()} of ${p.batch.toLocaleString()} left`) +
        ` · ${p.labeled.toLocaleString()} of ${p.total.toLocaleString()} labeled`),
      h("span", { class: "vaal-views" },
        button("Single", "single", { key: "V", primary: s.view === "single" }),
        button("Grid", "grid", { key: "G", primary: s.view === "grid" }),
        button("↻", "refresh", { title: "Redraw from the project (labels given elsewhere)" })));
    let body;
    if (!s.classes.length) body = null;
    else if (s.done) body = h("div", { class: "vaal-done" }, `All ${p.total.toLocaleString()} images are labeled. ` +
      "Train a round for a new queue (p.round(...)), or press Z to undo the last label.");
    else body = s.view === "grid" ? grid(s) : single(s);
    root.replaceChildren(...[
      ...s.notes.map((n) => h("div", { class: "vaal-note" }, n)),
      head,
      s.error ? h("div", { class: "vaal-error", role: "alert" }, s.error) : null,
      body,
      h("div", { class: "vaal-last" }, s.last ? `Last: ${s.last}` : "Last: nothing yet"),
      h("div", { class: "vaal-keys" }, KEYS_HELP)].filter((n) => n));  // replaceChildren(null) writes "null"
    const find = root.querySelector(".vaal-find");
    if (find && findFocus) find.focus({ preventScroll: true });
    else if (hadFocus) root.focus({ preventScroll: true });
  }

  root.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey) return;  // Shift+Enter still runs the cell
    const s = model.get("state");
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    let handled = true;
    const cls = s.classes.findIndex((c) => c.key === key);
    if (cls >= 0) send("class", s.view === "grid" ? { index: cls, ids: [...ticked] } : { index: cls });
    else if (key === "Enter") send("accept", s.view === "grid" ? { ids: [...ticked] } : {});
    else if (key === "s") send("skip");
    else if (key === "z") send("undo");
    else if (key === "ArrowLeft" && s.view === "single") send("prev");
    else if (key === "ArrowRight" && s.view === "single") send("next");
    else if (key === "g") send("grid");
    else if (key === "v") send("single");
    else if (key === "r") send("refresh");
    else if (key === "a" && s.view === "grid") { s.tiles.forEach((t) => ticked.add(t.item_id)); draw(); }
    else if (key === "n" && s.view === "grid") { ticked.clear(); draw(); }
    else if (key === "/" && root.querySelector(".vaal-find")) { findFocus = true; root.querySelector(".vaal-find").focus(); }
    else if (key === "Escape") root.blur();
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }  // not the notebook's shortcuts (1 = heading, Z, ...)
  });
  model.on("change:state", draw);
  draw();
  return () => model.off("change:state", draw);
}

export default { render };
