"""GGUF weight files: reading them into tensors and raw quantized blocks, and writing them.

Reading needs the optional `gguf` package (`pip install gguf`). Tensor names are the
checkpoint's own (`block_chunks.0.module.0.sa.mat_qkv.weight`), with GGUF's shape order (the
reverse of torch's). Float tensors (F32, F16, BF16) come back as torch tensors; block-quantized
ones as `ggml.Quantized`, which the layers decode per call. `python3 -m infinity_core gguf` writes
one from a checkpoint (`write_gguf`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..errors import CheckpointError, InfinityError
from .ggml import BF16, F16, F32, Quantized

ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."  # ComfyUI-GGUF's override of a tensor's logical shape
QUANTIZABLE = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "BF16")  # what the gguf package can write


def _gguf():
    try:
        import gguf
    except ImportError:
        raise InfinityError("Reading GGUF files needs the gguf package: run `pip install gguf` in ComfyUI's "
                            "Python, then restart ComfyUI.") from None
    return gguf


def open_gguf(path: str):
    gguf = _gguf()
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable GGUF file ({exc}). The file may be truncated: "
                              "download it again.") from exc


def field_value(reader, key: str):
    """A metadata value of a GGUF file: a str, a number, a list of them, or None when absent.
    (Written out here: `ReaderField.contents()` is newer than the oldest gguf the pack takes.)"""
    gguf = _gguf()
    field = reader.fields.get(key)
    if field is None or not field.types:
        return None
    values = [field.parts[i] for i in field.data]
    if field.types[-1] == gguf.GGUFValueType.STRING:
        values = [bytes(v).decode("utf-8", "replace") for v in values]
    else:
        values = [v.tolist()[0] for v in values]
    return values if field.types[0] == gguf.GGUFValueType.ARRAY else values[0]


def architecture(reader) -> str:
    return field_value(reader, "general.architecture") or "(none given)"


def read_gguf(path: str, reader=None) -> dict[str, torch.Tensor | Quantized]:
    """Every tensor of a GGUF file by name, in torch's shape order, copied out of the mapping
    (`reader`: the file already opened with `open_gguf`, whose metadata can take seconds to read)."""
    reader = reader or open_gguf(path)
    state = {}
    for tensor in reader.tensors:
        shape = field_value(reader, ORIG_SHAPE_KEY + tensor.name) or [int(n) for n in reversed(tensor.shape)]
        data = torch.from_numpy(np.array(tensor.data))  # a private copy: the mapping is read-only
        qtype = int(tensor.tensor_type)
        if qtype in (F32, F16):
            state[tensor.name] = data.reshape(shape)
        elif qtype == BF16:
            state[tensor.name] = data.view(torch.bfloat16).reshape(shape)
        elif data.dtype == torch.uint8:
            state[tensor.name] = Quantized(data.reshape(-1, data.shape[-1]), qtype, tuple(shape))
        else:  # F64 and the integer types: no Infinity or T5 weight is stored so
            raise CheckpointError(f"{path}: tensor {tensor.name} has GGUF type {tensor.tensor_type.name}, which "
                                  "is not a weight format. Use a file quantized from the released checkpoint.")
    return state


def describe(path: str, state: Mapping, reader=None) -> str:
    """One line saying what a GGUF file holds, for errors."""
    names = list(state)
    shown = ", ".join(names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")
    return f"this GGUF file (architecture {architecture(reader or open_gguf(path))}) holds: {shown or '(no tensors)'}"


def write_gguf(path: str, state: Mapping[str, torch.Tensor], qtype: str = "Q8_0", arch: str = "infinity") -> dict:
    """Write `state` as a GGUF file, 2-D weights whose rows split into whole blocks in `qtype`
    (as llama.cpp's quantizers do), the rest in F32. Returns {name: type written}."""
    gguf = _gguf()
    target = gguf.GGMLQuantizationType[qtype]
    elements = gguf.GGML_QUANT_SIZES[target][0]
    writer = gguf.GGUFWriter(path, arch=arch)
    written = {}
    for name, tensor in state.items():
        array = tensor.detach().float().cpu().numpy()
        if array.ndim == 2 and array.shape[-1] % elements == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, target), raw_dtype=target)
            written[name] = qtype
        else:
            writer.add_tensor(name, array)
            written[name] = "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written
