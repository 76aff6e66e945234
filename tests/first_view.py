"""What a shipped workflow shows when it opens in the front end, on each front end tested and in
each node mode: each node's box at the size the front end gives it (the larger of the file's size
and the node's own minimum, measured in the browser and kept in frontend_layout.json), placed on
the screen by the workflow's view (extra.ds).

Nodes 2.0 on front end 1.35.9 first spreads a classic workflow (positions and sizes times
`layout_scale`, about its top-left corner) and keeps the saved zoom, so one layout serves every
combination only if it leaves room for the spread one too.

`view_problems` lists what would spoil the first view: a node outside the free part of the
canvas (side bar, tabs, tool bars and minimap cover the rest), two nodes overlapping, or a zoom
so low that the front end stops drawing text.
"""
from __future__ import annotations

import json
from pathlib import Path

LAYOUT = json.loads((Path(__file__).resolve().parent / "frontend_layout.json").read_text(encoding="utf-8"))
# (front end, node mode) pairs the layout records, e.g. ("1.35.9", "classic").
COMBINATIONS = [(fe, mode) for fe, modes in LAYOUT["front_ends"].items() for mode in modes]
SPREAD_MARGIN = 10  # the spread's corner lies this far above and left of the nodes' boxes


def least_height(node: dict, workflow: dict, file_width: float, sizes: dict) -> float:
    """The least height (title included) the front end gives this node at this width in the file."""
    by_width = sizes["strip_heights"].get(node["type"])
    if by_width is None:
        # Where the node shows its picture at its width (LoadImage in Nodes 2.0 on 1.35.9), a square one
        # (the tallest the shipped pictures are) takes the width plus what the widgets take.
        below = sizes.get("picture_width_plus", {}).get(node["type"])
        least = sizes["min_sizes"][node["type"]][1]
        return least if below is None else max(least, file_width * sizes["layout_scale"] + below)
    if str(round(file_width)) not in by_width:
        raise ValueError(f"no height of {node['type']} recorded at width {file_width}: measure it in the browser "
                         f"(tests/e2e) and add it to frontend_layout.json's strip_heights")
    return by_width[str(round(file_width))] + (sizes["strip_note_height"] if _strip_has_a_note(node, workflow)
                                               else 0)


def _strip_has_a_note(node: dict, workflow: dict) -> bool:
    """The strip adds a line under its cells when its shape is a stand-in: no sampler linked, or the
    sampler takes its aspect from the content image (the strip's schedules.js notes)."""
    linked = {link[3] for link in workflow["links"] if link[1] == node["id"]}
    samplers = [n for n in workflow["nodes"] if n["id"] in linked and n["type"] == "InfinityStyleSampler"]
    if not samplers:
        return True
    if LAYOUT["strip_budget"] not in samplers[0]["widgets_values"]:
        raise ValueError(f"strip heights are recorded for a {LAYOUT['strip_budget']} sampler only")
    return "from content image" in samplers[0]["widgets_values"]


def graph_boxes(workflow: dict, front_end: str = "1.35.9", mode: str = "classic",
                layout: dict = LAYOUT) -> dict[int, tuple[float, float, float, float]]:
    """node id -> (left, top, right, bottom) in graph units as that front end shows it in that
    mode, title bar included."""
    sizes, title = layout["front_ends"][front_end][mode], layout["title_height"]
    spread = sizes["layout_scale"]
    left = min(n["pos"][0] for n in workflow["nodes"]) - SPREAD_MARGIN
    top = min(n["pos"][1] - title for n in workflow["nodes"]) - SPREAD_MARGIN
    boxes = {}
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        x, y = left + (x - left) * spread, top + (y - top) * spread - title
        width = max(w * spread, sizes["min_sizes"][node["type"]][0])
        height = max(h * spread + title, least_height(node, workflow, w, sizes))
        boxes[node["id"]] = (x, y, x + width, y + height)
    return boxes


def to_screen(box, ds: dict) -> tuple[float, float, float, float]:
    (ox, oy), s = ds["offset"], ds["scale"]
    left, top, right, bottom = box
    return ((left + ox) * s, (top + oy) * s, (right + ox) * s, (bottom + oy) * s)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def view_problems(screen_boxes: dict, scale: float, layout: dict = LAYOUT) -> list[str]:
    """Problems of a first view, given node id -> screen box (from the JSON or measured)."""
    problems = []
    if scale < layout["low_quality_below"]:
        problems.append(f"zoom {scale:.2f} is below {layout['low_quality_below']}: the front end draws no text")
    left, top, right, bottom = layout["view"]
    for node, box in screen_boxes.items():
        if box[0] < left or box[1] < top or box[2] > right or box[3] > bottom:
            problems.append(f"node {node} at {[round(v) for v in box]} is not inside the free canvas "
                            f"{layout['view']}")
        if _overlap(box, layout["minimap"]):
            problems.append(f"node {node} is under the minimap")
    ids = sorted(screen_boxes)
    problems += [f"nodes {a} and {b} overlap" for i, a in enumerate(ids) for b in ids[i + 1:]
                 if _overlap(screen_boxes[a], screen_boxes[b])]
    return problems


def group_boxes(workflow: dict) -> dict[str, tuple[float, float, float, float]]:
    """group title -> (left, top, right, bottom) in graph units."""
    return {g["title"]: (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                         g["bounding"][1] + g["bounding"][3]) for g in workflow.get("groups", [])}


def workflow_problems(workflow: dict, layout: dict = LAYOUT) -> list[str]:
    """First-view problems on every front end in every node mode, each named by where it is seen."""
    ds = workflow["extra"]["ds"]
    problems = []
    for front_end, mode in COMBINATIONS:
        seen = view_problems({n: to_screen(b, ds) for n, b in graph_boxes(workflow, front_end, mode, layout).items()},
                             ds["scale"], layout)
        problems += [f"{front_end} {mode}: {p}" for p in seen]
    left, top, right, bottom = layout["view"]
    for title, box in group_boxes(workflow).items():
        x0, y0, x1, y1 = to_screen(box, ds)
        if x0 < left or y0 < top or x1 > right or y1 > bottom:
            problems.append(f"group {title!r} is not inside the free canvas")
    return problems
