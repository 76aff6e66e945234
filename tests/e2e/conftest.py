"""Fixtures of the browser tests: `comfy` (a real ComfyUI server with the pack and the tiny model
set, one per session), `browser` (the system Chromium, one per session) and `page` (a fresh
1600x900 page on the server's front end, per test).

    INFINITYSTYLE_COMFYUI=/path/to/ComfyUI python -m pytest tests/e2e

The tests are collected only when INFINITYSTYLE_COMFYUI is set (see tests/conftest.py).
Screenshots go to INFINITYSTYLE_SCREENSHOTS (default: the session's temporary folder).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness import ComfyServer, launch_chromium, open_comfy


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    server = ComfyServer(Path(os.environ["INFINITYSTYLE_COMFYUI"]), tmp_path_factory.mktemp("comfy"),
                         os.environ.get("INFINITYSTYLE_COMFYUI_PYTHON", sys.executable))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, comfy):
    context, page = open_comfy(browser, comfy.url)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("INFINITYSTYLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
