"""The stage strip on the Stage Scheduler in the real front end, on both front ends in both node
modes: it draws the samplers' scales (width x height) beside the node's widgets, never over them;
clicks and drags write the text widgets (and the prompt); typing redraws it with the run's own
message; an unreadable custom size and a step one of two samplers lacks are red errors; a run puts
each scale's preview in its cell and a page reload keeps them; below the low-quality zoom it shows
as core widgets do; and the pack logs no deprecation warning.

    INFINITYSTYLE_COMFY_ENV=/work/comfy-test /work/comfy-test/venv/bin/python -m pytest tests/e2e/test_stage_strip.py
"""
from __future__ import annotations

import json

import pytest

from harness import REPO, close_dialogs, load_workflow

BASIC = json.loads((REPO / "workflows" / "infinity_style_basic.json").read_text(encoding="utf-8"))
SCHEDULER, SAMPLER = "InfinityStyleStageScheduler", "InfinityStyleSampler"
RUN_TIMEOUT_MS = 10 * 60_000

_NODE = "cls => window.app.rootGraph.nodes.find(n => n.comfyClass === cls)"
_STRIP = f"() => ({_NODE})('{SCHEDULER}').widgets.find(w => w.name === 'stage_strip').element"

# The other widgets of the scheduler and the strip's texts on the screen, and what covers what:
# a widget's box (classic: where LiteGraph draws it; Nodes 2.0: its row) that the strip overlaps,
# and a text of the strip whose middle shows another element (a badge, a widget).
_COVERED = f"""() => {{
    const node = ({_NODE})('{SCHEDULER}'), strip = ({_STRIP})(), canvas = window.app.canvas;
    const r = strip.getBoundingClientRect(), problems = [];
    const vue = document.querySelector(`[data-node-id="${{node.id}}"]`);
    for (const w of node.widgets.filter(w => w.name !== 'stage_strip')) {{
        let box;
        if (vue) {{
            const label = [...vue.querySelectorAll('*')].find(e => e.children.length === 0 && e.textContent.trim() === w.name);
            box = label.closest('[data-testid="node-widget"], .lg-node-widget').getBoundingClientRect();  // 1.58.1, 1.35.9
        }} else {{
            const c = canvas.canvas.getBoundingClientRect(), s = canvas.ds.scale;
            const [x, y] = canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] + w.y]);
            box = {{left: c.left + x, top: c.top + y, right: c.left + x + node.size[0] * s,
                    bottom: c.top + y + (w.computedHeight ?? window.LiteGraph.NODE_WIDGET_HEIGHT) * s}};
        }}
        if (box.left < r.right && r.left < box.right && box.top < r.bottom - 1 && r.top + 1 < box.bottom)
            problems.push(`the strip covers ${{w.name}}`);
    }}
    for (const text of strip.querySelectorAll('.legend span, .summary, .message, .label')) {{
        const t = text.getBoundingClientRect();
        const top = document.elementFromPoint(t.left + t.width / 2, t.top + t.height / 2);
        if (!strip.contains(top)) problems.push(`'${{text.textContent}}' is under ${{top?.className || top?.tagName}}`);
    }}
    return problems;
}}"""


def _python_message(key: str, fine: str, h_div_w: float, budget: str) -> str:
    """The message the run gives for these steps on that sampler's schedule (the Python side)."""
    from infinity_core.errors import InfinityError
    from infinity_core.schedules import schedule
    from infinity_core.style import read_stages
    with pytest.raises(InfinityError) as caught:
        read_stages(key, fine).validate(schedule(h_div_w, budget), depth=32)
    return str(caught.value)


def _shot(page, screenshots, name, comfy, node_mode) -> None:
    assert not page.locator(".p-dialog").count(), "a dialog covers the canvas"
    page.screenshot(path=str(screenshots / f"strip_{name}_{comfy.front_end}_{node_mode}.png"))


def _show_scheduler(page, scale: float = 1.0) -> None:
    page.evaluate(f"""(scale) => {{
        const n = ({_NODE})('{SCHEDULER}'), ds = window.app.canvas.ds;
        ds.scale = scale; ds.offset = [-n.pos[0] + 120, -n.pos[1] + 80];
        window.app.canvas.setDirty(true, true); }}""", scale)
    page.wait_for_timeout(500)


def _open(page, **sampler) -> None:
    """The basic workflow with these sampler widget values, the scheduler at 100 % zoom near the top
    left of the canvas."""
    load_workflow(page, BASIC)
    _set(page, SAMPLER, **sampler)
    _show_scheduler(page)
    page.wait_for_function(f"() => ({_STRIP})().querySelector('.cell')")


