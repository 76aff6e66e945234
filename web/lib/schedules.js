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

// Python's repr() of a string, as the sampler's messages quote the size it could not read.
export function pythonRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  const escaped = text.replace(/[\\\n\r\t]/g, (c) => ({ "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" })[c]);
  return quote + (quote === "'" ? escaped.replaceAll("'", "\\'") : escaped) + quote;
}

// The schedule of a custom size, or the message the sampler's run gives for it (make_schedule).
function customSchedule(table, text, budget) {
  const match = SIZE.exec(text);
  if (!match) return { error: `Could not read the size ${pythonRepr(text)}: write width x height, such as 1024x768.` };
  const [width, height] = [Number(match[1]), Number(match[2])];
  if (width <= 0 || height <= 0) return { error: `Image size must be positive, got ${width}x${height}.` };
  return { scales: schedule(table, height / width, budget) };
}

// The schedule of a sampler with these widget values (null: no sampler connected, so 1M square).
// `lastRun` (the grids the sampler last ran) stands in for a content image's shape, which only a
// run knows. Returns the scales, a note when the shape is a stand-in, and the run's message when
// the sampler would refuse its size (the scales are then the budget's square).
export function samplerSchedule(table, sampler, lastRun = null) {
  if (!sampler) return { scales: schedule(table, 1.0, DEFAULT_PIXEL_BUDGET), note: "no sampler connected: 1M square", error: null };
  const budget = sampler.pixel_budget;
  const square = schedule(table, 1.0, budget);
  if (sampler.aspect === table.content_aspect) {
    if (lastRun && lastRun.length === table.pixel_budgets[budget]) {
      return { scales: lastRun, note: "shape of the last run's content image", error: null };
    }
    return { scales: square, note: "shape from the content image: square until a run", error: null };
  }
  if (sampler.aspect === table.custom_aspect) {
    const custom = customSchedule(table, String(sampler.custom_size ?? ""), budget);
    return { scales: custom.scales ?? square, note: null, error: custom.error ?? null };
  }
  return { scales: schedule(table, table.aspects[sampler.aspect] ?? 1.0, budget), note: null, error: null };
}
