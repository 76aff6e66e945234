"""Reading an Infinity transformer checkpoint into the network: a weight file (.pth, .safetensors or
GGUF) or a sharded folder (Infinity-8B), checked strictly against the architecture its shapes
describe."""
from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import CheckpointError, InfinityError
from ..network.config import config_from_state_dict
from ..network.transformer import InfinityTransformer, place_weights
from .checkpoint import check_state_dict, drop_zero_buffers, is_gguf, read_state_dict
from .ggml import Quantized
from .gguf_file import describe, read_gguf
from .lowbit import LowBitOps
from .sharded import find_index, read_sharded_state_dict

WHAT = "an Infinity transformer checkpoint (infinity_2b_reg, or an Infinity-8B weights folder)"
_REQUIRED_TOP = ("pos_start", "cfg_uncond", "text_norm.weight", "word_embed.weight",
                 "block_chunks.0.module.0.ffn.fc1.weight", "block_chunks.0.module.0.sa.scale_mul_1H11")


def _zero_buffer_names(state) -> list[str]:
    return [k for k in state if k.endswith("zero_k_bias")]


def _storage(device, dtype):
    """Where each tensor of a checkpoint goes: blocks to `dtype`, everything else to fp32 (as `place_weights`)."""
    def place(name: str, tensor):
        if not isinstance(tensor, torch.Tensor):
            return tensor  # the key check names it
        return tensor.to(device=device, dtype=dtype if name.startswith("block_chunks.") else torch.float32)
    return place


def load_transformer(path: str, device="cpu", dtype=torch.float32, operations=None,
                     storage: torch.dtype | None = None) -> InfinityTransformer:
    """Load a released Infinity checkpoint strictly: a weight file, or a sharded folder (Infinity-8B),
    read shard by shard. Blocks are cast to `dtype` (the compute precision); the text, embedding
    and head modules stay fp32, as in the reference.

    A GGUF file (found by its first bytes) keeps its quantized Linear weights quantized; they
    are decoded per layer at each call. `storage` (torch.float8_e4m3fn) stores the blocks'
    Linear weights in that dtype instead, computing in `dtype`. Both need layers that decode
    at use: `operations` (ComfyUI's) when given, else the pack's own `LowBitOps`."""
    gguf = is_gguf(path)
    if gguf or storage is not None:
        operations = operations or LowBitOps
    if os.path.isdir(path):
        state = read_sharded_state_dict(path, _storage(device, dtype))
        path = find_index(path)  # messages below name the shard index
    else:
        state = _read_gguf_state(path) if gguf else read_state_dict(path)
    require_transformer(path, state, gguf)
    state = drop_zero_buffers(path, state, _zero_buffer_names(state))
    return transformer_from_state(state, path, device, dtype, operations, storage)


def transformer_from_state(state: dict, path: str, device="cpu", dtype=torch.float32, operations=None,
                           storage: torch.dtype | None = None) -> InfinityTransformer:
    """The model of a checkpoint's tensors (`ggml.Quantized` entries are held quantized, as a GGUF
    file's are); `path` names the source in messages. See `load_transformer`."""
    if storage is not None or any(not isinstance(v, torch.Tensor) for v in state.values()):
        operations = operations or LowBitOps
    try:
        cfg = config_from_state_dict(state)
    except InfinityError as exc:
        raise CheckpointError(f"{path}: {exc} The file is not a complete {WHAT}.") from None
    model = InfinityTransformer(cfg, operations)
    # shapes from plain layers: some layer factories (ComfyUI-GGUF's) list no weight before loading
    expected = {k: tuple(v.shape) for k, v in InfinityTransformer(cfg).state_dict().items()}
    used = check_state_dict(path, _shapes_only(state), expected, WHAT)  # extra tensors: skipped with a warning
    floats = _hold_quantized(model, {k: state[k] for k in used}, operations)
    del state
    model.load_state_dict(floats, strict=len(floats) == len(used), assign=True)  # all keys were checked above
    del floats
    return place_weights(model, device, dtype, storage)


def require_transformer(path: str, state: dict, gguf: bool = False) -> None:
    """Refuse a file that is not an Infinity transformer at all (a VAE, a T5 ...), naming what it holds."""
    missing = [k for k in _REQUIRED_TOP if k not in state]
    if missing:
        found = describe(path, state) if gguf else f"the file starts with: {', '.join(list(state)[:5]) or '(no tensors)'}"
        raise CheckpointError(
            f"{path}: this is not {WHAT}.\n  missing: {', '.join(missing)}\n  {found}\n"
            "Pick the transformer (infinity_2b_reg.pth, or the infinity_8b_weights folder) for this slot; "
            "VAE and T5 files go in their own slots." + (_GGUF_NAMES if gguf else ""))


_GGUF_NAMES = ("\nGGUF files must name their tensors as the checkpoint does (block_chunks.0.module.0.sa.mat_qkv.weight "
               "...); make one with `python3 -m infinity_core gguf`.")


def _read_gguf_state(path: str) -> dict:
    state = read_gguf(path)
    for name in _zero_buffer_names(state):  # checked for zeros as plain tensors
        if isinstance(state[name], Quantized):
            state[name] = state[name].dequantize()
    return state


def _shapes_only(state: dict) -> dict:
    """Quantized entries as meta tensors of their logical shape, for the key and shape check."""
    return {k: v if isinstance(v, torch.Tensor) else torch.empty(v.shape, device="meta") for k, v in state.items()}


def _hold_quantized(model: nn.Module, state: dict, operations) -> dict:
    """Hand quantized weights to the layers that decode them per call (what the layer factory's
    `hold_quantized` accepts); decode the others (raw parameters, or everything for a factory
    without it) now. Returns the float tensors left to load."""
    hold = getattr(operations, "hold_quantized", lambda module, attr, q: False)
    rest = {}
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            rest[name] = value
            continue
        owner, attr = name.rpartition(".")[::2]
        if not hold(model.get_submodule(owner), attr, value):
            rest[name] = value.dequantize()
    return rest


