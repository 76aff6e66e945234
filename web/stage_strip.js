// The live stage strip on the Infinity Stage Scheduler: one cell per scale of the samplers it feeds.
// Click a cell to cycle none -> key -> fine; drag to paint a range. The key_steps and fine_steps
// text widgets stay the saved truth: the strip reads them and writes them when painted. After a
// run each cell shows the sampler's preview of that scale.
//
// The strip is a DOM widget (HTML over the canvas): the front end places those in both node modes,
// classic and Nodes 2.0, where a canvas widget loses its pointer events. The logic lives in lib/
// (tested with Node); this file is the ComfyUI glue.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

import { lastOutputs } from "./lib/history.js";
import { FONT_SIZE, LINE_HEIGHT, MARGIN, cellAt } from "./lib/layout.js";
import { startStroke, strokeTo, textsFor } from "./lib/painting.js";
import { MESSAGE_PAD, stripView } from "./lib/strip_view.js";

const SCHEDULER = "InfinityStyleStageScheduler";
const SAMPLER = "InfinityStyleSampler";
const WIDTH = 520;  // seven cells a row: two rows for the 13 scales of 1M
const DOM_MARGIN = 10;  // a DOM widget's inset from the node's sides in classic mode
const HISTORY_RUNS = 64;  // how far back /history is read for the samplers' last runs
const COLOURS = { init: "#5a8cdc", key: "#f0a03c", fine: "#5abe78", "": "#3a3a40", off: "#6e6e78" };
const TEXT = "#e6e6e6", DIM = "#9a9aa4", ERROR = "#ff6e5a", BACKGROUND = "#1e1e22";

const table = await fetch(new URL("./data/schedules.json", import.meta.url)).then((r) => r.json());

const widget = (node, name) => node.widgets?.find((w) => w.name === name);
const value = (node, name) => widget(node, name)?.value;

// The nodes fed by a node's outputs, through legacy Reroute nodes. getOutputNodes, not
// output.links: newer front ends warn that the latter is deprecated.
function targets(node, seen = new Set()) {
  if (!node.graph || seen.has(node.id)) return [];
  seen.add(node.id);
  const found = [];
  for (let slot = 0; slot < (node.outputs?.length ?? 0); slot++) {
    for (const target of node.getOutputNodes(slot) ?? []) {
      if (target.type === "Reroute") found.push(...targets(target, seen));
      else found.push(target);
    }
  }
  return found;
}

function settingsOf(node) {
  return { keyText: value(node, "key_steps") ?? "", fineText: value(node, "fine_steps") ?? "",
    featureInit: value(node, "feature_init") !== false, keySharing: value(node, "key_sharing") !== false,
    querySharing: value(node, "query_sharing") !== false };
}

function samplersOf(node) {
  return targets(node).filter((t) => t.comfyClass === SAMPLER).map((s) => ({
    name: `${s.title} #${s.id}`,
    widgets: { aspect: value(s, "aspect"), pixel_budget: value(s, "pixel_budget"), custom_size: value(s, "custom_size") },
    ranGrids: s.infinityLastRun?.grids ?? null, run: s.infinityLastRun ?? null,
  }));
}

let measureContext = null;
function measure(text) {
  measureContext ??= document.createElement("canvas").getContext("2d");
  measureContext.font = `${FONT_SIZE}px sans-serif`;
  return measureContext.measureText(text).width;
}

// --- drawing ---------------------------------------------------------------------------------------

const STYLE = `
.infinitystyle-strip { position: relative; box-sizing: border-box; overflow: hidden; user-select: none;
  touch-action: none; font: ${FONT_SIZE}px sans-serif; line-height: ${LINE_HEIGHT}px; color: ${TEXT};
  background: ${BACKGROUND}; border-radius: 6px; }
.infinitystyle-strip > * { position: absolute; white-space: nowrap; }
.infinitystyle-strip .legend { display: flex; gap: 14px; align-items: center; }
.infinitystyle-strip .legend span::before { content: ""; display: inline-block; width: 10px; height: 10px;
  margin-right: 4px; vertical-align: -1px; background: var(--colour); }
.infinitystyle-strip .off { color: ${DIM}; }
.infinitystyle-strip .cell { cursor: pointer; }
.infinitystyle-strip .box { position: absolute; box-sizing: border-box; }
.infinitystyle-strip .box img { width: 100%; height: 100%; display: block; image-rendering: pixelated; }
.infinitystyle-strip .hatch { position: absolute; inset: 0;
  background: linear-gradient(to top right, transparent calc(50% - 1px), rgba(20, 20, 24, 0.7) 0 calc(50% + 1px), transparent 0); }
.infinitystyle-strip .label { position: absolute; left: 0; right: 0; text-align: center; }
.infinitystyle-strip .message { color: ${DIM}; }
.infinitystyle-strip .message.error { color: ${ERROR}; }
`;

function element(tag, className, style = {}, text = null) {
  const e = document.createElement(tag);
  e.className = className;
  Object.assign(e.style, style);
  if (text !== null) e.textContent = text;
  return e;
}

