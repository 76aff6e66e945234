// The live stage strip on the Infinity Stage Scheduler: one cell per scale of the connected
// sampler's schedule. Click a cell to cycle none -> key -> fine; drag to paint a range. The key_steps
// and fine_steps text widgets stay the saved truth: the strip reads them every frame and writes them
// when painted. After a run each cell shows the sampler's preview of that scale.
// The logic lives in lib/ (tested with Node); this file is the ComfyUI glue.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

import { FONT_SIZE, LINE_HEIGHT, MARGIN, cellAt, stripLayout, wrapText } from "./lib/layout.js";
import { cellStates, shownSteps, startStroke, strokeTo, textsFor } from "./lib/painting.js";
import { lastStep, samplerSchedule } from "./lib/schedules.js";
import { checkStages } from "./lib/steps.js";

const SCHEDULER = "InfinityStyleStageScheduler";
const SAMPLER = "InfinityStyleSampler";
const WIDTH = 520;  // seven cells a row: two rows for the 13 scales of 1M
const COLOURS = { init: "#5a8cdc", key: "#f0a03c", fine: "#5abe78", "": "#3a3a40", off: "#6e6e78" };
const TEXT = "#e6e6e6", DIM = "#9a9aa4", ERROR = "#ff6e5a", BACKGROUND = "#1e1e22";

const table = await fetch(new URL("./data/schedules.json", import.meta.url)).then((r) => r.json());
const LAST_STEP = lastStep(table);

const widget = (node, name) => node.widgets?.find((w) => w.name === name);
const value = (node, name) => widget(node, name)?.value;

function link(graph, id) {
  return graph.links?.get?.(id) ?? graph.links?.[id] ?? graph.getLink?.(id);
}

// The nodes fed by a node's outputs, through reroutes.
function targets(node, seen = new Set()) {
  const graph = node.graph, found = [];
  if (!graph || seen.has(node.id)) return found;
  seen.add(node.id);
  for (const output of node.outputs ?? []) {
    for (const id of output.links ?? []) {
      const target = graph.getNodeById(link(graph, id)?.target_id);
      if (!target) continue;
      if (target.type === "Reroute") found.push(...targets(target, seen));
      else found.push(target);
    }
  }
  return found;
}

function connectedSampler(node) {
  return targets(node).find((t) => t.comfyClass === SAMPLER) ?? null;
}

// Everything the strip draws, recomputed from the widgets (cheap: a few sets of at most 13 steps).
function view(node, width) {
  const settings = {
    keyText: value(node, "key_steps") ?? "", fineText: value(node, "fine_steps") ?? "",
    featureInit: value(node, "feature_init") !== false, keySharing: value(node, "key_sharing") !== false,
    querySharing: value(node, "query_sharing") !== false,
  };
  const sampler = connectedSampler(node);
  const run = sampler?.infinityLastRun ?? null;
  const widgets = sampler && { aspect: value(sampler, "aspect"), pixel_budget: value(sampler, "pixel_budget"),
    custom_size: value(sampler, "custom_size") };
  const { scales, note } = samplerSchedule(table, widgets, run?.grids);
  const sets = { key: shownSteps(settings.keyText, LAST_STEP), fine: shownSteps(settings.fineText, LAST_STEP) };
  const { error } = checkStages(settings, scales, LAST_STEP);
  const layout = stripLayout(scales, width);
  const message = error ?? note;
  const lines = message ? wrapText(message, width - 2 * MARGIN, measure) : [];
  return { settings, scales, sets, error, layout, lines, cells: cellStates(settings, sets, scales.length),
    previews: previewsOf(run, scales),
    height: layout.height + lines.length * LINE_HEIGHT + 8 };
}

let measureContext = null;
function measure(text) {
  measureContext ??= document.createElement("canvas").getContext("2d");
  measureContext.font = `${FONT_SIZE}px sans-serif`;
  return measureContext.measureText(text).width;
}

// The last run's preview of each scale, when that run had this very schedule (once loaded).
function previewsOf(run, scales) {
  const same = run && run.grids.length === scales.length &&
    run.grids.every(([h, w], i) => h === scales[i][0] && w === scales[i][1]);
  return scales.map((_, step) => {
    const image = same ? run.images[step] : null;
    return image?.complete && image.naturalWidth ? image : null;
  });
}

