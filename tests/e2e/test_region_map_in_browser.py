"""The region map as the regions workflow shows it after a run, on both front ends in both node
modes: in its Preview Image node at the node's default size and 100 % zoom, the map's text reads
at UI sizes (its pixels are tested in tests/test_region_map.py)."""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from harness import REPO, load_workflow

REGIONS = json.loads((REPO / "workflows" / "infinity_style_regions.json").read_text(encoding="utf-8"))
RUN_TIMEOUT_MS = 20 * 60_000
LEGEND_PX, NUMBER_PX = 11, 16  # the least font sizes on the screen: UI text, and the regions' numbers

_PREVIEW = "() => window.app.rootGraph.nodes.find(n => n.type === 'PreviewImage')"


def shown_width(page) -> float:
    """The map's width on the screen. Nodes 2.0: its <img>, as object-fit: contain draws it.
    Classic: LiteGraph paints it on the canvas; the map's own dark background, inside the node, is
    where it lies."""
    width = page.evaluate(f"""() => {{
        const n = ({_PREVIEW})(), element = document.querySelector(`[data-node-id="${{n.id}}"]`);
        const image = element && [...element.querySelectorAll('img')].find(i => i.src.includes('/view'));
        if (!image) return null;
        const r = image.getBoundingClientRect();
        return Math.min(r.width / image.naturalWidth, r.height / image.naturalHeight) * image.naturalWidth; }}""")
    if width is not None:
        return width
    box = page.evaluate(f"""() => {{
        const n = ({_PREVIEW})(), c = window.app.canvas.canvas.getBoundingClientRect(), s = window.app.canvas.ds.scale;
        const [x, y] = window.app.canvas.ds.convertOffsetToCanvas(n.pos);
        return [c.left + x, c.top + y, c.left + x + n.size[0] * s, c.top + y + n.size[1] * s]; }}""")
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)
    x0, y0, x1, y1 = (round(v) for v in box)
    from infinity_core.style.region_map import BACKGROUND
    xs = np.nonzero((shot[y0:y1, x0:x1] == BACKGROUND).all(axis=-1).any(axis=0))[0]
    return float(xs.max() - xs.min() + 1)


def test_the_region_maps_text_reads_in_its_node_at_the_default_size(page, comfy, node_mode, screenshots):
    from infinity_core.style.region_map import NUMBER, TEXT
    load_workflow(page, REGIONS)
    page.evaluate("""() => { const run = window.__run = {done: null};
        window.app.api.addEventListener("execution_success", () => run.done = "success");
        window.app.api.addEventListener("execution_error", e => run.done = "error: " + e.detail.exception_message); }""")
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function("() => window.__run.done !== null", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("() => window.__run.done") == "success"
    natural = page.evaluate(f"""async () => {{
        const image = new Image(), entry = window.app.nodeOutputs[({_PREVIEW})().id].images[0];
        image.src = window.app.api.apiURL('/view?' + new URLSearchParams(entry)); await image.decode();
        return image.naturalWidth; }}""")
    page.evaluate(f"""() => {{ const n = ({_PREVIEW})(), ds = window.app.canvas.ds;
        ds.scale = 1; ds.offset = [-n.pos[0] + 100, -n.pos[1] + 100]; window.app.canvas.setDirty(true, true); }}""")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshots / f"region_map_{comfy.front_end}_{node_mode}.png"))
    scale = shown_width(page) / natural
    assert TEXT * scale >= LEGEND_PX and NUMBER * scale >= NUMBER_PX, f"the map is shown at {scale:.2f} of its size"
