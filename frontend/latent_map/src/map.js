// The Explore page's map: every point of a round's map, drawn by
// regl-scatterplot (WebGL), with the image under the pointer shown at once,
// box and lasso selection sent back to Python, and a replay of the rounds.
//
// Python (views/latent_map.py) mounts it as a Streamlit v2 component and
// passes small settings only; the points come from /vaal/map/... as one
// binary payload (vaal_core/maps/geometry.py documents its layout) and the
// thumbnails from /vaal/thumb/..., both by id. The selection goes back as
// item ids (state "selection"); hovering never runs the Python script.
import createScatterplot, { createRenderer } from 'regl-scatterplot';

const GREY = '#b4b4b4';
const LABELED = '#332288';
const NEXT = '#000000';
// Viridis, 16 steps: scores and P(labeled), dark = low.
const VIRIDIS = ['#440154', '#481a6c', '#472f7d', '#414487', '#39568c', '#31688e', '#2a788e', '#23888e',
  '#1f988b', '#22a884', '#35b779', '#54c568', '#7ad151', '#a5db36', '#d2e21b', '#fde725'];
const ROUNDS = ['#4477aa', '#ee6677', '#228833', '#ccbb44', '#66ccee', '#aa3377', '#bbbbbb', '#332288'];

const TAKEN = 'taken';
// The map's WebGL made ahead of the map: a load of /explore evaluates this bundle in the tab's first idle
// moment while Streamlit boots (views/routes.py, explore_page) and calls prepare(), which makes a renderer
// and draws one point with it, so that WebGL is set up and the point shaders compiled before the map needs
// them (in software, with no GPU: the map's first frame about 0.1 s sooner). The first map takes it.
let spare = null;
const payloads = new Map(); // url -> Promise of the parsed map (kept while the tab lives)
const instances = new WeakMap(); // parentElement -> the map drawn in it

function parse(buffer) {
  const size = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, size)));
  const base = 4 + size;
  const kinds = { '<i4': Int32Array, '<u2': Uint16Array, '<i2': Int16Array, '|u1': Uint8Array };
  const cols = {};
  for (const f of header.columns) cols[f.name] = new kinds[f.dtype](buffer, base + f.offset, f.length);
  return { header, cols };
}

function load(url) {
  if (!payloads.has(url)) {
    // views/latent_map.py's loader asks for the points before this bundle has loaded (window.__vaalPrefetch)
    let early = window.__vaalPrefetch && window.__vaalPrefetch[url];
    if (early === TAKEN) early = null;
    if (early) window.__vaalPrefetch[url] = TAKEN; // a response is read once; the loader asks no more
    const p = (early || fetch(url, { credentials: 'same-origin' })).then(async (r) => {
      if (!r.ok) throw new Error(await r.text());
      const buffer = await r.arrayBuffer();
      window.__vaalMapBytes = (window.__vaalMapBytes || 0) + Number(r.headers.get('content-length') || 0);
      return parse(buffer);
    });
    p.catch(() => payloads.delete(url));
    payloads.set(url, p);
  }
  return payloads.get(url);
}

