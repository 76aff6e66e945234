"""The same GGUF file gives the same image with and without ComfyUI-GGUF installed, in a real ComfyUI
(not part of the pytest suite: CI has no ComfyUI).

    python tests/real_comfyui_gguf_parity.py /path/to/ComfyUI /path/to/ComfyUI-GGUF [work folder]

Run it with ComfyUI's own Python. It writes the tiny model set in the published layout
(infinity_2b_reg_Q8_0.gguf, flan-t5-xl-encoder-Q8_0.gguf, infinity_vae_d32_reg.pth) plus a Q4_0
transformer, then starts two scratch ComfyUI servers, the pack linked into both custom_nodes
folders and ComfyUI-GGUF into the second only, queues the same text-to-image graph for each
transformer on both, and compares the saved PNGs pixel for pixel. It also decodes random blocks of
every GGUF type both decoders know with ComfyUI-GGUF's code (in fp32, as the pack asks it to) and
the pack's, and compares the values.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
sys.path[:0] = [str(PACK), str(HERE)]

from published_layout import PUBLISHED, write_published_models  # noqa: E402


def graph(transformer: str) -> dict:
    return {
        "1": {"class_type": "InfinityStyleLoader", "inputs": {
            "transformer": transformer, "vae": PUBLISHED["vae"][1], "text_encoder": PUBLISHED["t5"][1],
            "precision": "auto"}},
        "2": {"class_type": "InfinityStyleTextEncode", "inputs": {
            "text_encoder": ["1", 2], "prompt": "a lighthouse at dusk", "negative": ""}},
        "3": {"class_type": "InfinityStyleSampler", "inputs": {
            "model": ["1", 0], "vae": ["1", 1], "conditioning": ["2", 0], "seed": 7, "cfg": 3.0, "tau": 0.5,
            "top_k": 900, "top_p": 0.97, "aspect": "1:1 square", "custom_size": "1024x1024",
            "pixel_budget": "0.06M", "batch_size": 1}},
        "4": {"class_type": "InfinityStyleDecode", "inputs": {"vae": ["1", 1], "codes": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": transformer}},
    }


def call(port: int, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def serve_and_run(comfy: Path, base: Path, port: int, transformers: list[str]) -> tuple[dict, str]:
    """Start a server on `base`, run the graph for each transformer; the saved images and the log."""
    log = open(base / "server.log", "w")
    server = subprocess.Popen([sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                               "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
                               "--disable-auto-launch"], cwd=comfy, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                call(port, "/system_stats")
                break
            except OSError:
                time.sleep(1)
        images = {}
        for name in transformers:
            prompt_id = call(port, "/prompt", {"prompt": graph(name)})["prompt_id"]
            for _ in range(600):
                history = call(port, f"/history/{prompt_id}").get(prompt_id)
                if history and history.get("status", {}).get("completed") is not None:
                    break
                time.sleep(1)
            outputs = history["outputs"]["5"]["images"] if history and "5" in history.get("outputs", {}) else None
            if not outputs:
                raise SystemExit(f"no image for {name}: {json.dumps(history and history.get('status'))}\n"
                                 f"see {base / 'server.log'}")
            images[name] = np.asarray(Image.open(base / "output" / outputs[0]["subfolder"] / outputs[0]["filename"]))
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    return images, (base / "server.log").read_text()


def decoders_agree(comfy_dir: str, comfyui_gguf: str) -> bool:
    """ComfyUI-GGUF's dequantize (dtype fp32) against the pack's, on random blocks of each type."""
    import gguf
    import importlib.util
    import warnings

    import torch

    warnings.simplefilter("ignore")  # the pack's "decoded on the CPU, slowly" notes: expected here

    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.insert(0, comfy_dir)  # before the pack: `import nodes` in ComfyUI-GGUF means ComfyUI's
    import comfy.options
    comfy.options.enable_args_parsing()
    spec = importlib.util.spec_from_file_location("ComfyUI-GGUF", Path(comfyui_gguf) / "__init__.py",
                                                  submodule_search_locations=[comfyui_gguf])
    module = importlib.util.module_from_spec(spec)
    sys.modules["ComfyUI-GGUF"] = module
    spec.loader.exec_module(module)
    theirs = sys.modules["ComfyUI-GGUF.dequant"].dequantize
    from infinity_core.weights import ggml
    rng, same = np.random.default_rng(0), True
    for name in ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"):
        qtype = gguf.GGMLQuantizationType[name]
        elements, nbytes = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(64, nbytes), dtype=np.uint8)
        scales = {"Q6_K": [208], "Q2_K": [80, 82], "Q3_K": [108], "Q4_1": [0, 2], "Q5_1": [0, 2], "Q4_K": [0, 2],
                  "Q5_K": [0, 2]}.get(name, [0])  # ordinary fp16 numbers where the block keeps its scales
        for offset in scales:
            raw[:, offset:offset + 2] = rng.uniform(-2, 2, (64, 1)).astype(np.float16).view(np.uint8)
        blocks, shape = torch.from_numpy(raw.reshape(8, -1)), (8, 8 * elements)
        equal = torch.equal(theirs(blocks, qtype, torch.Size(shape), dtype=torch.float32).float(),
                            ggml.dequantize(blocks, int(qtype), shape))
        print(f"{name}: {'the same values' if equal else 'DIFFERENT values'}")
        same &= equal
    return same


def main(comfy: str, comfyui_gguf: str, work: str | None = None) -> int:
    work = Path(work or tempfile.mkdtemp(prefix="gguf_parity_"))
    models = work / "models"
    paths = write_published_models(str(models))
    from infinity_core.network.transformer import build_random_transformer
    from infinity_core.tiny import TINY_TRANSFORMER
    from infinity_core.weights.gguf_file import write_gguf
    write_gguf(str(models / "infinity" / "infinity_2b_reg_Q4_0.gguf"), build_random_transformer(TINY_TRANSFORMER, 0)
               .state_dict(), "Q4_0")
    transformers = [os.path.basename(paths["transformer"]), "infinity_2b_reg_Q4_0.gguf"]
    results = {}
    for port, with_gguf in ((8391, False), (8392, True)):
        base = work / ("with_comfyui_gguf" if with_gguf else "without")
        shutil.rmtree(base, ignore_errors=True)
        (base / "custom_nodes").mkdir(parents=True)
        os.symlink(models, base / "models")
        os.symlink(PACK, base / "custom_nodes" / "InfinityStyle")
        if with_gguf:
            os.symlink(Path(comfyui_gguf).resolve(), base / "custom_nodes" / "ComfyUI-GGUF")
        results[with_gguf] = serve_and_run(Path(comfy), base, port, transformers)
    for with_gguf, (_, log) in results.items():
        said = [line.strip() for line in log.splitlines()
                if "GGUF transformer runs on" in line or ("IMPORT FAILED" in line and "custom_nodes" in line)]
        print(f"{'with' if with_gguf else 'without'} ComfyUI-GGUF, the server log says: {said}")
    same = True
    for name in transformers:
        a, b = results[False][0][name], results[True][0][name]
        differ = int((a != b).any(axis=-1).sum())
        print(f"{name}: {a.shape[1]}x{a.shape[0]}, {differ} of {a.shape[0] * a.shape[1]} pixels differ "
              f"(largest difference {int(np.abs(a.astype(int) - b.astype(int)).max())} of 255)")
        same &= differ == 0
    print("SAME IMAGES" if same else "IMAGES DIFFER")
    decoded = decoders_agree(comfy, comfyui_gguf)
    return 0 if same and decoded else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