const px = (v) => `${v}px`;

// The token grid of the coarse scales, so a cell shows what "6x6" means.
function gridLines([h, w]) {
  if (h > 8 || w > 8 || h * w === 1) return "";
  const line = "rgba(0, 0, 0, 0.35)";
  return `repeating-linear-gradient(to right, transparent 0 calc(100% / ${w} - 1px), ${line} 0 calc(100% / ${w})),` +
    `repeating-linear-gradient(to bottom, transparent 0 calc(100% / ${h} - 1px), ${line} 0 calc(100% / ${h}))`;
}

function cellElement(strip, cell) {
  const colour = cell.on ? COLOURS[cell.role] : COLOURS.off;
  const { box } = cell;
  const e = element("div", "cell", { left: px(cell.x), top: px(cell.y), width: px(cell.width), height: px(cell.height) });
  e.dataset.step = cell.step;
  e.dataset.role = cell.role;
  if (cell.unfit) e.dataset.unfit = "";
  const boxStyle = { left: px(box.x - cell.x), top: px(box.y - cell.y), width: px(box.width), height: px(box.height) };
  const shape = element("div", "box", boxStyle);
  if (cell.preview) {
    shape.appendChild(strip.image(cell.preview));
    shape.style.outline = cell.role ? `3px solid ${colour}` : `1px solid ${DIM}`;
    shape.style.outlineOffset = "1px";
  } else {
    shape.style.background = colour;
    shape.style.backgroundImage = gridLines(cell.grid);
  }
  if (!cell.on && cell.role) shape.appendChild(element("div", "hatch"));  // switched off
  e.appendChild(shape);
  if (cell.overlap || cell.unfit) {  // in both stages, or past a connected sampler's last scale
    e.appendChild(element("div", "box", { left: px(box.x - cell.x - 3), top: px(box.y - cell.y - 3),
      width: px(box.width + 6), height: px(box.height + 6), border: `2px ${cell.overlap ? "solid" : "dashed"} ${ERROR}` }));
  }
  e.appendChild(element("div", "label", { top: px(cell.label.y - cell.y - FONT_SIZE),
    color: cell.role && cell.on ? TEXT : DIM }, cell.label.text));
  return e;
}

function render(strip) {
  const v = strip.view;
  Object.assign(strip.element.style, { height: px(v.height), minHeight: px(v.height) });  // Nodes 2.0 lays it out as a flex item
  const legend = element("div", "legend", { left: px(MARGIN + 4), top: "4px" });
  for (const item of v.legend) {
    const entry = element("span", item.on ? "" : "off", {}, item.text);
    entry.style.setProperty("--colour", item.on ? COLOURS[item.role] : COLOURS.off);
    legend.appendChild(entry);
  }
  const summary = element("div", "summary off", { right: px(MARGIN + 4), top: "4px" }, v.summary);
  const lines = v.lines.map((line, i) => element("div", v.error ? "message error" : "message",
    { left: px(MARGIN + MESSAGE_PAD), top: px(v.layout.height + i * LINE_HEIGHT) }, line));
  strip.element.replaceChildren(legend, summary, ...v.layout.cells.map((_, i) => cellElement(strip, v.cells[i])), ...lines);
}

// --- one strip ------------------------------------------------------------------------------------

const strips = new Set();

class Strip {
  constructor(node) {
    this.node = node;
    this.element = element("div", "infinitystyle-strip");
    this.key = null;
    this.stroke = null;
    this.placed = false;  // its node has been in a graph (the loop drops it once it is in none)
    this.images = new Map();  // preview url -> <img>, kept while shown so a redraw does not reload it
    this.widget = node.addDOMWidget("stage_strip", "infinitystyle.stage_strip", this.element, {
      serialize: false,  // not in the prompt: the text widgets are what runs
      getMinHeight: () => this.refresh().height,  // asked while the node is sized, before any frame
      getMaxHeight: () => this.refresh().height,
    });
    this.widget.serialize = false;  // nor in widgets_values
    this.element.addEventListener("pointerdown", (e) => this.press(e));
    this.element.addEventListener("pointermove", (e) => this.move(e));
    for (const end of ["pointerup", "pointercancel"]) this.element.addEventListener(end, (e) => this.release(e));
    this.refresh();
  }

  image(url) {
    let image = this.images.get(url);
    if (!image) {
      image = new Image();
      image.src = url;
      this.images.set(url, image);
    }
    return image;
  }

  // Recomputes the view when anything it shows changed: the texts and switches, a connected
  // sampler's size widgets, a link, a run, the width. Polled (see below): those changes come from
  // other nodes and the front end's own widgets, with no one event for them in both node modes.
  // Returns the view.
  refresh() {
    // The element's width once placed; before, the width the classic front end will give it.
    const width = this.element.clientWidth || this.node.size[0] - 2 * DOM_MARGIN;
    const settings = settingsOf(this.node), samplers = samplersOf(this.node);
    const key = JSON.stringify([settings, samplers, width]);
    if (key === this.key) return this.view;
    this.key = key;
    this.view = stripView(table, settings, samplers, width, measure);
    const shown = new Set(this.view.cells.map((c) => c.preview).filter(Boolean));
    for (const url of this.images.keys()) if (!shown.has(url)) this.images.delete(url);
    render(this);
    this.fit();
    return this.view;
  }

