import assert from "node:assert/strict";
import { test } from "node:test";

import { CELL_MIN_WIDTH, FONT_SIZE, cellAt, stripLayout, wrapText } from "../../web/lib/layout.js";
import { schedule } from "../../web/lib/schedules.js";
import { TABLE } from "./data.mjs";

const square = schedule(TABLE, 1.0, "1M");
// A label's width at FONT_SIZE in Arial's (and Liberation Sans's) advance widths, in em.
const arialWidth = (text) => [...text].reduce((sum, c) => sum + FONT_SIZE * (/[0-9]/.test(c) ? 0.556 : c === "x" ? 0.5 : 0.278), 0);

test("one labelled cell per scale, in as many columns as fit", () => {
  const wide = stripLayout(square, 1000);
  assert.equal(wide.cells.length, 13);
  assert.equal(wide.rows, 1);
  assert.equal(wide.cells[3].label.text, "3: 6x6");
  assert.equal(wide.cells[12].label.text, "12: 64x64");
  const wideImage = stripLayout(schedule(TABLE, 512 / 1536, "1M"), 1000).cells;  // 1536x512, 3:1 landscape
  assert.equal(wideImage[12].label.text, "12: 111x37", "width x height, as ComfyUI writes sizes");
  assert.equal(stripLayout(schedule(TABLE, 2.0, "1M"), 1000).cells[3].label.text, "3: 3x6", "1:2 portrait");
  const narrow = stripLayout(square, 520);
  assert.equal(narrow.columns, 7);
  assert.equal(narrow.rows, 2);
  assert.ok(narrow.height > wide.height);
  assert.ok(FONT_SIZE >= 11);
  for (const cell of narrow.cells) {
    assert.ok(cell.width >= CELL_MIN_WIDTH);
    assert.ok(arialWidth(cell.label.text) <= cell.width - 4, "the label fits its cell");
  }
  const widest = stripLayout(schedule(TABLE, 3.0, "1M"), 496).cells;  // 1:3 portrait: "12: 37x111"
  assert.equal(widest[12].label.text, "12: 37x111");
  assert.ok(arialWidth(widest[12].label.text) <= widest[12].width - 4);
  assert.equal(stripLayout(square, 496).columns, 7, "a 520 px node in Nodes 2.0 (496 px inside) keeps 7 a row");
});

test("boxes are drawn to scale: growing with the grid, the last one the largest, the aspect kept", () => {
  const cells = stripLayout(square, 1000).cells;
  for (let i = 1; i < cells.length; i++) assert.ok(cells[i].box.width > cells[i - 1].box.width);
  const tall = stripLayout(schedule(TABLE, 2.0, "1M"), 1000).cells.at(-1).box;
  assert.ok(Math.abs(tall.height / tall.width - 2) < 1e-9);
  for (const c of cells) {  // inside its cell, clear of its label
    assert.ok(c.box.x >= c.x && c.box.x + c.box.width <= c.x + c.width);
    assert.ok(c.box.y >= c.y && c.box.y + c.box.height < c.label.y - FONT_SIZE + 2);
  }
});

test("a point finds its cell; gaps and the header find none", () => {
  const layout = stripLayout(square, 520);
  const c9 = layout.cells[9];
  assert.equal(cellAt(layout, c9.x + 1, c9.y + 1), 9);
  assert.equal(cellAt(layout, c9.x + c9.width / 2, c9.y + c9.height - 1), 9);
  assert.equal(cellAt(layout, c9.x + 5, 2), null);
  assert.equal(cellAt(layout, 2, c9.y + 5), null);
});

test("messages wrap to the strip's width", () => {
  const lines = wrapText("Fine step 7 is out of range: this schedule has 7 scales, steps 0-6 (0: 1x1, 1: 2x2).", 200);
  assert.ok(lines.length >= 2);
  for (const line of lines) assert.ok(line.length * FONT_SIZE * 0.6 <= 200);
  assert.deepEqual(wrapText("", 200), []);
});
