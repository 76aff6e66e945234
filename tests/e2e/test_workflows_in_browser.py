"""The shipped workflows in a real ComfyUI front end, on both front ends in both node modes: they
load whole, open from the template browser, show all of themselves at first sight, run at their
default sizes with no node's picture over another node, and the Stage Probe runs to the end."""
from __future__ import annotations

import json

import pytest

from first_view import LAYOUT, graph_boxes, to_screen, view_problems
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from harness import DIALOGS, NODE_MODES, PACK_FOLDER, WORKFLOWS, close_dialogs, load_workflow, node_boxes, widget_values

# Minutes a shipped workflow may take on the tiny models (2 cores shared with the browser).
RUN_TIMEOUT_MS = 10 * 60_000

PROBE = next(p for p in WORKFLOWS if p.stem == "infinity_stage_probe")
# Its 21 nodes at the sizes Nodes 2.0 gives them do not fit a 1600x900 window at a zoom where classic
# nodes still show text (issue 21): it fails there until it is laid out anew (fewer or smaller nodes).
ABLATION = "infinity_style_ablation"
NOT_YET_LAID_OUT = pytest.mark.xfail(strict=True, reason="issue 21: the ablation is not yet laid out for Nodes 2.0")


def read(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def open_dialogs(page) -> list[str]:
    return page.locator(".p-dialog").all_inner_texts()


def pack_errors(page) -> list[str]:
    """Console errors and failed requests that involve the pack (the front end's own 404s for
    optional user files such as user.css are not ours)."""
    return [e for e in page.console_errors + page.failed_requests if PACK_FOLDER in e or "workflow_templates" in e]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_whole_with_its_widget_values_and_shows_all_of_itself(page, comfy, node_mode, path,
                                                                            screenshots, request):
    if path.stem == ABLATION and node_mode == "nodes2":
        request.applymarker(NOT_YET_LAID_OUT)
    workflow = read(path)
    load_workflow(page, workflow)
    page.wait_for_timeout(1500)  # LoadImage pictures
    page.screenshot(path=str(screenshots / f"first_view_{comfy.front_end}_{node_mode}_{path.stem}.png"))
    assert open_dialogs(page) == [], "no missing-node (or any other) dialog"
    registered = page.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
    assert {n["type"] for n in workflow["nodes"]} <= set(registered)
    values = widget_values(page)
    for node in workflow["nodes"]:
        assert values[str(node["id"])] == node["widgets_values"], f"node {node['id']} ({node['type']})"

    measured = screen_boxes(page)
    scale = page.evaluate("() => window.app.canvas.ds.scale")
    assert scale == workflow["extra"]["ds"]["scale"]
    assert view_problems(measured, scale) == []
    predicted = {n: to_screen(b, workflow["extra"]["ds"])
                 for n, b in graph_boxes(workflow, comfy.front_end, node_mode).items()}
    for node, box in measured.items():  # the JSON check in tests/test_workflows.py sees no less than the browser
        inside = [box[0] >= predicted[node][0] - 1, box[1] >= predicted[node][1] - 1,
                  box[2] <= predicted[node][2] + 1, box[3] <= predicted[node][3] + 1]
        assert all(inside), f"node {node} at {box} is not inside the predicted {predicted[node]}"
        assert box[:2] == pytest.approx(predicted[node][:2], abs=1), f"node {node} is placed as predicted"
    assert pack_errors(page) == []


def screen_boxes(page) -> dict[int, tuple[float, float, float, float]]:
    """node id -> (left, top, right, bottom) on the screen, as shown now."""
    return {n["id"]: (n["screen"][0], n["screen"][1], n["screen"][0] + n["screen"][2], n["screen"][1] + n["screen"][3])
            for n in node_boxes(page)}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_after_a_run_at_the_default_size_no_picture_covers_another_node(page, comfy, node_mode, path, screenshots,
                                                                        request):
    if path.stem == ABLATION and node_mode == "nodes2":
        request.applymarker(NOT_YET_LAID_OUT)
    # The workflow as shipped (the tiny models lie under the names its Loader asks for). The first
    # mode a server runs it in makes it (live previews on the sampling nodes); the other gets
    # ComfyUI's cached outputs (the saved and previewed pictures).
    load_workflow(page, read(path))
    if path == PROBE:
        # 14 images at 1M take minutes on the CPU; at 0.06M its grid is a little taller for its width
        # (the labels keep their height), so its picture grows the Save node no less.
        page.evaluate("""() => { const probe = window.app.rootGraph.nodes.find(n => n.type === "InfinityStyleStageProbe");
                                 probe.widgets.find(w => w.name === "pixel_budget").value = "0.06M"; }""")
    page.evaluate("""() => { const api = window.app.api, run = window.__run = {done: null};
        api.addEventListener("execution_success", () => run.done = "success");
        api.addEventListener("execution_error", e => run.done = "error: " + e.detail.exception_message); }""")
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function("() => window.__run.done !== null", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("() => window.__run.done") == "success"
    page.wait_for_function("""() => [...document.images].every(i => i.complete)""", timeout=60_000)
    page.wait_for_timeout(1500)  # the nodes take their pictures' sizes
    page.evaluate("() => window.app.canvas.setDirty(true, true)")
    page.screenshot(path=str(screenshots / f"after_run_{comfy.front_end}_{node_mode}_{path.stem}.png"))
    boxes = screen_boxes(page)
    ids = sorted(boxes)
    assert [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]
            if boxes[a][0] < boxes[b][2] and boxes[b][0] < boxes[a][2]
            and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]] == [], "nodes overlap after the run"


