// What each cell of the stage strip shows, and how clicks and drags change the step sets.
// Sets are sorted arrays of steps; the text widgets stay the saved truth (the glue writes them).

import { compactSteps, parseSteps, StepTextError } from "./steps.js";

export const NEXT_ROLE = { "": "key", key: "fine", fine: "" };

// The steps a text shows on the strip: what it parses to, or none while it does not parse
// (the strip then shows the parser's message).
export function shownSteps(text, lastStep) {
  try {
    return parseSteps(text, lastStep);
  } catch (error) {
    if (error instanceof StepTextError) return [];
    throw error;
  }
}

export function roleAt(sets, step) {
  if (sets.key.includes(step)) return "key";
  if (sets.fine.includes(step)) return "fine";
  return "";
}

// Each cell's role (key, fine, init before the first key step, or ""), whether its mechanism is on,
// and whether its step is in both stages. A switched-off mechanism's cells keep their role, greyed.
export function cellStates(settings, sets, count) {
  const firstKey = sets.key.length ? Math.min(...sets.key) : 0;
  return Array.from({ length: count }, (_, step) => {
    const role = roleAt(sets, step) || (step < firstKey ? "init" : "");
    const on = { key: settings.keySharing, fine: settings.querySharing, init: settings.featureInit, "": true }[role];
    return { step, role, on, overlap: sets.key.includes(step) && sets.fine.includes(step) };
  });
}

function withRole(sets, steps, role) {
  const key = new Set(sets.key), fine = new Set(sets.fine);
  for (const s of steps) {
    key.delete(s);
    fine.delete(s);
    if (role === "key") key.add(s);
    if (role === "fine") fine.add(s);
  }
  const sorted = (set) => [...set].sort((a, b) => a - b);
  return { key: sorted(key), fine: sorted(fine) };
}

// A press on a cell starts a stroke: that cell takes the next role (none -> key -> fine -> none),
// and dragging paints the same role over every cell between it and the pointer.
export function startStroke(sets, step) {
  return { anchor: step, role: NEXT_ROLE[roleAt(sets, step)], base: sets };
}

export function strokeTo(stroke, step) {
  const [a, b] = [Math.min(stroke.anchor, step), Math.max(stroke.anchor, step)];
  return withRole(stroke.base, Array.from({ length: b - a + 1 }, (_, i) => a + i), stroke.role);
}

// The texts to write for painted sets: only the ones that change, so an untouched text keeps its form.
export function textsFor(sets, before) {
  const out = {};
  if (compactSteps(sets.key) !== compactSteps(before.key)) out.key = compactSteps(sets.key);
  if (compactSteps(sets.fine) !== compactSteps(before.fine)) out.fine = compactSteps(sets.fine);
  return out;
}
