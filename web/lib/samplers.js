// One Stage Scheduler may feed several samplers, each with its own schedule: the strip checks its
// steps against every one of them, as each sampler's run will.

import { samplerSchedule } from "./schedules.js";
import { checkStages, readsFineSteps, readsKeySteps } from "./steps.js";
import { shownSteps } from "./painting.js";

// `samplers`: [{name, widgets: {aspect, pixel_budget, custom_size}, ranGrids}] in link order (none:
// nothing connected). Returns the scales the strip draws (those of the sampler with the most
// scales, the first on a tie: every step some sampler runs gets a cell), which sampler that is
// (`shown`, an index or null), the note on its shape, the first message a run would give (named
// after its sampler when another sampler would run), and `unfit`: the steps a stage reads that
// some connected sampler's schedule does not have.
export function checkSamplers(table, settings, samplers, lastStep) {
  if (!samplers.length) {
    const { scales, note } = samplerSchedule(table, null);
    return { scales, shown: null, note, error: checkStages(settings, scales, lastStep).error, unfit: [] };
  }
  const plans = samplers.map((s) => samplerSchedule(table, s.widgets, s.ranGrids));
  const shown = plans.reduce((best, p, i) => (p.scales.length > plans[best].scales.length ? i : best), 0);
  const errors = plans.map((p) => p.error ?? checkStages(settings, p.scales, lastStep).error);
  const first = errors.findIndex(Boolean);
  let error = null;
  if (first >= 0) {
    // A message every sampler gives (a text that does not parse, an empty stage) is the text's own.
    const same = errors.every((e) => e === errors[first]);
    error = same || samplers.length === 1 ? errors[first] : `${samplers[first].name}: ${errors[first]}`;
  }
  const read = [...(readsKeySteps(settings) ? shownSteps(settings.keyText, lastStep) : []),
    ...(readsFineSteps(settings) ? shownSteps(settings.fineText, lastStep) : [])];
  const shortest = Math.min(...plans.map((p) => p.scales.length));
  const unfit = [...new Set(read.filter((step) => step >= shortest))].sort((a, b) => a - b);
  return { scales: plans[shown].scales, shown, note: plans[shown].note, error, unfit };
}
