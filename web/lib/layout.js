// Where the stage strip draws each scale: cells in rows (as many columns as fit), each with a box
// drawn to scale (the last scale fills the box, a scale of half its grid gets a little over half of it)
// and the label `step: width x height`. Units are the node's graph units (CSS pixels at 100 % zoom).

export const FONT_SIZE = 12;     // labels and messages: readable at 100 % zoom
export const LINE_HEIGHT = 15;
export const MARGIN = 8;
export const HEADER = 22;        // legend and schedule summary
export const CELL_MIN_WIDTH = 68; // fits "12: 111x37" (59 px at 12 px); seven a row in a 520 px node in Nodes 2.0
export const BOX_MAX = 64;
export const MIN_FRACTION = 0.3;  // the 1x1 scale still shows its preview and colour

export function stripLayout(scales, width) {
  const n = scales.length;
  const inner = Math.max(width - 2 * MARGIN, CELL_MIN_WIDTH);
  const columns = Math.max(1, Math.min(n, Math.floor(inner / CELL_MIN_WIDTH)));
  const cellWidth = inner / columns;
  const box = Math.min(cellWidth - 8, BOX_MAX);
  const cellHeight = box + LINE_HEIGHT + 8;
  const [H, W] = scales[n - 1];
  const unit = box / Math.max(H, W);  // graph units per token of the last scale
  const toScale = (v, V) => V * unit * (MIN_FRACTION + (1 - MIN_FRACTION) * v / V);
  const cells = scales.map(([h, w], step) => {
    const x = MARGIN + (step % columns) * cellWidth;
    const y = HEADER + Math.floor(step / columns) * cellHeight;
    const bw = toScale(w, W), bh = toScale(h, H);
    return {
      step, grid: [h, w], x, y, width: cellWidth, height: cellHeight,
      box: { x: x + (cellWidth - bw) / 2, y: y + 4 + (box - bh) / 2, width: bw, height: bh },
      label: { x: x + cellWidth / 2, y: y + 4 + box + LINE_HEIGHT - 2, text: `${step}: ${w}x${h}` },  // width x height, as ComfyUI writes sizes
    };
  });
  return { cells, columns, rows: Math.ceil(n / columns), height: HEADER + Math.ceil(n / columns) * cellHeight };
}

// The step of the cell under (x, y) (widget coordinates), or null.
export function cellAt(layout, x, y) {
  const cell = layout.cells.find((c) => x >= c.x && x < c.x + c.width && y >= c.y && y < c.y + c.height);
  return cell ? cell.step : null;
}

// Words wrapped into lines no wider than `width`; `measure(text)` gives a text's width (the canvas's
// measureText in the browser; about 0.6 em per character otherwise).
export function wrapText(text, width, measure = (t) => t.length * FONT_SIZE * 0.6) {
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (line && measure(next) > width) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line) lines.push(line);
  return lines;
}
