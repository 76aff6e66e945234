"""A real ComfyUI server with this pack and the tiny model set, and the system Chromium driving its
front end in either node mode. Used by the browser tests' fixtures (conftest.py) and
make_thumbnails.py.

The server runs from the folder build_comfyui.sh built (ComfyUI, its venv, the newest front end),
with the front end asked for, on 127.0.0.1 and a free port, in a scratch base directory: the pack
is linked in as custom_nodes/InfinityStyle, the pictures the workflows load are copied to its
input folder, and the tiny model set is written next to it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Front end version -> its static files in the built folder (None: the one ComfyUI 0.8.0 pins).
FRONT_ENDS = {"1.35.9": None, "1.58.1": "frontend-1.58.1/comfyui_frontend_package/static"}
# Node mode -> the value of the setting that picks it.
NODE_MODES = {"classic": False, "nodes2": True}
VUE_NODES = "Comfy.VueNodes.Enabled"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
PICTURES = REPO / "pictures"
PACK_FOLDER = "InfinityStyle"   # the pack's folder name in custom_nodes/: the template browser's section
WINDOW = {"width": 1600, "height": 900}
CHROMIUM = os.environ.get("INFINITYSTYLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyEnv:
    """The folder build_comfyui.sh built: ComfyUI/, venv/ and the newest front end."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.comfy_dir = self.folder / "ComfyUI"
        self.python = str(self.folder / "venv" / "bin" / "python")

    def front_end_root(self, version: str) -> Path | None:
        return self.folder / FRONT_ENDS[version] if FRONT_ENDS[version] else None

    @staticmethod
    def problem(folder: Path) -> str | None:
        """What keeps the tests from running on this folder, or None."""
        env = ComfyEnv(folder)
        needed = [env.comfy_dir / "main.py", Path(env.python), env.front_end_root("1.58.1") / "index.html",
                  Path(CHROMIUM)]
        missing = [str(p) for p in needed if not p.exists()]
        return f"{', '.join(missing)} missing" if missing else None


class ComfyServer:
    """One ComfyUI process serving one front end; `url` is its address. Stop it with `stop()` (only
    this process group)."""

    def __init__(self, env: ComfyEnv, base: Path, front_end: str = "1.35.9"):
        self.comfy_dir, self.base, self.python = env.comfy_dir, Path(base), env.python
        self.front_end, self.front_end_root = front_end, env.front_end_root(front_end)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.tiny_files: dict[str, str] = {}

    # -- setting up the base directory --------------------------------------------------------------

    def prepare(self) -> None:
        for sub in ("custom_nodes", "input", "output", "user/default"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        # A first start opens the template browser over the canvas; a user who has been here before does not.
        (self.base / "user" / "default" / "comfy.settings.json").write_text(
            json.dumps({"Comfy.TutorialCompleted": True}), encoding="utf-8")
        for picture in PICTURES.glob("*.png"):
            shutil.copy(picture, self.base / "input" / picture.name)
        self.tiny_files = self._write_tiny_models(self.base / "models")
        self._link_shipped_names(self.base / "models")
        (self.base / "extra_model_paths.yaml").write_text(
            f"tiny:\n  base_path: {self.base / 'models'}\n  infinity: infinity\n  vae: vae\n"
            "  text_encoders: text_encoders\n", encoding="utf-8")

    def _write_tiny_models(self, folder: Path) -> dict[str, str]:
        """The engine's tiny random set, written by the server's Python (it has torch); returns the
        Loader's widget values for it."""
        script = ("import importlib.util, json, sys\n"
                  f"spec = importlib.util.spec_from_file_location('isty', {str(REPO / '__init__.py')!r}, "
                  f"submodule_search_locations=[{str(REPO)!r}])\n"
                  "pack = importlib.util.module_from_spec(spec); sys.modules['isty'] = pack; spec.loader.exec_module(pack)\n"
                  "from isty.infinity_core import tiny\n"
                  f"tiny.write_tiny_models({str(folder)!r})\n"
                  "print(json.dumps({k: name for k, (_, name) in tiny.TINY_FILES.items()}))\n")
        out = subprocess.run([self.python, "-c", script], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _link_shipped_names(self, models: Path) -> None:
        """The tiny files also under the names the shipped workflows' Loader asks for, as a user with
        the released files has them: the workflows open without a missing-model warning and run as
        they are, at their default sizes."""
        folders = {"transformer": "infinity", "vae": "vae", "text_encoder": "text_encoders"}
        for path in WORKFLOWS:
            for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
                if node["type"] == "InfinityStyleLoader":
                    for kind, name in zip(folders, node["widgets_values"]):
                        link = models / folders[kind] / name
                        if not link.exists():
                            link.symlink_to(models / folders[kind] / self.tiny_files[kind])

    # -- running ------------------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        self.prepare()
        log = open(self.base / "server.log", "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch", "--base-directory", str(self.base),
             "--extra-model-paths-config", str(self.base / "extra_model_paths.yaml"),
             "--database-url", "sqlite:///:memory:",
             *(["--front-end-root", str(self.front_end_root)] if self.front_end_root else [])],
            cwd=self.comfy_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        path = self.base / "server.log"
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- the HTTP API -------------------------------------------------------------------------------

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            body = response.read()
            return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, data: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, json.dumps(data).encode(),
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def wait_for_history(self, prompt_id: str, timeout: float) -> dict:
        """The finished prompt's history entry (outputs, status), waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["completed"] or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")


# --- the browser ------------------------------------------------------------------------------------

def launch_chromium(playwright):
    """The system Chromium, headless (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)


def open_comfy(browser, server: ComfyServer, node_mode: str):
    """A 1600x900 page with the server's front end ready in that node mode (graph and canvas up, no
    dialog open). Returns (context, page); the page records console errors in `page.console_errors`
    and answers of 400 and above in `page.failed_requests`."""
    # The mode is a user setting the front end reads as it starts: set it, then load the page.
    status, _ = server.post(f"/api/settings/{VUE_NODES}", NODE_MODES[node_mode])
    assert status == 200, f"setting {VUE_NODES} answered {status}"
    context = browser.new_context(viewport=WINDOW)
    page = context.new_page()
    page.console_errors, page.failed_requests = [], []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and page.failed_requests.append(f"{r.status} {r.url}"))
    page.goto(server.url)
    page.wait_for_function("() => window.app && window.app.canvas && window.app.rootGraph", timeout=60_000)
    close_dialogs(page)
    shown = page.evaluate(f"() => window.app.extensionManager.setting.get('{VUE_NODES}')")
    assert shown is NODE_MODES[node_mode], f"the front end reads {VUE_NODES}={shown}, not {NODE_MODES[node_mode]}"
    return context, page


def close_dialogs(page) -> None:
    """Close whatever dialogs are open (the start-up template browser eats clicks)."""
    for _ in range(3):
        if not page.locator(".p-dialog").count():
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)


