"""Reading weight files safely and checking them against what a model expects.

Safetensors files are memory-mapped; `.pth` files go through `torch.load(weights_only=True,
mmap=True)`, which refuses any pickle that would run code. Neither path holds a second full copy.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import zipfile
from typing import Iterable, Mapping

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)


GGUF_MAGIC = b"GGUF"


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, by name, without running any code stored in it. The format
    is read from the file's first bytes, whatever its name says."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: this is a folder; this slot takes one weight file (.pth or .safetensors).")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file.")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: the file is empty. Download it again.")
    kind = file_format(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind in ("zip", "pickle"):
        return _read_pickle(path)
    if kind == "gguf":
        raise CheckpointError(f"{path}: this is a GGUF file; only the transformer and the T5 encoder slots take "
                              "GGUF. Pick the .pth or .safetensors file for this slot.")
    if kind == "git-lfs":
        raise CheckpointError(f"{path}: this is a Git LFS pointer (a small text file), not the weights. "
                              "Download the file itself (its size is in the pointer).")
    raise CheckpointError(f"{path}: not a weight file: it is neither safetensors nor a PyTorch checkpoint "
                          "(by its first bytes). Pick the .pth or .safetensors file for this slot.")


def file_format(path: str) -> str:
    """'safetensors', 'zip' (torch.save's format), 'pickle' (the legacy one), 'gguf', 'git-lfs' or
    'unknown', from the file's first bytes: a safetensors file starts with its header's length
    then '{', a zip with 'PK', a pickle with protocol opcode 0x80 and GGUF with its magic."""
    with open(path, "rb") as f:
        head = f.read(32)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= os.path.getsize(path) - 8:
        return "safetensors"
    if head.startswith(b"PK"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if head.startswith(b"version https://git-lfs"):
        return "git-lfs"
    return "unknown"


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}). "
                              "The file may be truncated: download it again.") from exc


def _read_pickle(path: str) -> dict[str, torch.Tensor]:
    # torch.load reads a path named *.safetensors as safetensors: a pickle misnamed so goes in as
    # an open file, which cannot be memory-mapped (nor can the legacy, non-zip format)
    misnamed = path.lower().endswith(".safetensors")
    mmap = zipfile.is_zipfile(path) and not misnamed
    try:
        with open(path, "rb") if misnamed else contextlib.nullcontext(path) as source:
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
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
                     what: str, optional: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Raise a CheckpointError naming the file, what was expected and the first keys that do
    not fit, unless `state` has every expected key with its shape (`optional` may be absent).

    Tensors beyond the expected ones are loaded past with one warning naming them: the exact
    key sets of the released files are not known, and the reference loads them non-strictly.
    Returns the state without them."""
    optional = set(optional)
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k])})"
                   for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    not_tensor = [k for k, v in state.items() if k in expected and not isinstance(v, torch.Tensor)]
    if not (missing or wrong_shape or not_tensor):
        if unexpected:
            log.warning("%s: %d tensor(s) that %s does not use were skipped: %s", path, len(unexpected), what,
                        ", ".join(unexpected))
        return {k: v for k, v in state.items() if k in expected}
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


def is_gguf(path: str) -> bool:
    """Whether a file is GGUF, from its first bytes (whatever its name says)."""
    return os.path.isfile(path) and file_format(path) == "gguf"
