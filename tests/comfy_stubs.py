"""Stand-ins for the ComfyUI modules the pack touches, so node tests can take the pack's ComfyUI path
without ComfyUI: `comfy.model_management`, `comfy.utils.ProgressBar`, `comfy.model_patcher.ModelPatcher`,
`comfy.ops`, `folder_paths` and `comfy_api.latest`.

Names and signatures follow ComfyUI 0.8. `installed(...)` puts them in sys.modules only while a pack
is being imported (the pack keeps its references), so other tests still see a machine without
ComfyUI. `Recorder` keeps what the pack asked of them.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import torch

SUPPORTED_PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


class Recorder:
    def __init__(self):
        self.loads = []        # the ModelPatcher lists given to load_models_gpu
        self.full_loads = []   # ... and whether each asked for a whole (not low-VRAM partial) load
        self.memory_required = []  # ... and the bytes each asked to keep free
        self.progress = []     # (value, total, preview) per ProgressBar update
        self.on_progress = None  # called after each update; a test may set the interrupt flag here
        self.interrupted = False


def _model_management(rec: Recorder):
    mm = types.ModuleType("comfy.model_management")

    class InterruptProcessingException(Exception):
        pass

    cpu = torch.device("cpu")
    mm.InterruptProcessingException = InterruptProcessingException
    for name in ("get_torch_device", "unet_offload_device", "vae_device", "vae_offload_device",
                 "text_encoder_device", "text_encoder_offload_device", "intermediate_device"):
        setattr(mm, name, lambda: cpu)
    mm.unet_dtype = lambda device=None, model_params=0, supported_dtypes=(), weight_dtype=None: torch.float32
    mm.vae_dtype = lambda device=None, allowed_dtypes=(): torch.float32
    mm.text_encoder_dtype = lambda device=None: torch.float16  # as ComfyUI answers on a CPU
    mm.supports_dtype = lambda device, dtype: dtype == torch.float32  # ... and what it says a CPU can run

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        rec.loads.append(list(models))
        rec.full_loads.append(force_full_load)
        rec.memory_required.append(memory_required)
        for patcher in models:
            patcher.model.to(patcher.load_device)
            patcher.model.device = patcher.load_device  # as ComfyUI's ModelPatcher.load does

    def interrupt_current_processing(value=True):
        rec.interrupted = value

    def throw_exception_if_processing_interrupted():
        if rec.interrupted:
            rec.interrupted = False
            raise InterruptProcessingException()

    mm.load_models_gpu = load_models_gpu
    mm.interrupt_current_processing = interrupt_current_processing
    mm.processing_interrupted = lambda: rec.interrupted
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    return mm


def _utils(rec: Recorder):
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0

        def update_absolute(self, value, total=None, preview=None):
            self.total = total if total is not None else self.total
            self.current = min(value, self.total)
            rec.progress.append((self.current, self.total, preview))
            if rec.on_progress is not None:
                rec.on_progress(self.current)

    utils.ProgressBar = ProgressBar
    return utils


def _model_patcher():
    module = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device
            if getattr(model, "device", None) is None:
                model.device = offload_device  # ComfyUI writes this attribute

    module.ModelPatcher = ModelPatcher
    return module


def _ops():
    ops = types.ModuleType("comfy.ops")

    class disable_weight_init:  # noqa: N801 (ComfyUI's name)
        pass

    for name in ("Linear", "Conv2d", "GroupNorm", "LayerNorm", "Embedding"):
        layer = type(name, (getattr(torch.nn, name),), {"comfy_cast_weights": False})
        setattr(disable_weight_init, name, layer)
    class manual_cast(disable_weight_init):  # noqa: N801: weights cast to the input's dtype at each call
        class Linear(torch.nn.Linear):
            comfy_cast_weights = True

            def forward(self, x):
                bias = None if self.bias is None else self.bias.to(x.dtype)
                return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias)

    ops.disable_weight_init = disable_weight_init
    ops.manual_cast = manual_cast
    return ops


def _folder_paths(models_dir: str, user_paths: dict):
    fp = types.ModuleType("folder_paths")
    fp.models_dir = models_dir
    fp.supported_pt_extensions = SUPPORTED_PT_EXTENSIONS
    fp.folder_names_and_paths = {
        "vae": ([os.path.join(models_dir, "vae")], SUPPORTED_PT_EXTENSIONS),
        "text_encoders": ([os.path.join(models_dir, "text_encoders"), os.path.join(models_dir, "clip")],
                          SUPPORTED_PT_EXTENSIONS),
    }

    def add_model_folder_path(folder_name, full_folder_path, is_default=False):
        if folder_name in fp.folder_names_and_paths:
            paths, _ = fp.folder_names_and_paths[folder_name]
            if full_folder_path not in paths:
                paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)
        else:
            fp.folder_names_and_paths[folder_name] = ([full_folder_path], set())

    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = lambda folder_name: fp.folder_names_and_paths[folder_name][0][:]
    fp.get_temp_directory = lambda: models_dir + "_temp"
    for name, paths in user_paths.items():  # what extra_model_paths.yaml adds, before custom nodes load
        for path in paths:
            add_model_folder_path(name, path)
    return fp


def _comfy_api(pack_dir: Path):
    """comfy_api.latest with the pack's own io mirror: what this exercises is the import path."""
    spec = importlib.util.spec_from_file_location("_comfy_stub_io", pack_dir / "nodes" / "_api.py")
    mirror = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mirror  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(mirror)
    finally:
        del sys.modules[spec.name]
    latest = types.ModuleType("comfy_api.latest")
    latest.io, latest.ComfyExtension = mirror.io, mirror.ComfyExtension
    return latest