def load_workflow(page, workflow: dict) -> None:
    """Load a UI-format workflow as the front end does when a file is dropped on it."""
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(300)


def node_boxes(page) -> list[dict]:
    """Every node of the loaded graph as the front end shows it: id, type, title, and its box on the
    screen [x, y (title top), width, height (title and any pictures included)] and in graph units.
    Classic nodes are LiteGraph's boxes; Nodes 2.0 nodes are their elements' boxes."""
    return page.evaluate("""() => {
        const canvas = window.app.canvas, rect = canvas.canvas.getBoundingClientRect(), s = canvas.ds.scale;
        const title = window.LiteGraph ? window.LiteGraph.NODE_TITLE_HEIGHT : 30;
        return window.app.rootGraph.nodes.map(n => {
            const element = document.querySelector(`[data-node-id="${n.id}"]`);
            let screen;
            if (element) {
                const r = element.getBoundingClientRect();
                screen = [r.left, r.top, r.width, r.height];
            } else {
                const [sx, sy] = canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1] - title]);
                screen = [rect.left + sx, rect.top + sy, n.size[0] * s, (n.size[1] + title) * s];
            }
            const [gx, gy] = canvas.ds.convertCanvasToOffset([screen[0] - rect.left, screen[1] - rect.top]);
            return {id: Number(n.id), type: n.type, title: n.title, screen,
                    graph: [gx, gy, screen[2] / s, screen[3] / s]};
        });
    }""")


def canvas_box(page) -> list[float]:
    """The canvas element's visible box on the screen [x, y, width, height]."""
    return page.evaluate("""() => { const r = window.app.canvas.canvas.getBoundingClientRect();
                                    return [r.left, r.top, r.width, r.height]; }""")


def widget_values(page) -> dict:
    """node id -> the values of its serialised widgets, in order (as widgets_values would hold them)."""
    return page.evaluate("""() => Object.fromEntries(window.app.rootGraph.nodes.map(n => [n.id,
        n.serialize().widgets_values ?? []]))""")
