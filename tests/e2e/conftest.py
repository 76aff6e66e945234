"""Fixtures of the browser tests: `comfy` (a real ComfyUI server with the pack and the tiny model
set, one per front end), `node_mode` (classic or Nodes 2.0), `browser` (the system Chromium, one
per session) and `page` (a fresh 1600x900 page on the server's front end in that node mode, per
test). Every test that takes `page` runs on both front ends in both modes; its id names them,
e.g. `[fe1.58.1-nodes2-infinity_style_basic]`.

    bash tests/e2e/build_comfyui.sh          # prints the folder it built, e.g. /work/comfy-test
    INFINITYSTYLE_COMFY_ENV=/work/comfy-test /work/comfy-test/venv/bin/python -m pytest -q tests/e2e

Without INFINITYSTYLE_COMFY_ENV the tests skip with that line; in CI (CI=true) they fail.
Screenshots go to INFINITYSTYLE_SCREENSHOTS (default: the session's temporary folder).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import FRONT_ENDS, NODE_MODES, ComfyEnv, ComfyServer, launch_chromium, open_comfy

HOW_TO_RUN = ("browser tests need a built ComfyUI: run `bash tests/e2e/build_comfyui.sh`, then "
              "`INFINITYSTYLE_COMFY_ENV=<the folder it printed> <folder>/venv/bin/python -m pytest tests/e2e`")


def pytest_collection_modifyitems(items):
    """One server per front end (its tests together), and on each the node modes in turn: classic
    first on the pinned front end, Nodes 2.0 first on the newest. A workflow run at its default size
    is made in the first mode and comes from ComfyUI's cache in the second, so the live previews of
    a real run are seen in each mode once."""
    front_ends, modes = list(FRONT_ENDS), list(NODE_MODES)

    def order(item):
        params = getattr(item, "callspec", None) and item.callspec.params
        if not params or "comfy" not in params:
            return (-1, 0)
        fe = front_ends.index(params["comfy"])
        mode = modes.index(params["node_mode"]) if "node_mode" in params else -1
        return (fe, mode if fe % 2 == 0 else -mode)
    items.sort(key=order)


@pytest.fixture(scope="session")
def comfy_env() -> ComfyEnv:
    folder = os.environ.get("INFINITYSTYLE_COMFY_ENV")
    problem = ComfyEnv.problem(Path(folder)) if folder else "INFINITYSTYLE_COMFY_ENV is not set"
    if problem:
        # CI must run them: there a missing ComfyUI is a failure, by hand it is a skip.
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"{problem}; {HOW_TO_RUN}")
    return ComfyEnv(Path(folder))


@pytest.fixture(scope="session", params=list(FRONT_ENDS), ids=lambda v: f"fe{v}")
def comfy(request, comfy_env, tmp_path_factory):
    server = ComfyServer(comfy_env, tmp_path_factory.mktemp(f"comfy-{request.param}"), front_end=request.param)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=list(NODE_MODES))
def node_mode(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def browser(comfy_env):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, comfy, node_mode):
    context, page = open_comfy(browser, comfy, node_mode)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("INFINITYSTYLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
