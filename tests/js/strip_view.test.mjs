import assert from "node:assert/strict";
import { test } from "node:test";

import { stripView } from "../../web/lib/strip_view.js";
import { TABLE } from "./data.mjs";

const PAPER = { keyText: "2,3", fineText: "4-6", featureInit: true, keySharing: true, querySharing: true };
const measure = (text) => text.length * 7;
const sampler = (id, aspect, pixel_budget, run = null) =>
  ({ name: `Sampler #${id}`, widgets: { aspect, pixel_budget, custom_size: "" }, ranGrids: run?.grids ?? null, run });
const GRIDS_006 = [[1, 1], [2, 2], [4, 4], [6, 6], [8, 8], [12, 12], [16, 16]];
const RUN = { grids: GRIDS_006, previews: GRIDS_006.map((_, i) => `/view?filename=s${i}.png`) };

test("after a run of this very schedule each cell shows its scale's preview; another schedule shows none", () => {
  const view = stripView(TABLE, PAPER, [sampler(3, "1:1 square", "0.06M", RUN)], 520, measure);
  assert.deepEqual(view.cells.map((c) => c.preview), RUN.previews);
  const other = stripView(TABLE, PAPER, [sampler(3, "1:1 square", "0.25M", RUN)], 520, measure);
  assert.equal(other.cells.length, 10);
  assert.ok(other.cells.every((c) => c.preview === null));
});

test("two samplers: the summary says so and the step one of them lacks is marked on its cell", () => {
  const view = stripView(TABLE, { ...PAPER, fineText: "4-7" },
    [sampler(3, "1:1 square", "0.25M"), sampler(8, "1:3 portrait", "0.06M")], 520, measure);
  assert.equal(view.summary, "10 scales, 2 samplers");
  assert.deepEqual(view.cells.filter((c) => c.unfit).map((c) => c.step), [7]);
  assert.ok(view.error.startsWith("Sampler #8: Fine step 7 is out of range"));
  assert.ok(view.lines.length >= 2, "a long message wraps");
  assert.equal(view.lines.join(" "), view.error, "all of it is shown");
});

test("the strip grows by a line per line of message", () => {
  const quiet = stripView(TABLE, PAPER, [sampler(3, "1:1 square", "1M")], 520, measure);
  const loud = stripView(TABLE, { ...PAPER, fineText: "7-4" }, [sampler(3, "1:1 square", "1M")], 520, measure);
  assert.equal(quiet.lines.length, 0);
  assert.equal(loud.height - quiet.height, 15 * loud.lines.length);
});

test("no key steps: no cell shows Feature Initialization", () => {
  const view = stripView(TABLE, { ...PAPER, keyText: "" }, [sampler(3, "1:1 square", "0.06M")], 520, measure);
  assert.ok(view.cells.every((c) => c.role !== "init"));
});

test("the legend says which mechanisms are off", () => {
  const view = stripView(TABLE, { ...PAPER, keySharing: false }, [], 520, measure);
  assert.deepEqual(view.legend.map((l) => l.text), ["Feature Init", "key off", "fine"]);
});
