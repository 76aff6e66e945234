import assert from "node:assert/strict";
import { test } from "node:test";

import { checkSamplers } from "../../web/lib/samplers.js";
import { lastStep } from "../../web/lib/schedules.js";
import { TABLE } from "./data.mjs";

const LAST = lastStep(TABLE);
const PAPER = { keyText: "2,3", fineText: "4-7", featureInit: true, keySharing: true, querySharing: true };
const sampler = (id, aspect, pixel_budget, custom_size = "1024x1024") =>
  ({ name: `Infinity Scale-wise Sampler #${id}`, widgets: { aspect, pixel_budget, custom_size }, ranGrids: null });
const SQUARE_025 = sampler(4, "1:1 square", "0.25M");
const PORTRAIT_006 = sampler(7, "1:3 portrait", "0.06M");

test("one scheduler, two samplers: the step that does not fit the second is named with that sampler", () => {
  const got = checkSamplers(TABLE, PAPER, [SQUARE_025, PORTRAIT_006], LAST);
  assert.equal(got.scales.length, 10, "the cells are the longer schedule's, so every step run has one");
  assert.equal(got.shown, 0);
  assert.match(got.error, /^Infinity Scale-wise Sampler #7: Fine step 7 is out of range: this schedule has 7 scales, steps 0-6 \(0: 1x1, /);
  assert.deepEqual(got.unfit, [7], "fine step 7 is past the 0.06M sampler's last scale");
  // Linked the other way round, the same sampler is named and the longer schedule still drawn.
  const swapped = checkSamplers(TABLE, PAPER, [PORTRAIT_006, SQUARE_025], LAST);
  assert.equal(swapped.shown, 1);
  assert.equal(swapped.error, got.error);
});

test("steps every sampler has: no message, nothing unfit", () => {
  const settings = { ...PAPER, fineText: "4-6" };
  const got = checkSamplers(TABLE, settings, [SQUARE_025, PORTRAIT_006], LAST);
  assert.equal(got.error, null);
  assert.deepEqual(got.unfit, []);
});

test("a message every sampler gives is the text's own, not a sampler's", () => {
  const got = checkSamplers(TABLE, { ...PAPER, fineText: "7-4" }, [SQUARE_025, PORTRAIT_006], LAST);
  assert.equal(got.error, "In '7-4', the range 7-4 runs backwards; write 4-7.");
});

test("with one sampler the message is the run's, word for word", () => {
  const got = checkSamplers(TABLE, PAPER, [PORTRAIT_006], LAST);
  assert.match(got.error, /^Fine step 7 is out of range: this schedule has 7 scales/);
  assert.deepEqual(got.unfit, [7]);
});

test("a switched-off stage's steps are not checked against any sampler", () => {
  const got = checkSamplers(TABLE, { ...PAPER, querySharing: false }, [SQUARE_025, PORTRAIT_006], LAST);
  assert.equal(got.error, null);
  assert.deepEqual(got.unfit, []);
});

test("a sampler whose custom size cannot be read is named, with the sampler's message", () => {
  const bad = sampler(9, TABLE.custom_aspect, "1M", "banana");
  const got = checkSamplers(TABLE, PAPER, [SQUARE_025, bad], LAST);
  assert.equal(got.error, "Infinity Scale-wise Sampler #9: Could not read the size 'banana': write width x height, such as 1024x768.");
});

test("the first sampler's schedule is drawn on a tie; none connected: 1M square with a note", () => {
  const portrait = sampler(5, "1:2 portrait", "0.25M");
  assert.equal(checkSamplers(TABLE, PAPER, [portrait, SQUARE_025], LAST).scales[3][0], 6, "1:2 portrait: 6 high");
  const none = checkSamplers(TABLE, PAPER, [], LAST);
  assert.equal(none.scales.length, 13);
  assert.equal(none.shown, null);
  assert.match(none.note, /no sampler connected/);
});
