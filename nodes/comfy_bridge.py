"""Everything the pack takes from ComfyUI, in one module: model folders, devices and dtypes, the
memory manager, layer factories, the progress bar, temp pictures for the front end and the cancel check.

Outside ComfyUI (tests, run_workflow.py) the same calls fall back to the CPU in fp32, a local
models folder (`use_models_dir`), no progress bar and no cancel.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..infinity_core.weights.lowbit import LowBitOps
from ..infinity_core.weights.sharded import find_index

try:
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.ops
    import comfy.utils
    import folder_paths
    IN_COMFY = True
except ImportError:
    IN_COMFY = False

log = logging.getLogger(__name__)

# ComfyUI folder name -> what goes there (for messages)
MODEL_FOLDERS = {
    "infinity": "the Infinity transformer (infinity_2b_reg.pth, or the infinity_8b_weights folder)",
    "vae": "the BSQ VAE (infinity_vae_d32reg.pth for 2B, infinity_vae_d56_f8_14_patchify.pth for 8B)",
    "text_encoders": "the T5 text encoder folder (flan-t5-xl: config.json, tokenizer and weights)",
}
WEIGHT_EXTENSIONS = {".pth", ".pt", ".safetensors", ".sft", ".gguf"}
PREVIEW_MAX_SIZE = 512  # ComfyUI's default --preview-size
COMPUTE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # not fp8 (ComfyUI's --fp8-unet flags)

_local_models_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def use_models_dir(path: str) -> None:
    """Outside ComfyUI: the folder laid out like ComfyUI's models/ (infinity/, vae/, text_encoders/)."""
    global _local_models_dir
    _local_models_dir = os.path.abspath(path)


# --- model folders ---------------------------------------------------------------------------------

def register_model_folders() -> None:
    """Add models/<folder> for each of our folders, after any path the user set in
    extra_model_paths.yaml (those stay first), and make sure our weight extensions are listed."""
    if not IN_COMFY:
        return
    for name in MODEL_FOLDERS:
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        paths, extensions = folder_paths.folder_names_and_paths[name]
        folder_paths.folder_names_and_paths[name] = (paths, set(extensions) | WEIGHT_EXTENSIONS)


def search_dirs(folder: str) -> list[str]:
    if IN_COMFY:
        register_model_folders()
        return folder_paths.get_folder_paths(folder)
    return [os.path.join(_local_models_dir, folder)]


def _walk(folder: str):
    """(relative name with '/', full path, is_dir) of everything under the folder's search dirs."""
    for root in search_dirs(folder):
        for here, dirs, files in os.walk(root, followlinks=True):
            rel = os.path.relpath(here, root).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            yield from ((prefix + d, os.path.join(here, d), True) for d in dirs)
            yield from ((prefix + f, os.path.join(here, f), False) for f in files)


def model_files(folder: str) -> list[str]:
    return sorted({name for name, _, is_dir in _walk(folder)
                   if not is_dir and os.path.splitext(name)[1].lower() in WEIGHT_EXTENSIONS})


def model_checkpoints(folder: str) -> list[str]:
    """Weight files and sharded checkpoint folders (an index JSON beside its shards, as the 8B
    ships), by name; the shards inside such a folder are not listed on their own."""
    entries = list(_walk(folder))
    sharded = {name for name, path, is_dir in entries if is_dir and find_index(path)}
    files = {name for name, _, is_dir in entries
             if not is_dir and os.path.splitext(name)[1].lower() in WEIGHT_EXTENSIONS
             and not any(name.startswith(d + "/") for d in sharded)}
    return sorted(files | sharded)


def model_dirs(folder: str) -> list[str]:
    """Sub-folders that hold a Hugging Face model (a config.json)."""
    return sorted({name for name, path, is_dir in _walk(folder)
                   if is_dir and os.path.isfile(os.path.join(path, "config.json"))})


def text_encoder_choices() -> list[str]:
    """T5 folders, and GGUF files anywhere under text_encoders: a T5 encoder GGUF made by llama.cpp
    (flan-t5-xl-encoder-Q8_0.gguf) carries its own tokenizer; one that does not is read with the
    config and tokenizer of the flan-t5-xl folder it is in."""
    gguf_files = [name for name in model_files("text_encoders") if name.lower().endswith(".gguf")]
    return model_dirs("text_encoders") + gguf_files


def find_model(folder: str, name: str) -> Optional[str]:
    """Full path of `name` (a file or folder) in the folder's search dirs, or None."""
    name = os.path.relpath(os.path.join("/", name), "/")  # no escaping the folder with ../
    for root in search_dirs(folder):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    return None


# --- devices, dtypes, layers ------------------------------------------------------------------------

_DEVICES = {  # kind -> ComfyUI's (compute device, offload device) functions
    "transformer": ("get_torch_device", "unet_offload_device"),
    "vae": ("vae_device", "vae_offload_device"),
    "text": ("text_encoder_device", "text_encoder_offload_device"),
}


def devices(kind: str) -> tuple[torch.device, torch.device]:
    """(compute device, offload device) ComfyUI picks for a 'transformer', 'vae' or 'text' model."""
    if not IN_COMFY:
        return torch.device("cpu"), torch.device("cpu")
    compute, offload = _DEVICES[kind]
    return getattr(mm, compute)(), getattr(mm, offload)()


def auto_dtype(kind: str, device: torch.device, params: int = 0) -> torch.dtype:
    """ComfyUI's choice for this model on this device (its --fp16-*/--bf16-*/--fp32-* flags win)."""
    if not IN_COMFY:
        return torch.float32
    if kind == "transformer":  # trained in bf16; fp16 has no track record on Infinity
        dtype = mm.unet_dtype(device, model_params=params, supported_dtypes=[torch.bfloat16, torch.float32])
        return dtype if dtype in COMPUTE_DTYPES else torch.bfloat16  # the blocks compute in their storage dtype
    dtype = mm.vae_dtype(device) if kind == "vae" else mm.text_encoder_dtype(device)
    return dtype if mm.supports_dtype(device, dtype) else torch.float32


