"""The stage strip on the Stage Scheduler, in the real front end: clicks and drags write the text
widgets (and the prompt the server gets), a bad range shows the Python side's message in the strip,
the strip follows the connected sampler's schedule, and a run puts each scale's preview in its cell.

    INFINITYSTYLE_COMFYUI=/path/to/ComfyUI python -m pytest tests/e2e/test_stage_strip.py
"""
from __future__ import annotations

import json

import pytest

from harness import REPO, load_workflow

BASIC = json.loads((REPO / "workflows" / "infinity_style_basic.json").read_text(encoding="utf-8"))
SCHEDULER, SAMPLER = "InfinityStyleStageScheduler", "InfinityStyleSampler"

_NODE = "cls => window.app.rootGraph.nodes.find(n => n.comfyClass === cls)"
_STRIP = f"() => ({_NODE})('{SCHEDULER}').widgets.find(w => w.name === 'stage_strip')"


@pytest.fixture(scope="module", autouse=True)
def returning_user(comfy):
    """A user who has opened ComfyUI before: the first-visit template browser, which opens a while
    after the page over the canvas, stays shut."""
    status, _ = comfy.post("/api/settings/Comfy.TutorialCompleted", True)
    assert status == 200


def _python_message(text: str) -> str:
    from infinity_core.errors import InfinityError
    from infinity_core.style import parse_steps
    with pytest.raises(InfinityError) as caught:
        parse_steps(text)
    return str(caught.value)


def _open(page, budget: str | None = None) -> None:
    """The basic workflow, the scheduler at 100 % zoom near the top left of the canvas."""
    load_workflow(page, BASIC)
    page.evaluate(f"""([budget]) => {{
        const find = {_NODE};
        if (budget) find('{SAMPLER}').widgets.find(w => w.name === 'pixel_budget').value = budget;
        const n = find('{SCHEDULER}'), ds = window.app.canvas.ds;
        ds.scale = 1; ds.offset = [-n.pos[0] + 120, -n.pos[1] + 80];
        window.app.canvas.setDirty(true, true);
    }}""", [budget])
    page.wait_for_function(f"() => ({_STRIP})().lastView")


def _shot(page, path) -> None:
    assert not page.locator(".p-dialog").count(), "a dialog covers the canvas"
    page.screenshot(path=str(path))


def _strip(page) -> dict:
    """What the strip drew last: its cells' labels and roles, and its message."""
    page.wait_for_timeout(200)  # a frame
    return page.evaluate(f"""() => {{ const v = ({_STRIP})().lastView;
        return {{labels: v.layout.cells.map(c => c.label.text), roles: v.cells.map(c => c.role),
                 error: v.error, lines: v.lines}}; }}""")


def _cell_point(page, step: int) -> tuple[float, float]:
    """The screen point at the middle of a cell's box."""
    return tuple(page.evaluate(f"""(step) => {{
        const n = ({_NODE})('{SCHEDULER}'), s = ({_STRIP})(), c = s.lastView.layout.cells[step];
        const [x, y] = window.app.canvas.ds.convertOffsetToCanvas(
            [n.pos[0] + c.box.x + c.box.width / 2, n.pos[1] + (s.y ?? s.lastY) + c.box.y + c.box.height / 2]);
        const r = window.app.canvas.canvas.getBoundingClientRect();
        return [x + r.left, y + r.top]; }}""", step))


def _texts(page) -> list[str]:
    return page.evaluate(f"""() => ['key_steps', 'fine_steps'].map(name =>
        ({_NODE})('{SCHEDULER}').widgets.find(w => w.name === name).value)""")


def _drag(page, first: int, last: int) -> None:
    (x0, y0), (x1, y1) = _cell_point(page, first), _cell_point(page, last)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()


def test_the_strip_draws_the_connected_samplers_scales(page, screenshots):
    _open(page)
    strip = _strip(page)
    assert strip["labels"] == ["0: 1x1", "1: 2x2", "2: 4x4", "3: 6x6", "4: 8x8", "5: 12x12", "6: 16x16",
                               "7: 20x20", "8: 24x24", "9: 32x32", "10: 40x40", "11: 48x48", "12: 64x64"]
    assert strip["roles"][:9] == ["init", "init", "key", "key", "fine", "fine", "fine", "fine", ""]
    assert strip["error"] is None
    _shot(page, screenshots / "strip_basic.png")

    page.evaluate(f"""() => {{ const s = ({_NODE})('{SAMPLER}');
        s.widgets.find(w => w.name === 'aspect').value = '3:4 portrait';
        s.widgets.find(w => w.name === 'pixel_budget').value = '0.06M';
        window.app.canvas.setDirty(true, true); }}""")
    strip = _strip(page)
    assert strip["labels"] == ["0: 1x1", "1: 2x2", "2: 4x3", "3: 8x6", "4: 12x9", "5: 16x12", "6: 20x15"]
    assert strip["error"] == ("Fine step 7 is out of range: this schedule has 7 scales, steps 0-6 "
                              "(0: 1x1, 1: 2x2, 2: 4x3, 3: 8x6, 4: 12x9, 5: 16x12, 6: 20x15).")
    _shot(page, screenshots / "strip_portrait_006M.png")


