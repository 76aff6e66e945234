import assert from "node:assert/strict";
import { test } from "node:test";

import { lastStep, nearestTemplate, samplerSchedule, schedule } from "../../web/lib/schedules.js";
import { SIZE_CASES, TABLE } from "./data.mjs";

const sampler = (aspect, pixel_budget = "1M", custom_size = "1024x1024") => ({ aspect, pixel_budget, custom_size });

test("no sampler connected: the 1M square schedule", () => {
  const { scales } = samplerSchedule(TABLE, null);
  assert.equal(scales.length, 13);
  assert.deepEqual(scales[3], [6, 6]);
  assert.deepEqual(scales[12], [64, 64]);
  assert.equal(lastStep(TABLE), 12);
});

test("the connected sampler's aspect and pixel budget pick the schedule", () => {
  const landscape = Object.keys(TABLE.aspects).find((label) => TABLE.aspects[label] === 0.75);
  const { scales } = samplerSchedule(TABLE, sampler(landscape, "0.25M"));
  assert.equal(scales.length, 10);
  assert.deepEqual(scales[3], [6, 8]);  // 4:3 landscape: h < w
  assert.deepEqual(samplerSchedule(TABLE, sampler(TABLE.custom_aspect, "1M", "512 x 1024")).scales.at(-1), [90, 45]);
  assert.deepEqual(samplerSchedule(TABLE, sampler(TABLE.custom_aspect, "0.06M", "1000x1010")).scales.at(-1), [16, 16]);
});

test("a content image's shape is known after a run; before, the budget's square stands in with a note", () => {
  const before = samplerSchedule(TABLE, sampler(TABLE.content_aspect, "0.06M"));
  assert.equal(before.scales.length, 7);
  assert.match(before.note, /content image/);
  const ran = schedule(TABLE, 2.0, "0.06M");
  assert.deepEqual(samplerSchedule(TABLE, sampler(TABLE.content_aspect, "0.06M"), ran).scales, ran);
});

test("the nearest template wins, the first on a tie", () => {
  assert.equal(nearestTemplate(TABLE, 1.1).h_div_w, 1.0);
  assert.equal(nearestTemplate(TABLE, 1.125).h_div_w, 1.0);
  assert.equal(nearestTemplate(TABLE, 5).h_div_w, 3.0);
});

test("a custom size reads as width x height, as the sampler reads it; one it cannot read is its run's error", () => {
  assert.ok(SIZE_CASES.length >= 6);
  for (const c of SIZE_CASES) {
    const got = samplerSchedule(TABLE, sampler(TABLE.custom_aspect, "1M", c.text));
    if ("error" in c) {
      assert.equal(got.error, c.error, JSON.stringify(c.text));
      assert.equal(got.note, null, "the error replaces the old grey note");
      assert.equal(got.scales.length, 13, "the budget's square stands in");
    } else {
      assert.deepEqual(got.scales.at(-1), c.final_grid_hw, JSON.stringify(c.text));
      assert.equal(got.error, null);
    }
  }
});
