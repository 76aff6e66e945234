#!/usr/bin/env python3
"""Run a shipped ComfyUI workflow (UI format) end to end, outside ComfyUI, through the pack's own nodes.

  python3 run_workflow.py workflows/infinity_style_basic.json --out output

Models come from a folder laid out like ComfyUI's models/ (infinity/, vae/, text_encoders/flan-t5-xl/):
--models DIR, or the repository's models/. Without the files it builds a tiny random model set in a cache folder and
says so: the images are then noise from untrained weights, which shows the pipeline runs, not what
the method looks like. LoadImage names are looked up in --input and the repository's pictures/.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent
PACK_NAME = "infinitystyle_pack"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the front end, never executed
LOADER = "InfinityStyleLoader"


class WorkflowError(Exception):
    """A workflow this runner cannot run as it is; the message says why."""


# --- the pack, loaded the way ComfyUI loads it ------------------------------------------------------

def load_pack(name: str = PACK_NAME, path: Path = REPO):
    """Import the pack's __init__.py under `name`, as ComfyUI does: by file location, not from sys.path."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pack_nodes(pack) -> dict[str, type]:
    """node id -> class, through comfy_entrypoint like ComfyUI."""
    extension = asyncio.run(pack.comfy_entrypoint())
    asyncio.run(extension.on_load())
    return {cls.define_schema().node_id: cls for cls in asyncio.run(extension.get_node_list())}


# --- node specs: what a workflow node must look like -----------------------------------------------

@dataclass
class Widget:
    name: str
    type: str
    default: Any = None
    min: Any = None
    max: Any = None
    options: Optional[list] = None
    control: bool = False      # followed by a "fixed"/"randomize"/... entry in widgets_values
    free: bool = False         # options not checked here: they are the files of the machine it runs on
    folder: Optional[str] = None  # the model folder a loader's file widget lists


@dataclass
class NodeSpec:
    sockets: dict[str, tuple[str, bool]]   # input name -> (type, optional)
    widgets: list[Widget]
    outputs: list[str]
    run: Callable[..., tuple] = None       # (**inputs) -> (outputs, [(file prefix or None, IMAGE)])


def spec_of(cls) -> NodeSpec:
    """The spec of one of the pack's V3 nodes, from its schema (works with ComfyUI's io and the mirror)."""
    schema = cls.define_schema()
    folders = getattr(cls, "MODEL_INPUTS", {})
    sockets, required, optional = {}, [], []
    for inp in schema.inputs:
        io_type = str(inp.io_type)
        if io_type in WIDGET_TYPES and not getattr(inp, "force_input", None):
            (optional if inp.optional else required).append(Widget(
                inp.id, io_type, inp.default, getattr(inp, "min", None), getattr(inp, "max", None),
                list(inp.options) if io_type == "COMBO" else None,
                bool(getattr(inp, "control_after_generate", None)), inp.id in folders, folders.get(inp.id)))
        else:
            sockets[inp.id] = (io_type, bool(inp.optional))

    def run(**inputs):
        out = cls.execute(**inputs)
        picture = getattr(out.ui, "image", None)  # the mirror's PreviewImage keeps its picture
        return tuple(out.args), [] if picture is None else [(None, picture)]
    outputs = [str(o.io_type) for o in schema.outputs]
    # the front end orders widgets required first, then optional
    return NodeSpec(sockets, required + optional, outputs, run)


# Core ComfyUI nodes the shipped workflows use, with their widgets as ComfyUI defines them (0.3.64 to 0.8),
# and tiny local equivalents to run them.

def _load_image(image, upload, input_dirs=()):
    path = next((Path(d) / image for d in input_dirs if (Path(d) / image).is_file()), None)
    if path is None:
        raise WorkflowError(f"LoadImage: {image!r} is not in {', '.join(map(str, input_dirs))}.")
    images = importlib.import_module(f"{PACK_NAME}.infinity_core.images")
    errors = importlib.import_module(f"{PACK_NAME}.infinity_core.errors")
    try:
        img = images.open_picture(str(path))  # upright by its EXIF orientation, as ComfyUI's LoadImage
    except errors.InfinityError as exc:
        raise WorkflowError(f"LoadImage: {exc}") from None
    rgb = images.pil_to_rgb(img)
    # like ComfyUI: the mask is 1 - alpha, or an empty 64x64 mask without alpha
    mask = (1.0 - np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0 if "A" in img.getbands()
            else np.zeros((64, 64), dtype=np.float32))
    return (torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None]), []


