import assert from "node:assert/strict";
import { test } from "node:test";

import { lastOutputs } from "../../web/lib/history.js";

// A /history answer as ComfyUI 0.8.0 gives it: prompt = [number, id, api prompt, extra_data, outputs to run].
const entry = (number, workflowId, outputs) =>
  ({ prompt: [number, `p${number}`, {}, { extra_pnginfo: { workflow: { id: workflowId } } }, []], outputs });
const run = (name) => ({ scale_grids: [[1, 1]], scale_previews: [{ filename: name, subfolder: "", type: "temp" }] });

test("each node's newest run of this workflow, whatever order the answer lists them in", () => {
  const history = {
    b: entry(5, "wf-1", { 7: run("second.png"), 9: { images: [] } }),
    a: entry(2, "wf-1", { 7: run("first.png"), 8: run("other.png") }),
    c: entry(6, "wf-2", { 7: run("another-workflow.png") }),
    d: entry(7, "wf-1", { 9: { images: [] } }),  // a later run where the sampler was cached: no output
  };
  const found = lastOutputs(history, "wf-1", "scale_previews");
  assert.deepEqual([...found.keys()].sort(), ["7", "8"]);
  assert.equal(found.get("7").scale_previews[0].filename, "second.png");
  assert.equal(found.get("8").scale_previews[0].filename, "other.png");
  assert.deepEqual([...lastOutputs(history, "wf-3", "scale_previews").keys()], []);
});

test("entries without a recorded workflow are skipped", () => {
  const bare = { x: { prompt: [1, "x", {}, {}, []], outputs: { 7: run("a.png") } } };
  assert.equal(lastOutputs(bare, "wf-1", "scale_previews").size, 0);
  assert.equal(lastOutputs(null, "wf-1", "scale_previews").size, 0);
});