def test_the_recorded_minimum_sizes_are_the_front_ends(page, comfy, node_mode):
    # A workflow whose nodes ask for 10x10: the front end gives each the least size it allows.
    recorded = LAYOUT["front_ends"][comfy.front_end][node_mode]
    types = sorted(recorded["min_sizes"])
    workflow = {"last_node_id": len(types), "last_link_id": 0, "links": [], "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.5, "offset": [0, 0]}}, "version": 0.4,
                "nodes": [{"id": i + 1, "type": t, "pos": [(i % 5) * 500, (i // 5) * 600], "size": [10, 10],
                           "flags": {}, "order": i, "mode": 0, "properties": {},
                           **({"widgets_values": ["infinitystyle_style_waves.png", "image"]} if t == "LoadImage" else {})}
                          for i, t in enumerate(types)]}
    load_workflow(page, workflow)
    page.wait_for_timeout(2000)  # the LoadImage picture
    sizes = {n["type"]: n["graph"][2:] for n in node_boxes(page)}
    for node_type, (width, height) in recorded["min_sizes"].items():
        assert sizes[node_type] == pytest.approx([width, height], abs=2), node_type


def test_the_recorded_stage_strip_heights_are_the_front_ends(page, comfy, node_mode):
    # A scheduler and its sampler from the ablation (fixed aspect) and from the restyle (aspect from
    # the content image: the strip adds a note), once per recorded width, the scheduler asking for
    # 10 px of height: the front end gives it the height the JSON check predicts.
    widths = sorted(LAYOUT["front_ends"][comfy.front_end][node_mode]["strip_heights"]["InfinityStyleStageScheduler"],
                    key=int)
    nodes, links = [], []
    for stem in ("infinity_style_ablation", "infinity_style_restyle"):
        source = read(next(p for p in WORKFLOWS if p.stem == stem))
        link = next(l for l in source["links"] if l[5] == "INFINITY_STAGES")
        pair = [next(n for n in source["nodes"] if n["id"] == i) for i in (link[1], link[3])]
        for width in widths:
            k = len(links)
            scheduler, sampler = (json.loads(json.dumps(n)) for n in pair)
            scheduler.update(id=2 * k + 1, pos=[k * 1000, 0], size=[int(width), 10])
            sampler.update(id=2 * k + 2, pos=[k * 1000 + int(width) + 40, 0])
            scheduler["outputs"][link[2]]["links"] = [k + 1]
            for slot in sampler["inputs"]:
                slot["link"] = k + 1 if slot["link"] == link[0] else None
            nodes += [scheduler, sampler]
            links.append([k + 1, 2 * k + 1, link[2], 2 * k + 2, link[4], link[5]])
    workflow = {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
                "groups": [], "config": {}, "extra": {"ds": {"scale": 0.3, "offset": [0, 0]}}, "version": 0.4}
    load_workflow(page, workflow)
    page.wait_for_timeout(1000)
    predicted = graph_boxes(workflow, comfy.front_end, node_mode)
    for node in node_boxes(page):
        if node["type"] == "InfinityStyleStageScheduler":
            # The sizes (where the spread of Nodes 2.0 on 1.35.9 puts a node is the first-view test's).
            left, top, right, bottom = predicted[node["id"]]
            assert node["graph"][2:] == pytest.approx([right - left, bottom - top], abs=1), node["id"]


def open_template_browser(page) -> None:
    """Open the template browser as its menu entry does, until its side list shows the pack's entry.
    Its command toggles the dialog, and one still closing from the last choice can swallow it."""
    entry = page.locator(DIALOGS).get_by_text(PACK_FOLDER, exact=True).first
    for _ in range(3):
        close_dialogs(page)
        page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        try:
            entry.wait_for(timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the template browser did not open with the pack's entry")


def test_every_workflow_opens_from_the_template_browser(page, comfy, screenshots):
    listed = comfy.get("/api/workflow_templates")
    assert sorted(listed[PACK_FOLDER]) == sorted(p.stem for p in WORKFLOWS)
    for number, path in enumerate(WORKFLOWS):
        open_template_browser(page)
        # The pack's entry in the browser's side list, found inside the dialog: Nodes 2.0 also shows
        # the pack's name on each node's badge, behind it.
        page.locator(DIALOGS).get_by_text(PACK_FOLDER, exact=True).first.click()
        card = page.get_by_test_id(f"template-workflow-{path.stem}")
        card.wait_for(timeout=30_000)
        thumbnail = card.locator("img").first
        thumbnail.wait_for(timeout=30_000)
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle(),
                               timeout=30_000)
        if number == 0:
            page.screenshot(path=str(screenshots / "template_browser.png"))
        card.click()
        expected = sorted((n["id"], n["type"]) for n in read(path)["nodes"])
        page.wait_for_function("([n, dialogs]) => window.app.rootGraph.nodes.length === n && !document.querySelector(dialogs)",
                               arg=[len(expected), DIALOGS], timeout=30_000)
        loaded = page.evaluate("() => window.app.rootGraph.nodes.map(n => [Number(n.id), n.type])")
        assert sorted(map(tuple, loaded)) == expected, path.stem
    assert pack_errors(page) == []


def test_a_missing_model_file_is_reported_once_on_its_input(comfy):
    files = {**comfy.tiny_files, "transformer": "infinity_2b_reg_missing.pth"}
    prompt = {
        "1": {"class_type": "InfinityStyleLoader", "inputs": {**files, "precision": "auto"}},
        "2": {"class_type": "InfinityStyleStageProbe", "inputs": {
            "model": ["1", 0], "vae": ["1", 1], "text_encoder": ["1", 2], "base_prompt": "a cat",
            "alternative_prompt": "a dog", "negative": "", "seed": 0, "cfg": 3.0, "tau": 0.5, "top_k": 900,
            "top_p": 0.97, "aspect": "1:1 square", "custom_size": "1024x1024", "pixel_budget": "0.06M"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 1]}},
    }
    status, answer = comfy.post("/prompt", {"prompt": prompt})
    assert status == 400
    errors = answer["node_errors"]["1"]["errors"]
    assert [e["extra_info"]["input_name"] for e in errors] == ["transformer"]
    assert "infinity_2b_reg_missing.pth" in errors[0]["details"]


def test_the_stage_probe_workflow_runs_to_completion(page, comfy, node_mode, screenshots):
    workflow = read(PROBE)
    load_workflow(page, workflow)
    # A seed of each mode's own, so the run is made in each (not answered from ComfyUI's cache).
    seed = 42 + list(NODE_MODES).index(node_mode)
    events = page.evaluate("""([files, seed]) => {
        const graph = window.app.rootGraph, events = {progress: [], previews: 0, done: null};
        const set = (node, name, value) => { const w = node.widgets.find(w => w.name === name); w.value = value; w.callback?.(value); };
        const loader = graph.nodes.find(n => n.type === "InfinityStyleLoader");
        for (const [name, value] of Object.entries(files)) set(loader, name, value);
        const probe = graph.nodes.find(n => n.type === "InfinityStyleStageProbe");
        set(probe, "pixel_budget", "0.06M");
        set(probe, "seed", seed);
        const api = window.app.api;
        api.addEventListener("progress", e => events.progress.push([e.detail.value, e.detail.max]));
        api.addEventListener("b_preview", () => events.previews++);
        api.addEventListener("execution_success", e => events.done = "success");
        api.addEventListener("execution_error", e => events.done = "error: " + e.detail.exception_message);
        window.__probeEvents = events;
        return Object.keys(files);
    }""", [comfy.tiny_files, seed])
    assert set(events) == {"transformer", "vae", "text_encoder"}
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function("() => window.__probeEvents.done !== null", timeout=600_000)
    events = page.evaluate("() => window.__probeEvents")
    assert events["done"] == "success"
    # The grid and the plot reach their nodes (Nodes 2.0 draws them as page images, not n.imgs).
    page.wait_for_function("""() => window.app.rootGraph.nodes.filter(n => ["SaveImage", "PreviewImage"].includes(n.type))
                                   .every(n => window.app.nodeOutputs[n.id]?.images?.length)
                              && [...document.images].every(i => i.complete)""", timeout=60_000)
    page.evaluate("() => window.app.canvas.setDirty(true, true)")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "stage_probe_after_run.png"))
    runs, scales = 8, 7  # the base run and one per step of the 0.06M schedule
    sampling = [p for p in events["progress"] if p[1] == runs * scales]
    assert [value for value, _ in sampling] == list(range(1, runs * scales + 1))
    assert events["previews"] >= runs * scales
    shown = page.evaluate("""() => window.app.rootGraph.nodes.filter(n => ["SaveImage", "PreviewImage"].includes(n.type))
                                    .map(n => [n.type, (window.app.nodeOutputs[n.id]?.images ?? []).length])""")
    assert sorted(map(tuple, shown)) == [("PreviewImage", 1), ("SaveImage", 1)]