def _image_stitch(image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
    if image2 is None:
        return (image1,), []
    horizontal = direction in ("right", "left")
    if match_image_size:
        size = image1.shape[1] if horizontal else image1.shape[2]
        other = image2.shape[2] * size // image2.shape[1] if horizontal else image2.shape[1] * size // image2.shape[2]
        hw = (size, other) if horizontal else (other, size)
        image2 = torch.nn.functional.interpolate(image2.movedim(-1, 1), size=hw, mode="bilinear").movedim(1, -1)
    colour = {"white": (1, 1, 1), "black": (0, 0, 0), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}
    parts = [image1, image2] if direction in ("right", "down") else [image2, image1]
    if spacing_width:
        shape = list(parts[0].shape)
        shape[2 if horizontal else 1] = spacing_width
        parts.insert(1, torch.tensor(colour[spacing_color], dtype=image1.dtype).expand(shape))
    return (torch.cat(parts, dim=2 if horizontal else 1),), []


CORE_NODES = {
    "LoadImage": NodeSpec({}, [Widget("image", "COMBO", free=True), Widget("upload", "IMAGEUPLOAD", options=["image"])],
                          ["IMAGE", "MASK"], _load_image),
    "SaveImage": NodeSpec({"images": ("IMAGE", False)}, [Widget("filename_prefix", "STRING", "ComfyUI")], [],
                          lambda images, filename_prefix: ((), [(filename_prefix, images)])),
    "PreviewImage": NodeSpec({"images": ("IMAGE", False)}, [], [],
                             lambda images: ((), [("preview", images)])),
    "ImageBatch": NodeSpec({"image1": ("IMAGE", False), "image2": ("IMAGE", False)}, [], ["IMAGE"],
                           lambda image1, image2: ((torch.cat([image1, image2]),), [])),
    "ImageStitch": NodeSpec(
        {"image1": ("IMAGE", False), "image2": ("IMAGE", True)},
        [Widget("direction", "COMBO", "right", options=["right", "down", "left", "up"]),
         Widget("match_image_size", "BOOLEAN", True), Widget("spacing_width", "INT", 0, 0, 1024),
         Widget("spacing_color", "COMBO", "white", options=["white", "black", "red", "green", "blue"])],
        ["IMAGE"], _image_stitch),
}


def all_specs(nodes: dict[str, type]) -> dict[str, NodeSpec]:
    return {**CORE_NODES, **{node_id: spec_of(cls) for node_id, cls in nodes.items()}}


# --- checking a workflow against the specs ----------------------------------------------------------

def widget_values(spec: NodeSpec, values: list) -> dict[str, Any]:
    """Positional widgets_values -> {name: value}, skipping the seed-control entries."""
    out, it = {}, iter(values)
    for widget in spec.widgets:
        out[widget.name] = next(it)
        if widget.control:
            next(it)
    return out


def _widget_problem(widget: Widget, value) -> Optional[str]:
    kinds = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool, "COMBO": str}
    kind = kinds.get(widget.type)
    if kind and (not isinstance(value, kind) or (widget.type in ("INT", "FLOAT") and isinstance(value, bool))):
        return f"{widget.name} = {value!r} is not a {widget.type}"
    if widget.free:
        return None
    if widget.options is not None and value not in widget.options:
        return f"{widget.name} = {value!r} is not one of {widget.options}"
    if widget.min is not None and value < widget.min or widget.max is not None and value > widget.max:
        return f"{widget.name} = {value!r} is outside {widget.min}..{widget.max}"
    return None


def _node_problems(node: dict, spec: NodeSpec, links: dict) -> list[str]:
    where, problems = f"node {node['id']} ({node['type']})", []
    values = node.get("widgets_values", [])
    expected = sum(1 + w.control for w in spec.widgets)
    if len(values) != expected:
        return [f"{where}: {len(values)} widget values, expected {expected}"]
    it = iter(values)
    for widget in spec.widgets:
        problem = _widget_problem(widget, next(it))
        if problem:
            problems.append(f"{where}: {problem}")
        if widget.control and next(it) not in SEED_CONTROLS:
            problems.append(f"{where}: {widget.name} is not followed by one of {sorted(SEED_CONTROLS)}")
    linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
    for name, (io_type, optional) in spec.sockets.items():
        if not optional and name not in linked:
            problems.append(f"{where}: required input {name} ({io_type}) is not linked")
    for slot, inp in enumerate(node.get("inputs", [])):
        if inp.get("link") is None:
            continue
        link = links.get(inp["link"])
        if link is None or link[3:5] != [node["id"], slot]:
            problems.append(f"{where}: input {inp['name']} names link {inp['link']}, which does not end here")
        elif inp["name"] not in spec.sockets or spec.sockets[inp["name"]][0] != link[5]:
            problems.append(f"{where}: input {inp['name']} does not take {link[5]}")
    return problems