function drawStrip(ctx, node, width, y, strip) {
  const v = view(node, width);
  strip.lastView = v;
  strip.lastY = y;
  // Refit when the strip outgrows the node (a longer message, more scales), or shrinks in a node the
  // strip sized itself (a size the user or the workflow chose is kept).
  const need = node.computeSize()[1];
  if (need > node.size[1] + 0.5 || (Math.abs(node.size[1] - strip.fittedHeight) < 0.5 && Math.abs(need - node.size[1]) >= 0.5)) {
    requestAnimationFrame(() => fitSize(node, node.size[0]));
  }
  ctx.save();
  ctx.translate(0, y);
  ctx.fillStyle = BACKGROUND;
  ctx.beginPath();
  ctx.roundRect?.(MARGIN / 2, 0, width - MARGIN, v.height - 4, 6) ?? ctx.rect(MARGIN / 2, 0, width - MARGIN, v.height - 4);
  ctx.fill();
  ctx.font = `${FONT_SIZE}px sans-serif`;
  ctx.textBaseline = "alphabetic";

  // legend
  let x = MARGIN + 4;
  const legend = [["init", "Feature Init", v.settings.featureInit], ["key", "key", v.settings.keySharing],
    ["fine", "fine", v.settings.querySharing]];
  for (const [role, label, on] of legend) {
    ctx.fillStyle = on ? COLOURS[role] : COLOURS.off;
    ctx.fillRect(x, 6, 10, 10);
    ctx.fillStyle = on ? TEXT : DIM;
    ctx.textAlign = "left";
    const text = on ? label : `${label} off`;
    ctx.fillText(text, x + 14, 15);
    x += 14 + ctx.measureText(text).width + 14;
  }
  ctx.fillStyle = DIM;
  ctx.textAlign = "right";
  ctx.fillText(`${v.scales.length} scales`, width - MARGIN - 4, 15);

  for (const cell of v.layout.cells) {
    const state = v.cells[cell.step];
    const colour = state.on ? COLOURS[state.role] : COLOURS.off;
    const { box } = cell;
    const preview = v.previews[cell.step];
    if (preview) {
      ctx.imageSmoothingEnabled = false;  // the coarse scales show their token grid
      ctx.drawImage(preview, box.x, box.y, box.width, box.height);
      ctx.imageSmoothingEnabled = true;
      ctx.lineWidth = state.role ? 3 : 1;
      ctx.strokeStyle = state.role ? colour : DIM;
      ctx.strokeRect(box.x - 1.5, box.y - 1.5, box.width + 3, box.height + 3);
    } else {
      ctx.fillStyle = colour;
      ctx.fillRect(box.x, box.y, box.width, box.height);
      drawGrid(ctx, box, cell.grid);
    }
    if (!state.on && state.role) {  // switched off: hatched
      ctx.strokeStyle = "rgba(20, 20, 24, 0.7)";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(box.x, box.y + box.height);
      ctx.lineTo(box.x + box.width, box.y);
      ctx.stroke();
    }
    if (state.overlap) {
      ctx.strokeStyle = ERROR;
      ctx.lineWidth = 2;
      ctx.strokeRect(box.x - 3, box.y - 3, box.width + 6, box.height + 6);
    }
    ctx.fillStyle = state.role && state.on ? TEXT : DIM;
    ctx.textAlign = "center";
    ctx.fillText(cell.label.text, cell.label.x, cell.label.y);
  }

  ctx.textAlign = "left";
  ctx.fillStyle = v.error ? ERROR : DIM;
  v.lines.forEach((line, i) => ctx.fillText(line, MARGIN + 4, v.layout.height + LINE_HEIGHT * (i + 1) - 2));
  ctx.restore();
}

