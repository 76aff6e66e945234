import assert from "node:assert/strict";
import { test } from "node:test";

import { cellStates, shownSteps, startStroke, strokeTo, textsFor } from "../../web/lib/painting.js";

const PAPER = { key: [2, 3], fine: [4, 5, 6, 7] };
const ALL_ON = { featureInit: true, keySharing: true, querySharing: true };

const click = (sets, step) => strokeTo(startStroke(sets, step), step);

test("a click cycles a cell none -> key -> fine -> none", () => {
  let sets = { key: [], fine: [] };
  sets = click(sets, 5);
  assert.deepEqual(sets, { key: [5], fine: [] });
  sets = click(sets, 5);
  assert.deepEqual(sets, { key: [], fine: [5] });
  sets = click(sets, 5);
  assert.deepEqual(sets, { key: [], fine: [] });
});

test("a drag paints the pressed cell's new role over the range, both ways, and follows the pointer back", () => {
  const stroke = startStroke(PAPER, 8);  // none -> key
  assert.deepEqual(strokeTo(stroke, 10), { key: [2, 3, 8, 9, 10], fine: [4, 5, 6, 7] });
  assert.deepEqual(strokeTo(stroke, 6), { key: [2, 3, 6, 7, 8], fine: [4, 5] });
  assert.deepEqual(strokeTo(stroke, 8), { key: [2, 3, 8], fine: [4, 5, 6, 7] }, "moving back restores");
  const fromKey = startStroke(PAPER, 3);  // key -> fine
  assert.deepEqual(strokeTo(fromKey, 1), { key: [], fine: [1, 2, 3, 4, 5, 6, 7] });
  const fromFine = startStroke(PAPER, 4);  // fine -> none
  assert.deepEqual(strokeTo(fromFine, 7), { key: [2, 3], fine: [] });
});

test("only a changed text is written, in the compact form", () => {
  assert.deepEqual(textsFor(click(PAPER, 8), PAPER), { key: "2,3,8" });
  assert.deepEqual(textsFor(strokeTo(startStroke(PAPER, 8), 12), PAPER), { key: "2,3,8-12" });
  assert.deepEqual(textsFor(click(PAPER, 4), PAPER), { fine: "5-7" });
  assert.deepEqual(textsFor(click(PAPER, 3), PAPER), { key: "2", fine: "3-7" });
});

test("steps past the strip stay in the text while visible cells are painted", () => {
  const sets = { key: [2, 3], fine: [4, 5, 6, 7, 8, 9] };  // drawn on a 7-scale strip
  assert.deepEqual(click(sets, 0), { key: [0, 2, 3], fine: [4, 5, 6, 7, 8, 9] });
});

test("cells show init before the first key step, grey when their mechanism is off, and overlaps", () => {
  const roles = cellStates(ALL_ON, PAPER, 9).map((c) => c.role);
  assert.deepEqual(roles, ["init", "init", "key", "key", "fine", "fine", "fine", "fine", ""]);
  const off = cellStates({ ...ALL_ON, querySharing: false, featureInit: false }, PAPER, 9);
  assert.deepEqual(off.map((c) => c.on), [false, false, true, true, false, false, false, false, true]);
  const both = cellStates(ALL_ON, { key: [2, 4], fine: [4, 5] }, 6);
  assert.deepEqual(both.map((c) => c.overlap), [false, false, false, false, true, false]);
  assert.equal(both[4].role, "key");
});

test("with no key steps, or a key stage from step 0, no cell is Feature Initialization", () => {
  // Feature Initialization covers the steps before the first key step (Stages.init_steps): none here
  const roles = (sets) => cellStates(ALL_ON, sets, 7).map((c) => c.role);
  assert.deepEqual(roles({ key: [], fine: [4, 5] }), ["", "", "", "", "fine", "fine", ""]);
  assert.deepEqual(roles({ key: [], fine: [] }), ["", "", "", "", "", "", ""]);
  assert.deepEqual(roles({ key: [0, 1], fine: [2] }), ["key", "key", "fine", "", "", "", ""]);
  assert.deepEqual(roles({ key: [1], fine: [] }), ["init", "key", "", "", "", "", ""]);
});

test("a text that does not parse shows no steps (the strip shows its message)", () => {
  assert.deepEqual(shownSteps("2,x", 12), []);
  assert.deepEqual(shownSteps("4-700000000", 12), []);
  assert.deepEqual(shownSteps(" 4-6 ", 12), [4, 5, 6]);
});