LINK_FIELDS = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")  # a link saved as an object


def read_structure(workflow) -> list[str]:
    """Problems with the file's shape, before its nodes are read: nodes must be objects with an id
    and a type, links [id, from node, from slot, to node, to slot, type] lists. Links saved as
    objects (newer front ends) are rewritten in place as such lists."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return ["not a UI-format workflow (no 'nodes' list); API-format files are for a running ComfyUI"]
    problems = []
    for i, node in enumerate(workflow["nodes"]):
        missing = [key for key in ("id", "type") if not isinstance(node, dict) or key not in node]
        if missing:
            problems.append(f"node {i + 1} of {len(workflow['nodes'])} has no {' or '.join(map(repr, missing))}")
    links = workflow.setdefault("links", [])
    if not isinstance(links, list):
        return problems + ["'links' is not a list"]
    for i, link in enumerate(links):
        if isinstance(link, dict) and all(key in link for key in LINK_FIELDS):
            links[i] = link = [link[key] for key in LINK_FIELDS]
        if not (isinstance(link, list) and len(link) == 6):
            problems.append(f"link {i + 1} of {len(links)} is {json.dumps(link)[:80]}, not [id, from node, from slot, "
                            "to node, to slot, type] nor an object with those fields")
    return problems


def check_workflow(workflow: dict, specs: dict[str, NodeSpec]) -> list[str]:
    """Everything in a UI-format (v0.4) workflow that ComfyUI would refuse or that would not run."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    if len(nodes) != len(workflow["nodes"]):
        problems.append("node ids are not unique")
    if workflow.get("version") != 0.4 or workflow.get("last_node_id", -1) < max(nodes, default=0):
        problems.append("not a v0.4 workflow with last_node_id covering every node")
    if workflow.get("last_link_id", -1) < max(links, default=0):
        problems.append("last_link_id is below a link id")
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        if node["type"] not in specs:
            problems.append(f"node {node['id']} ({node['type']}): unknown node type")
        else:
            problems += _node_problems(node, specs[node["type"]], links)
    for link_id, source, slot, target, _, io_type in workflow["links"]:
        src = nodes.get(source)
        if src is None or target not in nodes or src["type"] not in specs:
            problems.append(f"link {link_id}: joins unknown nodes")
        elif slot >= len(specs[src["type"]].outputs) or specs[src["type"]].outputs[slot] != io_type:
            problems.append(f"link {link_id}: output {slot} of node {source} is not {io_type}")
        elif link_id not in (src["outputs"][slot].get("links") or []):
            problems.append(f"link {link_id}: node {source} does not list it on output {slot}")
    return problems


# --- running it ------------------------------------------------------------------------------------

def execution_order(workflow: dict) -> list[dict]:
    """The executable nodes, each after the nodes it reads from."""
    nodes = {n["id"]: n for n in workflow["nodes"] if n["type"] not in FRONTEND_ONLY}
    sources = {nid: {link[1] for link in workflow["links"] if link[3] == nid} for nid in nodes}
    order, done = [], set()
    while len(order) < len(nodes):
        ready = [nid for nid in sorted(nodes) if nid not in done and sources[nid] <= done]
        if not ready:
            raise WorkflowError("the workflow has a cycle")
        order += [nodes[nid] for nid in ready]
        done.update(ready)
    return order


def run(workflow: dict, specs: dict[str, NodeSpec], out_dir: Path, input_dirs=(), overrides=None) -> list[Path]:
    """Execute every node of a checked workflow in order; save what SaveImage/PreviewImage and the pack's
    node pictures show. `overrides` maps a node type to widget values replacing the workflow's."""
    links = {link[0]: link for link in workflow["links"]}
    results, written = {}, []
    out_dir.mkdir(parents=True, exist_ok=True)
    for node in execution_order(workflow):
        if node.get("mode", 0) == 2:  # muted
            continue
        if node.get("mode", 0) != 0:
            raise WorkflowError(f"node {node['id']} ({node['type']}) is bypassed; run_workflow does not bypass nodes")
        spec = specs[node["type"]]
        inputs = widget_values(spec, node.get("widgets_values", []))
        inputs.update((overrides or {}).get(node["type"], {}))
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                _, source, slot, *_ = links[inp["link"]]
                inputs[inp["name"]] = results[source][slot]
        if node["type"] == "LoadImage":
            inputs["input_dirs"] = input_dirs
        print(f"  [{node['id']}] {node['type']}", flush=True)
        results[node["id"]], pictures = spec.run(**inputs)
        for prefix, images in pictures:
            written += save_images(images, out_dir, prefix or f"{node['type']}_{node['id']}")
    return written