  // Grows the node when the strip outgrows it (a longer message, more scales), and shrinks a node
  // the strip sized itself (a size the user or the workflow chose is kept).
  fit() {
    const node = this.node, need = node.computeSize()[1];
    const fitted = Math.abs(node.size[1] - (this.fittedHeight ?? -1)) < 0.5;
    if (need > node.size[1] + 0.5 || (fitted && Math.abs(need - node.size[1]) >= 0.5)) {
      node.setSize([node.size[0], need]);
      this.fittedHeight = need;
      node.setDirtyCanvas(true, true);
    }
  }

  // The point of a pointer event in strip units (CSS pixels at 100 % zoom), whatever the zoom.
  local(event) {
    const rect = this.element.getBoundingClientRect();
    const scale = rect.width / (this.element.offsetWidth || rect.width || 1);
    return [(event.clientX - rect.left) / scale, (event.clientY - rect.top) / scale];
  }

  press(event) {
    if (event.button !== 0) return;
    const step = cellAt(this.view.layout, ...this.local(event));
    if (step === null) return;  // off the cells: the node's own handling (select, drag)
    event.preventDefault();
    event.stopPropagation();
    this.element.setPointerCapture(event.pointerId);
    this.stroke = startStroke(this.view.sets, step);
    this.strokeStep = null;
    this.paint(step);
  }

  move(event) {
    if (!this.stroke) return;
    event.preventDefault();
    event.stopPropagation();
    const step = cellAt(this.view.layout, ...this.local(event));
    if (step !== null && step !== this.strokeStep) this.paint(step);
  }

  release(event) {
    if (!this.stroke) return;
    event.stopPropagation();
    this.stroke = null;
    this.element.releasePointerCapture?.(event.pointerId);
  }

  paint(step) {
    this.strokeStep = step;
    const texts = textsFor(strokeTo(this.stroke, step), this.refresh().sets);  // against the texts as they are now
    for (const [name, text] of [["key_steps", texts.key], ["fine_steps", texts.fine]]) {
      const w = widget(this.node, name);
      if (text === undefined || !w) continue;
      w.value = text;
      w.callback?.(w.value);
    }
    this.refresh();
    this.node.setDirtyCanvas(true, true);
  }
}

// One loop for every strip on the page, cheap when nothing changed (a few small strings compared).
// A strip whose node left its graph (deleted, or its workflow closed) leaves the loop.
function poll() {
  for (const strip of strips) {
    if (strip.node.graph?.getNodeById(strip.node.id) === strip.node) {
      strip.placed = true;
      strip.refresh();
    } else if (strip.placed) strips.delete(strip);
  }
  if (strips.size) requestAnimationFrame(poll);
}

function addStrip(node) {
  const strip = new Strip(node);
  if (!strips.size) requestAnimationFrame(poll);
  strips.add(strip);
  return strip;
}

// --- the samplers' runs ---------------------------------------------------------------------------

const runOf = (output) => ({
  grids: output.scale_grids,
  previews: output.scale_previews.map((entry) => api.apiURL(`/view?${new URLSearchParams(entry)}`)),
});

// After a page reload or a workflow switch the samplers' last runs come from the server's history,
// which lives as long as the temp files the previews are (until ComfyUI restarts).
async function restoreRuns(graph) {
  const samplers = graph?.nodes?.filter((n) => n.comfyClass === SAMPLER && !n.infinityLastRun) ?? [];
  if (!samplers.length || !graph.id) return;
  let history;
  try {
    history = await api.fetchApi(`/history?max_items=${HISTORY_RUNS}`).then((r) => r.json());
  } catch {
    return;  // no history: the strips show their plain cells
  }
  const outputs = lastOutputs(history, graph.id, "scale_previews");
  for (const sampler of samplers) {
    const output = outputs.get(String(sampler.id));
    if (output && !sampler.infinityLastRun) sampler.infinityLastRun = runOf(output);
  }
}

app.registerExtension({
  name: "InfinityStyle.StageStrip",
  setup() {
    document.head.appendChild(element("style", "", {}, STYLE));
  },
  async afterConfigureGraph() {
    await restoreRuns(app.rootGraph);
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === SCHEDULER) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function (...args) {
        const result = onNodeCreated?.apply(this, args);
        const strip = addStrip(this);
        this.size[0] = Math.max(this.size[0], WIDTH);
        this.setSize([this.size[0], this.computeSize()[1]]);
        strip.fittedHeight = this.size[1];
        return result;
      };
    }
    if (nodeData.name === SAMPLER) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output, ...rest) {
        const result = onExecuted?.call(this, output, ...rest);
        if (output?.scale_grids && output?.scale_previews) this.infinityLastRun = runOf(output);
        return result;
      };
    }
  },
});
