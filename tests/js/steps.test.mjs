import assert from "node:assert/strict";
import { test } from "node:test";

import { schedule, lastStep } from "../../web/lib/schedules.js";
import { checkStages, compactSteps, parseSteps, roles } from "../../web/lib/steps.js";
import { CASES, TABLE } from "./data.mjs";

const LAST = lastStep(TABLE);

test("every step-text case of the shared table parses as in Python", () => {
  assert.ok(CASES.parse.length >= 20);
  for (const c of CASES.parse) {
    if ("error" in c) assert.throws(() => parseSteps(c.text, LAST), { message: c.error }, JSON.stringify(c.text));
    else assert.deepEqual(parseSteps(c.text, LAST), c.steps, JSON.stringify(c.text));
  }
});

test("every stage case of the shared table gives Python's message or roles", () => {
  assert.ok(CASES.stages.length >= 15);
  for (const c of CASES.stages) {
    const settings = { keyText: c.key, fineText: c.fine, featureInit: c.feature_init, keySharing: c.key_sharing,
      querySharing: c.query_sharing };
    const got = checkStages(settings, schedule(TABLE, c.h_div_w, c.budget), LAST);
    assert.equal(got.error, c.error ?? null, JSON.stringify(c));
    assert.deepEqual(got.roles, c.roles ?? null, JSON.stringify(c));
  }
});

test("a huge range is refused before it expands", () => {
  const start = process.memoryUsage().heapUsed;
  assert.throws(() => parseSteps("0-50000000", LAST), /past the last scale/);
  assert.ok(process.memoryUsage().heapUsed - start < 20e6);
});

test("written step texts read back as the same steps, runs of three or more as ranges", () => {
  assert.equal(compactSteps([2, 3]), "2,3");
  assert.equal(compactSteps([7, 4, 5, 6]), "4-7");
  assert.equal(compactSteps([0, 1, 2, 5, 7, 8, 9, 10]), "0-2,5,7-10");
  assert.equal(compactSteps([]), "");
  for (const steps of [[1], [0, 2, 4], [3, 4, 5, 6, 11, 12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]) {
    assert.deepEqual(parseSteps(compactSteps(steps), LAST), steps);
  }
});

test("a run's roles have Feature Initialization only before the first key step", () => {
  const on = { featureInit: true };
  assert.deepEqual(roles(on, [], [4, 5], 7), ["", "", "", "", "fine", "fine", ""]);
  assert.deepEqual(roles(on, [0, 1], [2], 4), ["key", "key", "fine", ""]);
  assert.deepEqual(roles(on, [2, 3], [4], 5), ["init", "init", "key", "key", "fine"]);
  assert.deepEqual(roles({ featureInit: false }, [2, 3], [4], 5), ["", "", "key", "key", "fine"]);
});