def _set(page, node_class: str, **values) -> None:
    page.evaluate(f"""([cls, values]) => {{
        const node = ({_NODE})(cls);
        for (const [name, value] of Object.entries(values)) {{
            const w = node.widgets.find(w => w.name === name); w.value = value; w.callback?.(value); }}
        window.app.canvas.setDirty(true, true); }}""", [node_class, values])
    page.wait_for_timeout(300)  # the strip follows on its next frame


def _strip(page) -> dict:
    """What the strip shows: its cells' labels, stages and marks, its summary and message."""
    page.wait_for_timeout(200)
    return page.evaluate(f"""() => {{ const s = ({_STRIP})(), cells = [...s.querySelectorAll('.cell')];
        const message = s.querySelector('.message');
        return {{labels: cells.map(c => c.querySelector('.label').textContent), roles: cells.map(c => c.dataset.role),
                 unfit: cells.filter(c => 'unfit' in c.dataset).map(c => Number(c.dataset.step)),
                 summary: s.querySelector('.summary').textContent,
                 message: [...s.querySelectorAll('.message')].map(m => m.textContent).join(' ') || null,
                 error: !!s.querySelector('.message.error'),
                 colour: message && getComputedStyle(message).color}}; }}""")


def _cell_point(page, step: int) -> tuple[float, float]:
    """The screen point at the middle of a cell's box."""
    return tuple(page.evaluate(f"""(step) => {{
        const r = ({_STRIP})().querySelector(`.cell[data-step="${{step}}"] .box`).getBoundingClientRect();
        return [r.left + r.width / 2, r.top + r.height / 2]; }}""", step))


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


def _type_into(page, node_mode: str, name: str, text: str) -> None:
    """Type into a text widget of the scheduler as a user does: classic, a double click opens the
    front end's prompt; Nodes 2.0, the widget is an input."""
    if node_mode == "classic":
        point = page.evaluate(f"""(name) => {{
            const n = ({_NODE})('{SCHEDULER}'), w = n.widgets.find(w => w.name === name);
            const [x, y] = window.app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]);
            const r = window.app.canvas.canvas.getBoundingClientRect();
            return [x + r.left, y + r.top]; }}""", name)
        page.mouse.dblclick(*point)
    else:
        point = page.evaluate(f"""(name) => {{
            const n = ({_NODE})('{SCHEDULER}'), vue = document.querySelector(`[data-node-id="${{n.id}}"]`);
            const input = [...vue.querySelectorAll('input')].find(i => i.value === n.widgets.find(w => w.name === name).value);
            const r = input.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }}""", name)
        page.mouse.click(*point)
    page.wait_for_function("() => document.activeElement && document.activeElement.tagName === 'INPUT'")
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_strip_draws_the_samplers_scales_width_by_height_beside_the_widgets(page, comfy, node_mode, screenshots):
    _open(page)
    strip = _strip(page)
    assert strip["labels"] == ["0: 1x1", "1: 2x2", "2: 4x4", "3: 6x6", "4: 8x8", "5: 12x12", "6: 16x16",
                               "7: 20x20", "8: 24x24", "9: 32x32", "10: 40x40", "11: 48x48", "12: 64x64"]
    assert strip["roles"][:9] == ["init", "init", "key", "key", "fine", "fine", "fine", "fine", ""]
    assert strip["message"] is None
    assert page.evaluate(_COVERED) == []
    _shot(page, screenshots, "basic", comfy, node_mode)

    _set(page, SAMPLER, aspect="3:4 portrait", pixel_budget="0.06M")  # 3 wide, 4 high
    strip = _strip(page)
    assert strip["labels"] == ["0: 1x1", "1: 2x2", "2: 3x4", "3: 6x8", "4: 9x12", "5: 12x16", "6: 15x20"]
    assert strip["message"] == _python_message("2,3", "4-7", 4 / 3, "0.06M")
    assert strip["error"] and strip["colour"] == "rgb(255, 110, 90)"
    assert page.evaluate(_COVERED) == [], "the message is in the open, over nothing and under nothing"
    _shot(page, screenshots, "portrait_006M", comfy, node_mode)