def test_clicks_and_drags_write_the_text_widgets_and_the_prompt(page, screenshots):
    _open(page)
    x, y = _cell_point(page, 8)
    page.mouse.click(x, y)
    assert _texts(page) == ["2,3,8", "4-7"]
    page.mouse.click(x, y)
    assert _texts(page) == ["2,3", "4-8"]
    _drag(page, 9, 11)
    assert _texts(page) == ["2,3,9-11", "4-8"]
    _drag(page, 7, 4)  # across the two rows, backwards: 7 is fine, so fine -> none over 4..7
    assert _texts(page) == ["2,3,9-11", "8"]
    assert _strip(page)["roles"][:12] == ["init", "init", "key", "key", "", "", "", "", "fine", "key", "key", "key"]
    _shot(page, screenshots / "strip_painted.png")

    saved = page.evaluate(f"() => ({_NODE})('{SCHEDULER}').serialize().widgets_values")
    assert saved == ["2,3,9-11", "8", True, True, True, 0, -1, True, 1.0, 1.0], "the strip itself is not saved"
    prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    inputs = next(node["inputs"] for node in prompt.values() if node["class_type"] == SCHEDULER)
    assert inputs["key_steps"] == "2,3,9-11" and inputs["fine_steps"] == "8"
    assert "stage_strip" not in inputs


def test_a_typed_bad_range_shows_the_python_message_in_the_strip(page, screenshots):
    _open(page)
    point = page.evaluate(f"""() => {{
        const n = ({_NODE})('{SCHEDULER}'), w = n.widgets.find(w => w.name === 'fine_steps');
        const [x, y] = window.app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]);
        const r = window.app.canvas.canvas.getBoundingClientRect();
        return [x + r.left, y + r.top]; }}""")
    page.mouse.dblclick(*point)
    page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'INPUT'")
    page.keyboard.press("Control+A")
    page.keyboard.type("7-4")
    page.keyboard.press("Enter")
    assert _texts(page) == ["2,3", "7-4"]
    strip = _strip(page)
    assert strip["error"] == _python_message("7-4") == "In '7-4', the range 7-4 runs backwards; write 4-7."
    assert " ".join(strip["lines"]) == strip["error"], "the whole message is drawn"
    _shot(page, screenshots / "strip_bad_range.png")


def test_a_run_puts_each_scales_preview_in_its_cell(page, comfy, screenshots):
    _open(page, budget="0.06M")
    page.evaluate(f"""(files) => {{
        const find = {_NODE}, set = (node, name, value) => {{
            const w = node.widgets.find(w => w.name === name); w.value = value; w.callback?.(value); }};
        for (const [name, value] of Object.entries(files)) set(find('InfinityStyleLoader'), name, value);
        set(find('{SCHEDULER}'), 'fine_steps', '4-6'); }}""", comfy.tiny_files)
    assert _strip(page)["error"] is None
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(f"""() => {{ const run = ({_NODE})('{SAMPLER}').infinityLastRun;
        return run && run.images.every(i => i.complete && i.naturalWidth > 0); }}""", timeout=600_000)
    run = page.evaluate(f"""() => {{ const run = ({_NODE})('{SAMPLER}').infinityLastRun;
        return {{grids: run.grids, sizes: run.images.map(i => [i.naturalWidth, i.naturalHeight])}}; }}""")
    assert run["grids"] == [[1, 1], [2, 2], [4, 4], [6, 6], [8, 8], [12, 12], [16, 16]]
    assert len(run["sizes"]) == 7 and run["sizes"][-1][0] > run["sizes"][0][0]
    page.wait_for_timeout(300)
    drawn = page.evaluate(f"() => ({_STRIP})().lastView.previews.map(Boolean)")
    assert drawn == [True] * 7, "every cell draws its scale's preview"
    _shot(page, screenshots / "strip_after_run.png")
    page.evaluate(f"""() => {{ ({_NODE})('{SAMPLER}').widgets.find(w => w.name === 'pixel_budget').value = '0.25M';
        window.app.canvas.setDirty(true, true); }}""")
    page.wait_for_timeout(300)
    assert page.evaluate(f"() => ({_STRIP})().lastView.previews.map(Boolean)") == [False] * 10, (
        "another schedule than the run's shows no previews")