def operations(weights: str = "plain"):
    """The layer classes for weights stored as 'plain' (bf16/fp16/fp32), 'fp8' or 'gguf' blocks.

    In ComfyUI: its own ops (`manual_cast` decodes fp8 per layer, as for its fp8 models), and
    ComfyUI-GGUF's ops for GGUF when that pack is installed, else the engine's `LowBitOps`.
    Outside ComfyUI: None, the engine's defaults."""
    if not IN_COMFY:
        return None
    if weights == "fp8":
        return comfy.ops.manual_cast
    if weights == "gguf":
        ops = _comfyui_gguf_ops()
        log.info("InfinityStyle: the GGUF transformer runs on %s layers.", "ComfyUI-GGUF's" if ops else "the pack's own")
        return ops or LowBitOps
    return comfy.ops.disable_weight_init


def _comfyui_gguf_ops():
    """ComfyUI-GGUF's layer classes, able to hold the engine's quantized weights and decoding them to
    the same numbers as the engine's layers, if that pack is loaded."""
    pack = next((m for name, m in list(sys.modules.items()) if name.endswith(".ops")  # vars(): no __getattr__ magic
                 and isinstance(vars(m).get("GGMLOps"), type) and isinstance(vars(m).get("GGMLTensor"), type)), None)
    if pack is None:
        return None
    import gguf

    class ComfyUIGGUFOps(pack.GGMLOps):
        class Linear(pack.GGMLOps.Linear):
            # Decode in fp32, then cast to the compute dtype, as the engine's own layers do: its default
            # (None) multiplies in fp16, which moves the logits by ~1e-3 and changes sampled bits.
            # A class of our own, so the dtype its loader nodes set on GGMLOps.Linear does not reach us.
            dequant_dtype = torch.float32

        @staticmethod
        def hold_quantized(layer, attr, q) -> bool:
            if attr != "weight" or not isinstance(layer, torch.nn.Linear):
                return False
            blocks = pack.GGMLTensor(q.data, tensor_type=gguf.GGMLQuantizationType(q.qtype),
                                     tensor_shape=torch.Size(q.shape))
            layer.weight = torch.nn.Parameter(blocks, requires_grad=False)
            return True
    return ComfyUIGGUFOps


def intermediate_device() -> torch.device:
    return mm.intermediate_device() if IN_COMFY else torch.device("cpu")


# --- memory manager ---------------------------------------------------------------------------------

class _Shell(torch.nn.Module):
    """ModelPatcher writes `model.device`, which the engine's models (and Hugging Face's) expose
    read-only; the patcher gets this shell around the module instead."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.inner = module


@functools.cache
def _shell_class(name: str) -> type:
    """A _Shell subclass named after the model it holds: ComfyUI's log says "Requested to load
    <class name>", which should name the model, not the shell."""
    return type(name, (_Shell,), {"__doc__": _Shell.__doc__})


@dataclass(frozen=True)
class Managed:
    """A loaded model as it travels between nodes: `obj` is what the nodes call, `patcher` is
    ComfyUI's handle on its weights (None outside ComfyUI)."""
    obj: Any
    patcher: Any = None


def manage(obj: Any, module: torch.nn.Module, kind: str) -> Managed:
    if not IN_COMFY:
        return Managed(obj)
    load_device, offload_device = devices(kind)
    shell = _shell_class(type(module).__name__)(module)
    return Managed(obj, comfy.model_patcher.ModelPatcher(shell, load_device, offload_device))


def load(*models: Managed, memory_required: int = 0) -> None:
    """Bring the models to their compute device (ComfyUI frees room for them and may offload
    others, keeping `memory_required` bytes free for activations).

    Always whole: a partial (low-VRAM) load moves only leaf layers, and the engine's models keep
    parameters on inner modules too (pos_start, q_bias, ada_gss...) that would stay behind."""
    if IN_COMFY:
        mm.load_models_gpu([m.patcher for m in models], memory_required=memory_required, force_full_load=True)


# --- progress and cancel ----------------------------------------------------------------------------

class Progress:
    """The node's progress bar, with an optional preview picture per update."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total) if IN_COMFY else None
        self.total = total

    def update(self, value: int, preview: Optional[Callable[[], Any]] = None) -> None:
        """`preview()` makes a PIL image; it is only called when ComfyUI will show it."""
        if self.bar is not None:
            picture = preview() if preview is not None else None
            self.bar.update_absolute(value, self.total,
                                     ("JPEG", picture, PREVIEW_MAX_SIZE) if picture is not None else None)


def save_temp_pictures(pictures: list, prefix: str) -> list[dict]:
    """PIL pictures saved to ComfyUI's temp folder, as the entries a node's UI output lists
    ({filename, subfolder, type}); the front end fetches them through /view. None outside ComfyUI."""
    if not IN_COMFY:
        return []
    folder, run = folder_paths.get_temp_directory(), uuid.uuid4().hex[:12]
    os.makedirs(folder, exist_ok=True)
    entries = []
    for i, picture in enumerate(pictures):
        name = f"{prefix}_{run}_{i:02d}.png"
        picture.save(os.path.join(folder, name), compress_level=1)
        entries.append({"filename": name, "subfolder": "", "type": "temp"})
    return entries


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed cancel."""
    if IN_COMFY:
        mm.throw_exception_if_processing_interrupted()