def save_images(images: torch.Tensor, out_dir: Path, prefix: str) -> list[Path]:
    """IMAGE [B, H, W, 3] -> <prefix>_00001_.png ..., numbered after what is already there (as ComfyUI does)."""
    numbers = (p.stem.rsplit("_", 2)[-2] for p in out_dir.glob(f"{prefix}_*_.png"))
    taken = [int(n) for n in numbers if n.isdigit()]
    paths = []
    for i, image in enumerate(images, start=max(taken, default=0) + 1):
        path = out_dir / f"{prefix}_{i:05d}_.png"
        Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()).save(path)
        paths.append(path)
    return paths


# --- models ----------------------------------------------------------------------------------------

def build_tiny_models(folder: Path, pack_name: str = PACK_NAME) -> dict[str, str]:
    """The engine's tiny random model set under `folder` (made once, then reused); returns the
    loader's widget values for it."""
    tiny = importlib.import_module(f"{pack_name}.infinity_core.tiny")
    tiny.write_tiny_models(str(folder))
    return {kind: name for kind, (_, name) in tiny.TINY_FILES.items()}


def _loader_files(workflow: dict, specs) -> list[tuple[str, str]]:
    """(folder, name) of every model file the workflow's loaders name."""
    spec = specs[LOADER]
    return [(w.folder, widget_values(spec, node["widgets_values"])[w.name]) for node in workflow["nodes"]
            if node["type"] == LOADER for w in spec.widgets if w.folder]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow", help="a UI-format workflow, e.g. workflows/infinity_style_basic.json")
    parser.add_argument("--out", default="output", help="folder for the images (default: output)")
    parser.add_argument("--models", help="folder laid out like ComfyUI's models/ (default: the repository's "
                                         "models/, if it has the files)")
    parser.add_argument("--input", help="folder LoadImage reads from, before the repository's pictures/")
    pack = load_pack()
    tiny = importlib.import_module(f"{PACK_NAME}.infinity_core.tiny")
    parser.add_argument("--cache", default=tiny.default_cache_dir(), help="where the tiny random model set is kept")
    args = parser.parse_args(argv)

    bridge = importlib.import_module(f"{PACK_NAME}.nodes.comfy_bridge")
    errors = importlib.import_module(f"{PACK_NAME}.infinity_core.errors")
    try:
        workflow = json.loads(Path(args.workflow).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"not a readable JSON workflow ({exc})"
        print(f"error: {args.workflow}: {reason}", file=sys.stderr)
        return 2
    if Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out} is a file; give a folder for the images", file=sys.stderr)
        return 2
    models = Path(args.models or REPO / "models")
    bridge.use_models_dir(str(models))
    specs = all_specs(pack_nodes(pack))
    problems = read_structure(workflow)
    if problems:
        print(f"error: {args.workflow} is not a UI-format workflow this runner can read:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    problems = check_workflow(workflow, specs)
    if problems:
        print("error: the workflow does not fit the nodes:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    overrides = {}
    missing = [f"{folder}/{name}" for folder, name in _loader_files(workflow, specs)
               if not bridge.find_model(folder, name)]
    if missing and args.models:
        print(f"error: not in {models}: {', '.join(missing)}", file=sys.stderr)
        return 2
    if missing:
        print(f"No model files in {models} ({', '.join(missing)} missing): using a tiny random model set in "
              f"{args.cache}.\nTHE IMAGES ARE NOISE FROM UNTRAINED WEIGHTS: they show that the workflow runs, "
              f"not what InfinityStyle looks like. Put the real files in {models} or pass --models DIR.")
        overrides[LOADER] = build_tiny_models(Path(args.cache))
        bridge.use_models_dir(args.cache)
    input_dirs = [d for d in (args.input, REPO / "pictures") if d]
    try:
        written = run(workflow, specs, Path(args.out), input_dirs, overrides)
    except (errors.InfinityError, WorkflowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
