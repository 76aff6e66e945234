// The scale schedule a sampler will run, from web/data/schedules.json (written from
// infinity_core/schedules.py): the grid (h, w) of every step, as Python's schedule() picks it.

export const DEFAULT_PIXEL_BUDGET = "1M";

// No schedule has more scales than the longest pixel budget: the step parser's bound.
export function lastStep(table) {
  return Math.max(...Object.values(table.pixel_budgets)) - 1;
}

// The template nearest to h/w (the first one on a tie, as Python's min()).
export function nearestTemplate(table, hDivW) {
  let best = table.templates[0];
  for (const t of table.templates) if (Math.abs(t.h_div_w - hDivW) < Math.abs(best.h_div_w - hDivW)) best = t;
  return best;
}

export function schedule(table, hDivW, budget) {
  const count = table.pixel_budgets[budget] ?? table.pixel_budgets[DEFAULT_PIXEL_BUDGET];
  return nearestTemplate(table, hDivW).scales.slice(0, count);
}

const SIZE = /^\s*(\d+)\s*[xX*]\s*(\d+)\s*$/;  // the sampler's custom_size, "width x height"

// The schedule of a sampler with these widget values (null: no sampler connected, so 1M square).
// `lastRun` (the grids the sampler last ran) stands in for a content image's shape, which only a
// run knows. Returns the scales and a note when the shape is a stand-in.
export function samplerSchedule(table, sampler, lastRun = null) {
  if (!sampler) return { scales: schedule(table, 1.0, DEFAULT_PIXEL_BUDGET), note: "no sampler connected: 1M square" };
  const budget = sampler.pixel_budget;
  if (sampler.aspect === table.content_aspect) {
    if (lastRun && lastRun.length === table.pixel_budgets[budget]) return { scales: lastRun, note: "shape of the last run's content image" };
    return { scales: schedule(table, 1.0, budget), note: "shape from the content image: square until a run" };
  }
  if (sampler.aspect === table.custom_aspect) {
    const match = SIZE.exec(String(sampler.custom_size ?? ""));
    if (!match || +match[1] <= 0 || +match[2] <= 0) {
      return { scales: schedule(table, 1.0, budget), note: "custom_size unreadable: shown square" };
    }
    return { scales: schedule(table, +match[2] / +match[1], budget), note: null };
  }
  return { scales: schedule(table, table.aspects[sampler.aspect] ?? 1.0, budget), note: null };
}
