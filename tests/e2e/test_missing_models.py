"""Opening a shipped workflow without its model files, on both front ends in both node modes: the
front end lists each missing file with the folder it goes in and where to get it, from the
Loader's `properties.models` entries (as ComfyUI's own templates carry them).

Front end 1.35.9 opens a dialog listing `folder / file`; it offers downloads of .safetensors files
only, so for the .pth files it shows its suffix note and keeps the address in the disabled
Download button's tooltip. Front end 1.58.1 lists each file with its folder under "Missing Models"
in the workflow's Issues panel, with a Copy URL button that copies the file's page."""
from __future__ import annotations

import json
from contextlib import contextmanager

from harness import WORKFLOWS, close_dialogs, load_workflow

MODEL_FILES = {"infinity_2b_reg.pth": "infinity", "infinity_vae_d32reg.pth": "vae"}
DOWNLOAD = "https://huggingface.co/FoundationVision/Infinity/resolve/main/"
PAGE = "https://huggingface.co/FoundationVision/Infinity/blob/main/"


@contextmanager
def without_model_files(comfy):
    """The server's model folders without the shipped workflows' two files (put back afterwards)."""
    paths = [comfy.base / "models" / folder / name for name, folder in MODEL_FILES.items()]
    for path in paths:
        path.rename(path.with_name(path.name + ".away"))
    try:
        yield
    finally:
        for path in paths:
            path.with_name(path.name + ".away").rename(path)


def listed_by_1_35_9(page) -> dict:
    """The missing-models dialog's files: 'folder / file' -> the Download button's address."""
    page.wait_for_selector(".p-dialog", timeout=30_000)
    rows = page.evaluate("""() => [...document.querySelectorAll('.p-dialog button[title]')]
        .filter(b => b.title.startsWith('http'))
        .map(b => { let row = b; while (!/ \\/ /.test(row.innerText)) row = row.parentElement;
                    return [row.innerText.split('\\n')[0].trim(), b.title]; })""")
    return dict(rows)


def listed_by_1_58_1(page) -> dict:
    """The Issues panel's missing models: file -> (folder, the address Copy URL copies)."""
    details = page.get_by_text("View details")
    details.first.wait_for(timeout=30_000)
    details.first.click()
    listed = {}
    for name in MODEL_FILES:
        row = page.locator("div.flex.min-h-8", has=page.get_by_role("button", name=name, exact=True))
        row.wait_for(timeout=30_000)
        row.get_by_role("button", name="Copy URL").click()
        page.wait_for_timeout(200)
        lines = row.inner_text().split("\n")
        listed[name] = (lines[1].strip(), page.evaluate("() => navigator.clipboard.readText()"))
    return listed


def test_a_workflow_opened_without_its_model_files_lists_each_with_its_folder_and_address(page, comfy, node_mode,
                                                                                         screenshots):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    with without_model_files(comfy):
        for number, path in enumerate(WORKFLOWS):
            page.reload()  # the Loader's lists of files are read as the page starts
            page.wait_for_function("() => window.app && window.app.canvas && window.app.rootGraph", timeout=60_000)
            close_dialogs(page)
            load_workflow(page, json.loads(path.read_text(encoding="utf-8")))
            if comfy.front_end == "1.35.9":
                listed = listed_by_1_35_9(page)
                assert listed == {f"{folder} / {name}": DOWNLOAD + name for name, folder in MODEL_FILES.items()}, path.stem
            else:
                listed = listed_by_1_58_1(page)
                assert listed == {name: (folder, PAGE + name) for name, folder in MODEL_FILES.items()}, path.stem
            if number == 0:
                page.screenshot(path=str(screenshots / f"missing_models_{comfy.front_end}_{node_mode}.png"))