const CSS = `
.vm-wrap { position: relative; font: 13px/1.35 "Source Sans Pro", "Source Sans 3", sans-serif; color: #31333f; }
.vm-canvas-box { position: relative; width: 100%; border: 1px solid #e6e6e9; border-radius: 6px; background: #fff; }
.vm-canvas-box canvas { display: block; }
.vm-bar { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; margin: 0 0 6px 0; }
.vm-bar button { font: inherit; border: 1px solid #d5d5d9; background: #fff; border-radius: 6px; padding: 2px 10px; cursor: pointer; }
.vm-bar button[aria-pressed="true"] { border-color: #f97316; color: #c2410c; background: #fff7ed; }
.vm-bar .vm-gap { flex: 1; }
.vm-legend { display: flex; gap: 10px; flex-wrap: wrap; margin-top: 4px; color: #555; }
.vm-legend i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; vertical-align: -1px; }
.vm-card { position: absolute; pointer-events: none; background: #fff; border: 1px solid #ccc; border-radius: 6px;
  box-shadow: 0 2px 8px rgba(0,0,0,.18); padding: 6px; display: none; z-index: 5; width: 120px; }
.vm-card img { width: 108px; height: 108px; image-rendering: auto; display: block; margin-bottom: 4px; background: #eee; }
.vm-ring { position: absolute; pointer-events: none; display: none; width: 14px; height: 14px; margin: -9px 0 0 -9px;
  border: 2px solid #f97316; border-radius: 50%; z-index: 4; }
.vm-replay { display: flex; gap: 8px; align-items: center; margin-top: 6px; }
.vm-replay input[type=range] { flex: 1; accent-color: #f97316; }
.vm-status { color: #555; min-height: 1.3em; }
.vm-error { color: #b91c1c; }
`;

// A uniform grid over the points' [-1, 1] coordinates (a counting sort into cells): finds the point
// under the pointer in a few cells rather than among all of them.
const CELLS = 256;

function buildGrid(xs, ys) {
  const n = xs.length;
  const cell = (v) => Math.min(CELLS - 1, Math.max(0, Math.floor(((v + 1) / 2) * CELLS)));
  const start = new Uint32Array(CELLS * CELLS + 1);
  const of = new Uint32Array(n);
  let xMin = 0;
  let xMax = 0;
  let yMin = 0;
  let yMax = 0;
  for (let i = 0; i < n; i++) {
    of[i] = cell(ys[i]) * CELLS + cell(xs[i]);
    start[of[i] + 1]++;
    if (xs[i] < xs[xMin]) xMin = i;
    if (xs[i] > xs[xMax]) xMax = i;
    if (ys[i] < ys[yMin]) yMin = i;
    if (ys[i] > ys[yMax]) yMax = i;
  }
  for (let c = 0; c < CELLS * CELLS; c++) start[c + 1] += start[c];
  const fill = start.slice(0, CELLS * CELLS);
  const items = new Uint32Array(n);
  for (let i = 0; i < n; i++) items[fill[of[i]]++] = i;
  return { start, items, cell, xMin, xMax, yMin, yMax };
}

// The point nearest (x, y) within the ellipse rx, ry (data units: a few pixels on screen); -1: none.
function nearest(g, xs, ys, x, y, rx, ry) {
  const c0 = g.cell(x - rx);
  const c1 = g.cell(x + rx);
  const r0 = g.cell(y - ry);
  const r1 = g.cell(y + ry);
  if ((c1 - c0 + 1) * (r1 - r0 + 1) > 4096) return -1; // zoomed far out: points are dust, no hover
  let best = -1;
  let bestD = 1;
  for (let r = r0; r <= r1; r++) {
    for (let c = c0; c <= c1; c++) {
      const k = r * CELLS + c;
      for (let j = g.start[k]; j < g.start[k + 1]; j++) {
        const i = g.items[j];
        const dx = (xs[i] - x) / rx;
        const dy = (ys[i] - y) / ry;
        const d = dx * dx + dy * dy;
        if (d <= bestD) {
          bestD = d;
          best = i;
        }
      }
    }
  }
  return best;
}

export function prepare() {
  if (spare) return;
  spare = createRenderer({ canvas: document.createElement('canvas') });
  const plot = createScatterplot({ renderer: spare, canvas: document.createElement('canvas'), width: 8, height: 8 });
  plot.draw({ x: [0], y: [0] }).finally(() => plot.destroy()); // a plot given a renderer leaves it alone
  window.__vaalMapPrepared = true; // for tests
}

