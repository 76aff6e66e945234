// The step texts of the Stage Scheduler, read exactly as the Python side reads them
// (infinity_core/style/stages.py): the same rules and the same messages, both tested against
// tests/data/step_text_cases.json.

const ITEM = /^[ \t]*([0-9]+)[ \t]*(?:-[ \t]*([0-9]+)[ \t]*)?$/;

export class StepTextError extends Error {}

// "2,3" -> [2, 3]; "4-7" -> [4, 5, 6, 7]; "" -> []. Steps past lastStep are refused before a range expands.
export function parseSteps(text, lastStep) {
  const steps = new Set();
  for (const item of String(text).split(",")) {
    if (item.replace(/^[ \t]+|[ \t]+$/g, "") === "") continue;
    const match = ITEM.exec(item);
    if (!match) {
      throw new StepTextError(`Could not read the step list '${text}': write step numbers and ranges ` +
        "separated by commas, such as '2,3' or '4-7'.");
    }
    const first = BigInt(match[1]);
    const last = BigInt(match[2] ?? match[1]);
    if (last < first) throw new StepTextError(`In '${text}', the range ${first}-${last} runs backwards; write ${last}-${first}.`);
    if (last > BigInt(lastStep)) {
      throw new StepTextError(`Step ${last} in '${text}' is past the last scale: the longest schedule has ` +
        `${lastStep + 1} scales, steps 0-${lastStep}.`);
    }
    for (let s = Number(first); s <= Number(last); s++) steps.add(s);
  }
  return [...steps].sort((a, b) => a - b);
}

// Python's format_steps: "4,5,6,7".
export function formatSteps(steps) {
  return [...steps].sort((a, b) => a - b).join(",");
}

// What the strip writes back into a text widget: runs of three or more as ranges ("4-7"), so the
// paper's defaults read as they are typed ("2,3" and "4-7").
export function compactSteps(steps) {
  const sorted = [...new Set(steps)].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    if (j - i >= 2) parts.push(`${sorted[i]}-${sorted[j]}`);
    else for (let k = i; k <= j; k++) parts.push(String(sorted[k]));
    i = j + 1;
  }
  return parts.join(",");
}

// Which stage texts a run reads: a switched-off stage's text is never read (Stages.reads_*_steps).
export const readsKeySteps = (s) => s.keySharing || s.featureInit;
export const readsFineSteps = (s) => s.querySharing;

// The first message a run with these settings on these scales gets (read_stages, then
// Stages.validate), or null; and the role of each scale as the run uses it.
export function checkStages(settings, scales, lastStep) {
  let key = [], fine = [];
  try {
    if (readsKeySteps(settings)) key = parseSteps(settings.keyText, lastStep);
    if (readsFineSteps(settings)) fine = parseSteps(settings.fineText, lastStep);
  } catch (error) {
    if (error instanceof StepTextError) return { error: error.message, roles: null };
    throw error;
  }
  const error = validate(settings, key, fine, scales);
  return { error, roles: error ? null : roles(settings, key, fine, scales.length) };
}

function gridSizes(scales) {
  return scales.map(([h, w], si) => `${si}: ${w}x${h}`).join(", ");  // width x height, as ComfyUI writes sizes
}

function validate(settings, key, fine, scales) {
  const last = scales.length - 1;
  const read = [];
  if (readsKeySteps(settings)) read.push(["Key", key]);
  if (readsFineSteps(settings)) read.push(["Fine", fine]);
  for (const [name, steps] of read) {
    const bad = steps.filter((s) => s > last);
    if (bad.length) {
      return `${name} step ${formatSteps(bad)} is out of range: this schedule has ${scales.length} scales, ` +
        `steps 0-${last} (${gridSizes(scales)}).`;
    }
  }
  const overlap = key.filter((s) => fine.includes(s));
  if (overlap.length && read.length === 2) {
    return `Step ${formatSteps(overlap)} is both a key step and a fine step; a step belongs to one stage.`;
  }
  if (readsKeySteps(settings) && !key.length) {
    return "The key stage is empty: give key steps (such as '2,3'), or turn off " +
      "Key Stage Attention Sharing and Feature Initialization.";
  }
  if (readsFineSteps(settings) && !fine.length) {
    return "The fine stage is empty: give fine steps (such as '4-7'), or turn off Adaptive Query Sharing.";
  }
  return null;
}

// describe_schedule: "key", "fine", "init" (Feature Initialization: before the first key step) or "".
export function roles(settings, key, fine, count) {
  const firstKey = key.length ? Math.min(...key) : 0;
  return Array.from({ length: count }, (_, s) => {
    if (key.includes(s)) return "key";
    if (fine.includes(s)) return "fine";
    return settings.featureInit && s < firstKey ? "init" : "";
  });
}