// The token grid of the coarse scales, so a cell shows what "6x6" means.
function drawGrid(ctx, box, [h, w]) {
  if (h > 8 || w > 8 || h * w === 1) return;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.35)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 1; i < h; i++) {
    ctx.moveTo(box.x, box.y + (box.height * i) / h);
    ctx.lineTo(box.x + box.width, box.y + (box.height * i) / h);
  }
  for (let i = 1; i < w; i++) {
    ctx.moveTo(box.x + (box.width * i) / w, box.y);
    ctx.lineTo(box.x + (box.width * i) / w, box.y + box.height);
  }
  ctx.stroke();
}

function writeTexts(node, texts) {
  for (const [name, text] of [["key_steps", texts.key], ["fine_steps", texts.fine]]) {
    const w = widget(node, name);
    if (text === undefined || !w) continue;
    w.value = text;
    w.callback?.(w.value);
  }
  node.setDirtyCanvas(true, true);
}

function onMouse(strip, event, pos, node) {
  const v = strip.lastView;
  if (!v) return false;
  const step = cellAt(v.layout, pos[0], pos[1] - (strip.y ?? strip.lastY));
  if (event.type === "pointerdown") {
    if (step === null) return false;
    strip.stroke = startStroke(v.sets, step);
    strip.strokeStep = null;
  }
  if (!strip.stroke) return false;
  if ((event.type === "pointerdown" || event.type === "pointermove") && step !== null && step !== strip.strokeStep) {
    strip.strokeStep = step;
    writeTexts(node, textsFor(strokeTo(strip.stroke, step), v.sets));
  }
  if (event.type === "pointerup") strip.stroke = null;
  return true;
}

function addStrip(node) {
  const strip = {
    name: "stage_strip",
    type: "infinitystyle.stage_strip",
    value: null,
    serialize: false,  // not in widgets_values: the text widgets are the saved truth
    options: { serialize: false },
    draw(ctx, node, width, y) {
      drawStrip(ctx, node, width, y, this);
    },
    computeSize(width) {
      // the node's own width: LiteGraph asks with the node's minimum width while fitting it
      const actual = Math.max(width ?? 0, node.size?.[0] ?? 0);
      return [actual, view(node, actual).height];
    },
    mouse(event, pos, node) {
      return onMouse(this, event, pos, node);
    },
  };
  node.addCustomWidget(strip);
  // Typing in a text widget (or loading a workflow, or undo) redraws the strip at once.
  for (const name of ["key_steps", "fine_steps", "feature_init", "key_sharing", "query_sharing"]) {
    const w = widget(node, name);
    if (!w) continue;
    const callback = w.callback;
    w.callback = function (...args) {
      const result = callback?.apply(this, args);
      node.setDirtyCanvas(true, true);
      return result;
    };
  }
  return strip;
}

// Fits the node to the strip: no empty area below it, and never so short the strip is cut off.
function fitSize(node, width) {
  node.size[0] = width;
  const height = node.computeSize()[1];
  node.setSize([width, height]);
  const strip = widget(node, "stage_strip");
  if (strip) strip.fittedHeight = height;
}

// The sampler keeps its last run (the grids and a picture per scale) for the strip of its scheduler.
function keepRun(node, output) {
  const grids = output?.scale_grids;
  const entries = output?.scale_previews;
  if (!grids || !entries) return;
  const stamp = Date.now();
  node.infinityLastRun = {
    grids,
    images: entries.map((entry) => {
      const image = new Image();
      image.onload = () => app.canvas?.setDirty(true, true);
      image.src = api.apiURL(`/view?${new URLSearchParams(entry)}&rand=${stamp}`);
      return image;
    }),
  };
  app.canvas?.setDirty(true, true);
}

app.registerExtension({
  name: "InfinityStyle.StageStrip",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === SCHEDULER) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function (...args) {
        const result = onNodeCreated?.apply(this, args);
        addStrip(this);
        fitSize(this, Math.max(this.size[0], WIDTH));
        return result;
      };
      const onConfigure = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function (...args) {
        const result = onConfigure?.apply(this, args);
        if (this.size[1] < this.computeSize()[1]) fitSize(this, this.size[0]);
        return result;
      };
    }
    if (nodeData.name === SAMPLER) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output, ...rest) {
        const result = onExecuted?.call(this, output, ...rest);
        keepRun(this, output);
        return result;
      };
    }
  },
});
