// The samplers' last runs, read back from ComfyUI's /history after a page reload or a workflow
// switch: the server keeps each run's outputs (and the previews in its temp folder) until it
// restarts, and each entry records the workflow it was queued from.

// `history`: the /history answer {prompt_id: {prompt: [number, id, prompt, extra_data, ...],
// outputs: {node_id: output}}}. Returns node id (a string) -> the newest output of that node
// holding `key`, among the runs queued from the workflow `workflowId`.
export function lastOutputs(history, workflowId, key) {
  const entries = Object.values(history ?? {})
    .filter((entry) => entry?.prompt?.[3]?.extra_pnginfo?.workflow?.id === workflowId)
    .sort((a, b) => a.prompt[0] - b.prompt[0]);
  const found = new Map();
  for (const entry of entries) {
    for (const [node, output] of Object.entries(entry.outputs ?? {})) {
      if (output?.[key]) found.set(node, output);
    }
  }
  return found;
}