function takeRenderer() {
  const renderer = spare || createRenderer({ canvas: document.createElement('canvas') });
  spare = null;
  return renderer;
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

class LatentMap {
  constructor(root, setState) {
    this.setState = setState;
    this.root = root;
    root.appendChild(el('style', {}, CSS));
    this.wrap = el('div', { class: 'vm-wrap', 'data-testid': 'vaal-map' });
    this.bar = el('div', { class: 'vm-bar' });
    this.tools = {};
    for (const [name, label] of [['pan', 'Pan / click'], ['rectangle', 'Box'], ['freeform', 'Lasso']]) {
      const b = el('button', { type: 'button', 'aria-pressed': name === 'pan' ? 'true' : 'false', 'data-tool': name }, label);
      b.onclick = () => this.tool(name);
      this.tools[name] = b;
      this.bar.appendChild(b);
    }
    this.bar.appendChild(el('span', { class: 'vm-gap' }));
    this.clearBtn = el('button', { type: 'button' }, 'Clear selection');
    this.clearBtn.onclick = () => { this.plot && this.plot.deselect(); };
    this.bar.appendChild(this.clearBtn);
    this.box = el('div', { class: 'vm-canvas-box' });
    this.canvas = el('canvas');
    this.box.appendChild(this.canvas);
    this.card = el('div', { class: 'vm-card', 'data-testid': 'vaal-map-card' });
    this.cardImg = el('img', { alt: '', class: 'vm-thumb' });
    this.cardText = el('div');
    this.card.append(this.cardImg, this.cardText);
    this.box.appendChild(this.card);
    this.ring = el('div', { class: 'vm-ring' });
    this.box.appendChild(this.ring);
    this.legend = el('div', { class: 'vm-legend' });
    this.status = el('div', { class: 'vm-status', 'data-testid': 'vaal-map-status' });
    this.replay = el('div', { class: 'vm-replay' });
    this.play = el('button', { type: 'button', 'data-testid': 'vaal-replay-play' }, '▶ Replay rounds');
    this.slider = el('input', { type: 'range', min: '0', max: '0', value: '0', step: '1', 'aria-label': 'Round' });
    this.stepText = el('span', { 'data-testid': 'vaal-replay-step' });
    this.replay.append(this.play, this.slider, this.stepText);
    this.bar.querySelectorAll('button').forEach((b) => b.classList.add('vm-tool'));
    this.wrap.append(this.bar, this.box, this.legend, this.replay, this.status);
    root.appendChild(this.wrap);
    this.step = null; // null: now; else the replay step shown
    this.slider.oninput = () => { this.stopPlay(); this.showStep(Number(this.slider.value)); };
    this.play.onclick = () => (this.timer ? this.stopPlay() : this.startPlay());
    this.selected = [];
    this.hovered = -1;
  }

  update(data) {
    this.data = data;
    this.box.style.height = `${data.height || 460}px`;
    this.texts = data.texts || {};
    if (this.url !== data.map_url) {
      this.url = data.map_url;
      this.status.textContent = 'Loading the map…';
      const t0 = performance.now();
      const loading = load(data.map_url);
      this.ensurePlot(); // WebGL's set-up (shaders: ~0.2 s in software) while the points download
      loading.then((m) => {
        if (this.url !== data.map_url || this.destroyed) return;
        this.m = m;
        this.draw(true).then(() => {
          window.__vaalMapDrawnMs = performance.now() - t0;
          this.wrap.setAttribute('data-points', String(m.header.n));
          this.wrap.setAttribute('data-ready', 'true');
        });
      }).catch((err) => {
        this.status.textContent = `The map could not be loaded: ${err.message}`;
        this.status.classList.add('vm-error');
      });
    } else if (this.m && this.drawnKey !== this.key()) {
      this.draw(false);
    }
  }

  ensurePlot() {
    if (this.plot) return;
    const width = Math.max(this.box.getBoundingClientRect().width, 100);
    const height = this.data.height || 460;
    // A renderer the size of the plot: regl-scatterplot's default one draws into a canvas the size of the
    // window and copies it out every frame, which with WebGL in software (no GPU) cost most of a frame.
    this.renderer = takeRenderer();
    this.renderer.resize(width, height);
    this.plot = createScatterplot({
      renderer: this.renderer,
      canvas: this.canvas,
      width,
      height,
      pointSize: 4, // set per map size in draw()
      pointSizeSelected: 3,
      pointOutlineWidth: 2,
      backgroundColor: [1, 1, 1, 1],
      pointColorActive: '#f97316',
      pointColorHover: '#f97316',
      lassoColor: '#f97316',
      lassoMinDelay: 5,
      deselectOnDblClick: false,
      actionKeyMap: { lasso: 'shift', merge: 'meta', remove: 'alt' },
      syncEvents: true,
    });
    this.plot.subscribe('select', ({ points }) => this.send(points));
    this.plot.subscribe('deselect', () => this.send([]));
    // Hover is ours, not regl-scatterplot's: its hover redraws every point on each pointer move, and with
    // WebGL drawn in software (no GPU) a frame of 50,000 points takes ~90 ms, so the thumbnail waited a
    // frame or two. It hovers only once the canvas has had a mouseenter (its check by
    // document.elementsFromPoint cannot see into the component's shadow root), so that event stops here;
    // every move still reaches the camera and the lasso. The point under the pointer is found in a grid
    // of the points (this.grid) and ringed by a DOM element.
    this.box.addEventListener('mouseenter', (e) => {
      if (e.target === this.canvas) e.stopPropagation();
    }, { capture: true });
    this.box.addEventListener('mousemove', (e) => {
      this.movedAt = performance.now();
      const r = this.box.getBoundingClientRect();
      this.mouse = [e.clientX - r.left, e.clientY - r.top];
      if (e.buttons === 0) this.hoverAt(this.mouse);
      else this.unhover();
    });
    this.box.addEventListener('mouseleave', () => this.unhover());
    this.resizer = new ResizeObserver(() => {
      const w = this.box.getBoundingClientRect().width;
      if (w > 0 && this.plot) {
        this.renderer.resize(w, this.data.height || 460);
        this.plot.set({ width: w, height: this.data.height || 460 });
      }
    });
    this.resizer.observe(this.box);
  }

  tool(name) {
    for (const [k, b] of Object.entries(this.tools)) b.setAttribute('aria-pressed', k === name ? 'true' : 'false');
    if (!this.plot) return;
    if (name === 'pan') this.plot.set({ mouseMode: 'panZoom' });
    else this.plot.set({ mouseMode: 'lasso', lassoType: name });
  }

  // The colour category (or value) of every point for the current mode and replay step.
  encode() {
    const { cols, header } = this.m;
    const n = header.n;
    const mode = this.data.colour || 'labeled';
    const step = this.step;
    const z = new Float32Array(n);
    const order = [];
    let colors;
    let legend;
    let continuous = false;
    const classColors = this.data.class_colors || [];
    const labeledNow = (i) => (step === null ? cols.cls[i] >= 0 : cols.shown[i] >= 0 && cols.shown[i] <= step);
    const batchNow = (i) => (step === null ? (cols.flags[i] & 1) : cols.picked[i] === step && !labeledNow(i));
    if (mode === 'score' || mode === 'disc') {
      continuous = true;
      colors = [GREY, ...VIRIDIS];
      for (let i = 0; i < n; i++) {
        const v = mode === 'score' ? cols.score[i] : cols.disc[i];
        const none = mode === 'score' ? v === 0 : v === 255;
        z[i] = none ? 0 : 1 + Math.min(15, Math.floor((mode === 'score' ? (v - 1) / 255 : v / 255) * 16));
      }
      legend = mode === 'score'
        ? [[VIRIDIS[15], this.texts.score_high || 'picked first'], [VIRIDIS[0], this.texts.score_low || 'picked last'], [GREY, 'not scored']]
        : [[VIRIDIS[15], 'P(labeled) 1'], [VIRIDIS[0], 'P(labeled) 0'], [GREY, 'no discriminator']];
    } else if (mode === 'round') {
      colors = [GREY, ...header.rounds.map((_, k) => ROUNDS[k % ROUNDS.length])];
      for (let i = 0; i < n; i++) z[i] = cols.picked[i] >= 0 && (step === null || cols.picked[i] <= step) ? 1 + cols.picked[i] : 0;
      legend = [[GREY, 'never picked'], ...header.rounds.map((r, k) => [ROUNDS[k % ROUNDS.length], `round ${r}'s batch`])];
    } else {
      // labeled / class: 0 unlabeled, 1..C the classes (or 1 labeled), then the next batch (the round's
      // batch and the images pushed to the front: what the Label page shows next)
      const byClass = mode === 'class';
      const C = byClass ? header.classes.length : 1;
      colors = [GREY, ...(byClass ? header.classes.map((_, k) => classColors[k] || LABELED) : [LABELED]), NEXT];
      for (let i = 0; i < n; i++) {
        if (labeledNow(i)) z[i] = byClass ? 1 + cols.cls[i] : 1;
        else if (batchNow(i) || (step === null && (cols.flags[i] & 2))) z[i] = C + 1;
        else z[i] = 0;
      }
      const batchWord = step === null ? 'next batch' : `round ${header.rounds[step] ?? ''}'s batch`;
      legend = [[GREY, 'unlabeled'],
        ...(byClass ? header.classes.map((c, k) => [classColors[k] || LABELED, c]) : [[LABELED, 'labeled']]),
        [NEXT, batchWord]];
    }
    // draw order: grey first, then the rest, the batch on top
    const top = colors.length - (mode === 'labeled' || mode === 'class' ? 1 : 0);
    for (let i = 0; i < n; i++) if (z[i] === 0) order.push(i);
    for (let i = 0; i < n; i++) if (z[i] > 0 && z[i] < top) order.push(i);
    for (let i = 0; i < n; i++) if (z[i] >= top) order.push(i);
    return { z, colors, legend, order, continuous };
  }

  async draw(first) {
    this.ensurePlot();
    const { cols, header } = this.m;
    const n = header.n;
    if (first || !this.xy) {
      this.xy = { x: new Float32Array(n), y: new Float32Array(n) };
      for (let i = 0; i < n; i++) {
        this.xy.x[i] = (cols.x[i] / 65535) * 1.9 - 0.95;
        this.xy.y[i] = (cols.y[i] / 65535) * 1.9 - 0.95;
      }
      this.rowOf = new Map();
      for (let i = 0; i < n; i++) this.rowOf.set(cols.ids[i], i);
      this.grid = buildGrid(this.xy.x, this.xy.y);
      this.slider.max = String(header.rounds.length);
      this.slider.value = String(header.rounds.length);
      this.replay.style.display = header.rounds.length ? 'flex' : 'none';
      this.step = null;
      this.stepText.textContent = this.stepWords();
    }
    const { z, colors, legend, order } = this.encode();
    // bigger points on small maps, small ones where 50,000 share the canvas
    const size = n < 2000 ? 7 : n < 20000 ? 5 : n < 100000 ? 3 : 2;
    this.plot.set({ pointColor: colors, colorBy: 'valueA', pointOrder: order, pointSize: size });
    // The selection lives here (a lasso is sent to Python, whose rerun comes back with the same ids);
    // Python's copy is used when this map is new (a reload, another round and back).
    const ids = this.selectedIds || this.data.selected || [];
    const sel = ids.map((id) => this.rowOf.get(id)).filter((r) => r !== undefined);
    this.drawnKey = this.key();
    await this.plot.draw({ x: this.xy.x, y: this.xy.y, valueA: z }, { zDataType: 'categorical', preventFilterReset: true });
    this.selected = sel;
    if (sel.length) this.plot.select(sel, { preventEvent: true });
    this.legend.replaceChildren(...legend.map(([c, t]) => {
      const s = el('span');
      const dot = el('i');
      dot.style.background = c;
      s.append(dot, document.createTextNode(t));
      return s;
    }));
    const labeled = this.countLabeled();
    this.status.classList.remove('vm-error');
    this.status.textContent = `${n.toLocaleString()} images drawn, every one on the map; ${labeled.toLocaleString()} labeled`
      + (this.step === null ? '' : ` by round ${header.rounds[this.step] ?? 'now'}`)
      + '. Hover a point to see it; click to select it; Box or Lasso selects a region (or shift-drag).';
  }

  countLabeled() {
    const { cols, header } = this.m;
    let k = 0;
    for (let i = 0; i < header.n; i++) {
      if (this.step === null ? cols.cls[i] >= 0 : (cols.shown[i] >= 0 && cols.shown[i] <= this.step)) k++;
    }
    return k;
  }

  stepWords() {
    const rounds = this.m.header.rounds;
    if (this.step === null || this.step >= rounds.length) return `now (after ${rounds.length} round${rounds.length === 1 ? '' : 's'})`;
    return `round ${rounds[this.step]} (${this.step + 1} of ${rounds.length}): the labels it trained on and the batch it picked`;
  }

  showStep(k) {
    const rounds = this.m.header.rounds.length;
    this.step = k >= rounds ? null : k;
    this.slider.value = String(k);
    this.stepText.textContent = this.stepWords();
    this.draw(false);
  }

  startPlay() {
    const rounds = this.m ? this.m.header.rounds.length : 0;
    if (!rounds) return;
    let k = 0;
    this.play.textContent = '❚❚ Pause';
    this.showStep(k);
    this.timer = setInterval(() => {
      k += 1;
      this.showStep(k);
      if (k >= rounds) this.stopPlay();
    }, this.data.replay_ms || 1200);
  }

  stopPlay() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.play.textContent = '▶ Replay rounds';
  }

  // The point under the pointer (within a few pixels), if any: shown in the card.
  hoverAt([mx, my]) {
    if (!this.grid || !this.plot) return;
    const g = this.grid;
    // screen = a * data + b on each axis (the camera pans and zooms, never rotates here): from where two
    // far-apart points are drawn now
    const [sx0] = this.plot.getScreenPosition(g.xMin);
    const [sx1] = this.plot.getScreenPosition(g.xMax);
    const [, sy0] = this.plot.getScreenPosition(g.yMin);
    const [, sy1] = this.plot.getScreenPosition(g.yMax);
    const { x: xs, y: ys } = this.xy;
    const ax = (sx1 - sx0) / (xs[g.xMax] - xs[g.xMin]);
    const ay = (sy1 - sy0) / (ys[g.yMax] - ys[g.yMin]);
    if (!Number.isFinite(ax) || !Number.isFinite(ay) || !ax || !ay) return; // one point, or all in a line
    const x = xs[g.xMin] + (mx - sx0) / ax;
    const y = ys[g.yMin] + (my - sy0) / ay;
    const reach = Math.max(6, (this.plot.get('pointSize') || 4) / 2 + 4); // px
    const i = nearest(g, xs, ys, x, y, reach / Math.abs(ax), reach / Math.abs(ay));
    if (i < 0) {
      this.unhover();
      return;
    }
    this.ring.style.left = `${sx0 + (xs[i] - xs[g.xMin]) * ax}px`;
    this.ring.style.top = `${sy0 + (ys[i] - ys[g.yMin]) * ay}px`;
    this.ring.style.display = 'block';
    if (i !== this.hovered) this.show(i);
  }

  unhover() {
    this.hovered = -1;
    this.card.style.display = 'none';
    this.ring.style.display = 'none';
  }

  show(i) {
    const { cols, header } = this.m;
    const id = cols.ids[i];
    this.hovered = i;
    // from the pointer's last move (it came to rest on this point) to the thumbnail drawn: bench/app.py
    this.hoverStart = this.movedAt || performance.now();
    const img = this.cardImg;
    const src = new URL(`${this.data.thumb_url}/${id}`, window.location.href).href;
    const shown = () => {
      if (img.getAttribute('data-item-id') !== String(id)) return;
      img.style.visibility = 'visible';
      img.setAttribute('data-shown', 'true');
      (window.__vaalHoverMs = window.__vaalHoverMs || []).push(performance.now() - this.hoverStart);
    };
    img.setAttribute('data-item-id', String(id));
    if (img.src === src && img.complete) {
      shown();
    } else {
      // never the last point's picture under this one's words: hidden until this one has loaded
      img.style.visibility = 'hidden';
      img.setAttribute('data-shown', 'false');
      img.onload = shown;
      img.src = src;
    }
    const words = [];
    if (cols.cls[i] >= 0) words.push(header.classes[cols.cls[i]]);
    else words.push('unlabeled');
    if (cols.flags[i] & 1) words.push('next batch');
    if (cols.picked[i] >= 0) words.push(`picked in round ${header.rounds[cols.picked[i]]}`);
    if (cols.disc[i] !== 255) words.push(`P(labeled) ${(cols.disc[i] / 254).toFixed(2)}`);
    this.cardText.textContent = `#${id} · ${words.join(' · ')}`;
    const [mx, my] = this.mouse || [0, 0];
    const w = this.box.clientWidth;
    this.card.style.left = `${mx + 14 + 124 > w ? mx - 134 : mx + 14}px`;
    this.card.style.display = 'block';
    // beside the pointer, inside the map's box (never over the legend below it)
    const room = this.box.clientHeight - this.card.offsetHeight - 4;
    this.card.style.top = `${Math.max(0, Math.min(my - 60, room))}px`;
  }

  key() {
    return `${this.data.colour}|${(this.data.class_colors || []).join()}|${this.step}`;
  }

  send(points) {
    const ids = Array.from(points, (i) => this.m.cols.ids[i]);
    const same = ids.length === this.selected.length && ids.every((id, k) => this.m.cols.ids[this.selected[k]] === id);
    this.selected = Array.from(points);
    this.selectedIds = ids;
    if (!same) this.setState('selection', ids);
  }

  // Where item `id` is drawn, in the page's CSS pixels (tests and bench/app.py point the mouse at it).
  screenOf(id) {
    const i = this.rowOf && this.rowOf.get(id);
    if (i === undefined || !this.plot) return null;
    const [x, y] = this.plot.getScreenPosition(i);
    const r = this.canvas.getBoundingClientRect();
    return [r.left + x, r.top + y];
  }

  // What the map shows now, by item id: labeled (in the current step) and the batch drawn in black.
  shownAs() {
    const { z, colors } = this.encode();
    const { cols } = this.m;
    const mode = this.data.colour || 'labeled';
    const batch = mode === 'labeled' || mode === 'class' ? colors.length - 1 : -1;
    const out = { step: this.step, labeled: [], batch: [] };
    for (let i = 0; i < z.length; i++) {
      if (z[i] === batch) out.batch.push(cols.ids[i]);
      else if (z[i] > 0 && batch > 0) out.labeled.push(cols.ids[i]);
    }
    return out;
  }

  ids() {
    return this.m ? Array.from(this.m.cols.ids) : [];
  }

  destroy() {
    this.destroyed = true;
    this.stopPlay();
    if (this.resizer) this.resizer.disconnect();
    if (this.plot) this.plot.destroy();
    if (this.renderer) this.renderer.destroy();
  }
}

export function mount(component) {
  const { parentElement, data, setStateValue } = component;
  let map = instances.get(parentElement);
  if (!map) {
    map = new LatentMap(parentElement, setStateValue);
    instances.set(parentElement, map);
    window.vaalMap = map; // the map on screen, for tests and bench/app.py
    window.__vaalMapMounts = (window.__vaalMapMounts || 0) + 1;
  }
  map.update(data);
  return () => {
    map.destroy();
    instances.delete(parentElement);
  };
}
