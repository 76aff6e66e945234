"""Redraw the template browser's thumbnails (workflows/<stem>.jpg): each workflow's first view in
a real ComfyUI (the pinned front end, classic nodes), without the side bar and tabs.

    bash tests/e2e/build_comfyui.sh
    INFINITYSTYLE_COMFY_ENV=<the folder it printed> python3 tests/e2e/make_thumbnails.py

Any Python starts it: it runs itself again with the built folder's venv, which has playwright.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from harness import WORKFLOWS, ComfyEnv, ComfyServer, launch_chromium, load_workflow, node_boxes, open_comfy

THUMBNAIL = (480, 270)
ONLY_THE_GRAPH = """body * { visibility: hidden !important; }
canvas.lgraphcanvas, .dom-widget, .dom-widget * { visibility: visible !important; }"""


def thumbnail(page) -> Image.Image:
    """The loaded graph alone (no side bar, tool bars or minimap), fitted into THUMBNAIL."""
    page.evaluate("() => { window.app.canvas.show_info = false; window.app.canvas.setDirty(true, true); }")
    page.wait_for_timeout(300)
    boxes = [n["screen"] for n in node_boxes(page)]
    left, top = min(b[0] for b in boxes) - 16, min(b[1] for b in boxes) - 16
    right, bottom = max(b[0] + b[2] for b in boxes) + 16, max(b[1] + b[3] for b in boxes) + 16
    shot = Image.open(io.BytesIO(page.screenshot(clip={"x": left, "y": top, "width": right - left,
                                                       "height": bottom - top}))).convert("RGB")
    shot.thumbnail(THUMBNAIL, Image.LANCZOS)
    framed = Image.new("RGB", THUMBNAIL, shot.getpixel((2, 2)))
    framed.paste(shot, ((THUMBNAIL[0] - shot.width) // 2, (THUMBNAIL[1] - shot.height) // 2))
    return framed


def main() -> int:
    folder = os.environ.get("INFINITYSTYLE_COMFY_ENV")
    problem = ComfyEnv.problem(Path(folder)) if folder else "INFINITYSTYLE_COMFY_ENV is not set"
    if problem:
        print(f"make_thumbnails: {problem}; build the test ComfyUI with `bash tests/e2e/build_comfyui.sh` and set "
              "INFINITYSTYLE_COMFY_ENV to the folder it prints", file=sys.stderr)
        return 2
    env = ComfyEnv(Path(folder))
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:  # started with another Python: the built venv has playwright
        os.execv(env.python, [env.python, __file__, *sys.argv[1:]])
    with tempfile.TemporaryDirectory() as base:
        server = ComfyServer(env, Path(base))
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                _, page = open_comfy(browser, server, "classic")
                page.add_style_tag(content=ONLY_THE_GRAPH)
                for path in WORKFLOWS:
                    load_workflow(page, json.loads(path.read_text(encoding="utf-8")))
                    page.wait_for_timeout(1500)  # pictures of LoadImage nodes
                    thumbnail(page).save(path.with_suffix(".jpg"), quality=82, optimize=True)
                    print(f"wrote {path.with_suffix('.jpg')}")
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
