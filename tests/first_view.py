"""What a shipped workflow shows when it opens in the front end: each node's box at the size the
front end gives it (the larger of the file's size and the node's own minimum, measured in the
browser and kept in frontend_layout.json), placed on the screen by the workflow's view (extra.ds).

`view_problems` lists what would spoil the first view: a node outside the free part of the
canvas (side bar, tabs, tool bars and minimap cover the rest), two nodes overlapping, or a zoom
so low that the front end stops drawing text.
"""
from __future__ import annotations

import json
from pathlib import Path

LAYOUT = json.loads((Path(__file__).resolve().parent / "frontend_layout.json").read_text(encoding="utf-8"))


def least_height(node: dict, workflow: dict, width: float, layout: dict = LAYOUT) -> float:
    """The least height the front end gives this node at this width."""
    by_width = layout["strip_heights"].get(node["type"])
    if by_width is None:
        return layout["min_sizes"][node["type"]][1]
    if str(round(width)) not in by_width:
        raise ValueError(f"no height of {node['type']} recorded at width {width}: measure it in the browser "
                         f"(tests/e2e) and add it to frontend_layout.json's strip_heights")
    return by_width[str(round(width))] + (layout["strip_note_height"] if _strip_has_a_note(node, workflow, layout)
                                          else 0)


def _strip_has_a_note(node: dict, workflow: dict, layout: dict) -> bool:
    """The strip adds a line under its cells when its shape is a stand-in: no sampler linked, or the
    sampler takes its aspect from the content image (the strip's schedules.js notes)."""
    linked = {link[3] for link in workflow["links"] if link[1] == node["id"]}
    samplers = [n for n in workflow["nodes"] if n["id"] in linked and n["type"] == "InfinityStyleSampler"]
    if not samplers:
        return True
    if layout["strip_budget"] not in samplers[0]["widgets_values"]:
        raise ValueError(f"strip heights are recorded for a {layout['strip_budget']} sampler only")
    return "from content image" in samplers[0]["widgets_values"]


def graph_boxes(workflow: dict, layout: dict = LAYOUT) -> dict[int, tuple[float, float, float, float]]:
    """node id -> (left, top, right, bottom) in graph units, title bar included."""
    boxes = {}
    for node in workflow["nodes"]:
        w = max(node["size"][0], layout["min_sizes"][node["type"]][0])
        h = max(node["size"][1], least_height(node, workflow, w, layout))
        x, y = node["pos"]
        boxes[node["id"]] = (x, y - layout["title_height"], x + w, y + h)
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
    ds = workflow["extra"]["ds"]
    problems = view_problems({n: to_screen(b, ds) for n, b in graph_boxes(workflow, layout).items()}, ds["scale"],
                             layout)
    left, top, right, bottom = layout["view"]
    for title, box in group_boxes(workflow).items():
        x0, y0, x1, y1 = to_screen(box, ds)
        if x0 < left or y0 < top or x1 > right or y1 > bottom:
            problems.append(f"group {title!r} is not inside the free canvas")
    return problems
