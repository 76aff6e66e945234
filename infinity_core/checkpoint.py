"""Reading weight files safely and checking them against what a model expects.

Safetensors files are memory-mapped; `.pth` files go through `torch.load(weights_only=True,
mmap=True)`, which refuses any pickle that would run code. Neither path holds a second full copy.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Iterable, Mapping

import torch

from .errors import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, by name, without running any code stored in it."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file.")
    if path.lower().endswith(SAFETENSORS_SUFFIXES):
        return _read_safetensors(path)
    return _read_pickle(path)


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}). "
                              "The file may be truncated: download it again.") from exc


def _read_pickle(path: str) -> dict[str, torch.Tensor]:
    mmap = zipfile.is_zipfile(path)  # only the zip format can be memory-mapped
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load. The file holds Python objects beyond plain tensors, and "
            "loading it could run code. Use the released checkpoint or convert it to "
            f".safetensors. (torch said: {str(exc).splitlines()[0]})") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc}). "
                              "The file may be truncated: download it again.") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors.")
    return dict(obj)


def unwrap(state: dict, entry: str) -> dict:
    """The state dict inside `state[entry]` when the file wraps it (as the VAE file does)."""
    inner = state.get(entry)
    return dict(inner) if isinstance(inner, Mapping) else state


def check_state_dict(path: str, state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple],
                     what: str, optional: Iterable[str] = ()) -> None:
    """Raise a CheckpointError naming the file, what was expected and the first keys that do
    not fit, unless `state` has exactly the expected keys and shapes (`optional` may be absent)."""
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})"
                   for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    not_tensor = [k for k, v in state.items() if k in expected and not isinstance(v, torch.Tensor)]
    if not (missing or unexpected or wrong_shape or not_tensor):
        return
    lines = [f"{path}: this is not {what}."]
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong_shape), ("not a tensor", not_tensor)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")
            lines.append(f"  {label}: {shown}")
    lines.append("Pick the right file for this slot (see the README's model table).")
    raise CheckpointError("\n".join(lines))


def drop_zero_buffers(path: str, state: dict, names: Iterable[str]) -> dict:
    """Remove saved constant buffers we do not keep, checking they hold the value they must."""
    state = dict(state)
    for name in names:
        tensor = state.pop(name, None)
        if tensor is not None and torch.count_nonzero(tensor).item() != 0:
            raise CheckpointError(f"{path}: buffer {name} should be all zeros; the file is damaged "
                                  "or not an Infinity checkpoint.")
    return state


GGUF_MAGIC = b"GGUF"


def is_gguf(path: str) -> bool:
    """Whether a file is GGUF, from its first four bytes (whatever its name says)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False
