// Everything the stage strip shows, from the scheduler's widgets, the samplers it feeds and their
// last runs: the legend, one cell per scale (box, label, stage, previews), the message under the
// cells and the strip's height. Plain data: the glue (../stage_strip.js) turns it into elements.

import { LINE_HEIGHT, MARGIN, stripLayout, wrapText } from "./layout.js";
import { cellStates, shownSteps } from "./painting.js";
import { checkSamplers } from "./samplers.js";
import { lastStep } from "./schedules.js";

export const MESSAGE_PAD = 4;  // the message's inset from the strip's margin
const BOTTOM = 8;              // room under the last line

// settings: {keyText, fineText, featureInit, keySharing, querySharing}; samplers as checkSamplers
// takes them, each with `run`: its last run {grids, previews: [url per scale]} or null.
export function stripView(table, settings, samplers, width, measure) {
  const last = lastStep(table);
  const check = checkSamplers(table, settings, samplers, last);
  const sets = { key: shownSteps(settings.keyText, last), fine: shownSteps(settings.fineText, last) };
  const layout = stripLayout(check.scales, width);
  const states = cellStates(settings, sets, check.scales.length);
  const run = check.shown === null ? null : samplers[check.shown].run;
  const previews = previewsOf(run, check.scales);
  const message = check.error ?? check.note;
  const lines = message ? wrapText(message, width - 2 * (MARGIN + MESSAGE_PAD), measure) : [];
  return {
    sets, layout, error: check.error, lines,
    legend: [["init", "Feature Init", settings.featureInit], ["key", "key", settings.keySharing],
      ["fine", "fine", settings.querySharing]].map(([role, label, on]) => ({ role, text: on ? label : `${label} off`, on })),
    summary: `${check.scales.length} scales` + (samplers.length > 1 ? `, ${samplers.length} samplers` : ""),
    cells: layout.cells.map((cell) => ({ ...cell, ...states[cell.step], unfit: check.unfit.includes(cell.step),
      preview: previews[cell.step] })),
    height: layout.height + lines.length * LINE_HEIGHT + BOTTOM,
  };
}

// The last run's preview of each scale, when that run had this very schedule.
export function previewsOf(run, scales) {
  const same = run && run.grids.length === scales.length &&
    run.grids.every(([h, w], i) => h === scales[i][0] && w === scales[i][1]);
  return scales.map((_, step) => (same ? run.previews[step] ?? null : null));
}