def test_clicks_and_drags_write_the_text_widgets_and_the_prompt(page, comfy, node_mode, screenshots):
    _open(page)
    position = page.evaluate(f"() => ({_NODE})('{SCHEDULER}').pos.slice()")
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
    assert page.evaluate(f"() => ({_NODE})('{SCHEDULER}').pos.slice()") == position, "the node did not move"
    _shot(page, screenshots, "painted", comfy, node_mode)

    saved = page.evaluate(f"() => ({_NODE})('{SCHEDULER}').serialize().widgets_values")
    assert saved == ["2,3,9-11", "8", True, True, True, 0, -1, True, 1.0, 1.0], "the strip itself is not saved"
    prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    inputs = next(node["inputs"] for node in prompt.values() if node["class_type"] == SCHEDULER)
    assert inputs["key_steps"] == "2,3,9-11" and inputs["fine_steps"] == "8"
    assert "stage_strip" not in inputs


def test_typing_a_bad_range_redraws_the_strip_with_the_runs_message(page, comfy, node_mode, screenshots):
    _open(page)
    _type_into(page, node_mode, "fine_steps", "7-4")
    assert _texts(page) == ["2,3", "7-4"]
    strip = _strip(page)
    assert strip["message"] == "In '7-4', the range 7-4 runs backwards; write 4-7."
    assert "fine" not in strip["roles"], "the cells follow the typed text"
    assert strip["error"] and strip["colour"] == "rgb(255, 110, 90)"
    assert page.evaluate(_COVERED) == []
    _shot(page, screenshots, "bad_range", comfy, node_mode)
    _type_into(page, node_mode, "fine_steps", "4-6")
    assert _strip(page)["message"] is None and _strip(page)["roles"][4:8] == ["fine", "fine", "fine", ""]


def test_an_unreadable_custom_size_is_a_red_error(page, comfy, node_mode, screenshots):
    _open(page, aspect="custom (custom_size)", custom_size="banana")
    strip = _strip(page)
    assert strip["message"] == "Could not read the size 'banana': write width x height, such as 1024x768."
    assert strip["error"] and strip["colour"] == "rgb(255, 110, 90)"
    _shot(page, screenshots, "banana", comfy, node_mode)
    _set(page, SAMPLER, custom_size="1536x512")
    strip = _strip(page)
    assert strip["message"] is None and strip["labels"][-1] == "12: 111x37"


def test_one_scheduler_two_samplers_names_the_sampler_a_step_does_not_fit(page, comfy, node_mode, screenshots):
    # The basic workflow at 0.25M, and a second sampler (1:3 portrait, 0.06M) on the same stages,
    # models and prompts, decoded and previewed: fine step 7 is past the second one's last scale.
    _open(page, pixel_budget="0.25M", seed=11 + (node_mode == "nodes2"))
    second = page.evaluate(f"""() => {{
        const graph = window.app.rootGraph, find = {_NODE}, first = find('{SAMPLER}');
        const sampler = window.LiteGraph.createNode('{SAMPLER}');
        sampler.pos = [first.pos[0] + first.size[0] + 60, first.pos[1]];
        graph.add(sampler);
        for (const name of ['model', 'vae', 'conditioning', 'styles']) {{
            const link = first.getInputLink(first.findInputSlot(name));
            graph.getNodeById(link.origin_id).connect(link.origin_slot, sampler, sampler.findInputSlot(name));
        }}
        find('{SCHEDULER}').connect(0, sampler, sampler.findInputSlot('stages'));
        const decode = window.LiteGraph.createNode('InfinityStyleDecode'), preview = window.LiteGraph.createNode('PreviewImage');
        graph.add(decode); graph.add(preview);
        const vae = first.getInputLink(first.findInputSlot('vae'));
        graph.getNodeById(vae.origin_id).connect(vae.origin_slot, decode, decode.findInputSlot('vae'));
        sampler.connect(0, decode, decode.findInputSlot('codes'));
        decode.connect(0, preview, 0);
        for (const [name, value] of [['aspect', '1:3 portrait'], ['pixel_budget', '0.06M']])
            sampler.widgets.find(w => w.name === name).value = value;
        return {{id: sampler.id, title: sampler.title}}; }}""")
    _show_scheduler(page)
    strip = _strip(page)
    expected = _python_message("2,3", "4-7", 3.0, "0.06M")
    assert strip["message"] == f"{second['title']} #{second['id']}: {expected}"
    assert strip["error"] and strip["unfit"] == [7], "the cell of the step the second sampler lacks is marked"
    assert strip["summary"] == "10 scales, 2 samplers" and len(strip["labels"]) == 10
    _shot(page, screenshots, "two_samplers", comfy, node_mode)

    # The run says the same, on that sampler.
    page.evaluate("""() => { const run = window.__run = {error: null};
        window.app.api.addEventListener("execution_error", e => run.error = e.detail);
        window.app.api.addEventListener("execution_success", () => run.error = {exception_message: "none"}); }""")
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function("() => window.__run.error !== null", timeout=RUN_TIMEOUT_MS)
    error = page.evaluate("() => window.__run.error")
    assert str(error["node_id"]) == str(second["id"]) and expected in error["exception_message"]