def comfyui_gguf_ops(comfy_ops) -> types.ModuleType:
    """A stand-in for ComfyUI-GGUF's `ops` module (city96/ComfyUI-GGUF 795e4515, Apache-2.0), with what
    the pack relies on and the behaviour under test: `GGMLTensor` (raw blocks whose `.shape` is the
    logical shape) and `GGMLOps.Linear`, which decodes Q8_0 / Q4_0 blocks at each call with the fp16
    scale cast to its class attribute `dequant_dtype` (None, its default, leaves the arithmetic in
    fp16) and then casts the weight to the input's dtype."""
    module = types.ModuleType("ComfyUI-GGUF.ops")

    class GGMLTensor(torch.Tensor):
        def __new__(cls, data, *, tensor_type, tensor_shape):
            return super().__new__(cls, data)

        def __init__(self, data, *, tensor_type, tensor_shape):
            super().__init__()
            self.tensor_type, self.tensor_shape = tensor_type, tensor_shape

        def to(self, *args, **kwargs):  # as ComfyUI-GGUF's (`param.data` carries no attributes)
            moved = super().to(*args, **kwargs)
            moved.tensor_type = getattr(self, "tensor_type", None)
            moved.tensor_shape = getattr(self, "tensor_shape", moved.data.shape)
            return moved

        def detach(self, *args, **kwargs):  # as ComfyUI-GGUF's: nn.Parameter(tensor) keeps the attributes
            return self

        @property
        def shape(self):
            return getattr(self, "tensor_shape", self.size())

    def dequantize(blocks: torch.Tensor, qtype: int, shape, dtype):
        import gguf
        elements, nbytes = gguf.GGML_QUANT_SIZES[qtype]
        blocks = blocks.view(torch.uint8).reshape(-1, nbytes)
        d = blocks[:, :2].contiguous().view(torch.float16).to(dtype)
        if qtype == gguf.GGMLQuantizationType.Q8_0:
            q = blocks[:, 2:].contiguous().view(torch.int8)
        else:  # Q4_0: low nibbles are elements 0-15, high nibbles 16-31
            q = (torch.cat([blocks[:, 2:] & 0x0F, blocks[:, 2:] >> 4], dim=1)).to(torch.int8) - 8
        return (d * q).reshape(shape)

    class GGMLOps(comfy_ops.manual_cast):
        class Linear(torch.nn.Linear):
            dequant_dtype = None

            def forward(self, x):
                weight = self.weight
                if isinstance(weight, GGMLTensor):
                    blocks = weight.as_subclass(torch.Tensor)
                    weight = dequantize(blocks, weight.tensor_type, weight.tensor_shape, self.dequant_dtype)
                bias = None if self.bias is None else self.bias.to(x.dtype)
                return torch.nn.functional.linear(x, weight.to(x.dtype), bias)

    module.GGMLTensor, module.GGMLOps = GGMLTensor, GGMLOps
    return module


@contextlib.contextmanager
def installed(pack_dir: Path, models_dir: str, user_paths: dict | None = None):
    """sys.modules holds the stand-ins inside the block; yields the Recorder and the modules."""
    rec = Recorder()
    comfy, comfy_api = types.ModuleType("comfy"), types.ModuleType("comfy_api")
    modules = {
        "comfy": comfy, "comfy.model_management": _model_management(rec), "comfy.utils": _utils(rec),
        "comfy.model_patcher": _model_patcher(), "comfy.ops": _ops(),
        "folder_paths": _folder_paths(models_dir, user_paths or {}),
        "comfy_api": comfy_api, "comfy_api.latest": _comfy_api(pack_dir),
    }
    for name in ("model_management", "utils", "model_patcher", "ops"):
        setattr(comfy, name, modules[f"comfy.{name}"])
    comfy_api.latest = modules["comfy_api.latest"]
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield rec, types.SimpleNamespace(**{name.replace(".", "_"): m for name, m in modules.items()})
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