def _previews(page) -> list[bool]:
    return page.evaluate(f"""() => [...({_STRIP})().querySelectorAll('.cell')].map(c => {{
        const image = c.querySelector('img'); return !!image && image.complete && image.naturalWidth > 0; }})""")


def test_a_run_puts_each_scales_preview_in_its_cell_and_a_reload_keeps_them(page, comfy, node_mode, screenshots):
    # A seed of its own per front end and mode: a run ComfyUI has cached sends the sampler nothing.
    _open(page, pixel_budget="0.06M", seed=100 + 2 * (comfy.front_end == "1.58.1") + (node_mode == "nodes2"))
    _set(page, SCHEDULER, fine_steps="4-6")
    assert _strip(page)["message"] is None
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(f"""() => [...({_STRIP})().querySelectorAll('.cell')].every(c => {{
        const image = c.querySelector('img'); return image && image.complete && image.naturalWidth > 0; }})""",
                           timeout=RUN_TIMEOUT_MS)
    assert _previews(page) == [True] * 7, "every cell shows its scale's preview"
    assert page.evaluate(_COVERED) == []
    _shot(page, screenshots, "after_run", comfy, node_mode)

    page.reload()
    page.wait_for_function(f"() => window.app && window.app.rootGraph && ({_NODE})('{SCHEDULER}')", timeout=60_000)
    close_dialogs(page)
    _show_scheduler(page)
    page.wait_for_function(f"""() => [...({_STRIP})().querySelectorAll('.cell img')].filter(i => i.complete && i.naturalWidth > 0).length === 7""",
                           timeout=30_000)
    assert _previews(page) == [True] * 7, "the previews come back from the server's history"
    _shot(page, screenshots, "after_reload", comfy, node_mode)

    _set(page, SAMPLER, pixel_budget="0.25M")
    assert _previews(page) == [False] * 10, "another schedule than the run's shows no previews"


def test_below_the_low_quality_zoom_the_strip_shows_as_core_widgets_do(page, comfy, node_mode, screenshots):
    # Classic: below the threshold LiteGraph draws widgets without text and hides DOM widgets.
    # Nodes 2.0: widgets are elements that keep their text; the strip does as they do.
    _open(page)
    for scale in (0.5, 1.0):
        _show_scheduler(page, scale)
        shown = page.evaluate(f"""() => {{
            const n = ({_NODE})('{SCHEDULER}'), vue = document.querySelector(`[data-node-id="${{n.id}}"]`);
            const core = vue ? [...vue.querySelectorAll('input')][0].checkVisibility() : !window.app.canvas.low_quality;
            return {{core, strip: ({_STRIP})().querySelector('.label').checkVisibility()}}; }}""")
        assert shown["strip"] == shown["core"], f"at {scale:.0%}: {shown}"
        if scale < 1:
            assert shown["core"] == (node_mode == "nodes2")
            _shot(page, screenshots, "zoom_50", comfy, node_mode)


def test_the_pack_logs_no_deprecation_warning(page, comfy, node_mode):
    # Every console warning with the stack that logged it; the page is reloaded so the pack's
    # start-up is seen too. The strip is drawn, painted and follows a sampler change.
    page.add_init_script("""(() => { const warn = console.warn; window.__warnings = [];
        console.warn = function (...args) { window.__warnings.push(args.map(String).join(' ') + '\\n' + new Error().stack);
                                             return warn.apply(this, args); }; })()""")
    page.reload()
    page.wait_for_function("() => window.app && window.app.canvas && window.app.rootGraph", timeout=60_000)
    close_dialogs(page)
    _open(page)
    page.mouse.click(*_cell_point(page, 8))
    _set(page, SAMPLER, pixel_budget="0.25M")
    assert _strip(page)["summary"] == "10 scales"
    warnings = page.evaluate("() => window.__warnings")
    ours = [w for w in warnings if "deprecat" in w.lower() and "/extensions/InfinityStyle/" in w]
    assert ours == []
