"""Sharded checkpoint folders, in transformers' layout: an index JSON whose `weight_map` names the
shard file of every tensor, beside the shards (.safetensors or PyTorch .bin). Infinity-8B ships so.

Shards are read one at a time through `checkpoint.read_state_dict` (memory-mapped, no code run),
and each tensor is handed to `place` (which moves it to its device and dtype) before the next
shard is opened, so at most one shard is held beyond the weights kept.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable, Optional

import torch

from ..errors import CheckpointError
from .checkpoint import read_state_dict

log = logging.getLogger(__name__)

INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

Place = Callable[[str, torch.Tensor], torch.Tensor]


def find_index(folder: str) -> Optional[str]:
    """The index file of a sharded folder, or None if the folder has none."""
    return next((os.path.join(folder, n) for n in INDEX_NAMES if os.path.isfile(os.path.join(folder, n))), None)


def _weight_map(index: str) -> dict[str, str]:
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{index}: not a readable shard index ({exc}). Download it again.") from None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index}: has no \"weight_map\" of tensor names to shard files. Download it again.")
    escaping = sorted({s for s in weight_map.values() if os.path.basename(s) != s or s in ("", ".", "..")})
    if escaping:
        raise CheckpointError(f"{index}: shard names must be files beside the index, got {', '.join(escaping[:3])}.")
    return weight_map


def read_sharded_state_dict(folder: str, place: Place = lambda name, tensor: tensor) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded folder by name, each passed through `place(name, tensor)`.

    Tensors the index lists but its shard lacks, and shard files that are absent, are errors
    naming the index. A tensor found in a shard other than the one the index names for it is a
    stray copy: the index's is used, with a warning. Tensors a shard holds beyond the index are kept
    (as transformers does), for the caller's key check to judge."""
    index = find_index(folder)
    if index is None:
        found = sorted(os.listdir(folder))[:8] if os.path.isdir(folder) else []
        raise CheckpointError(f"{folder}: a folder with no shard index ({' or '.join(INDEX_NAMES)}); it holds "
                              f"{', '.join(found) or 'nothing'}. Give the folder as downloaded, index file included.")
    weight_map = _weight_map(index)
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    absent = [s for s in sorted(by_shard) if not os.path.isfile(os.path.join(folder, s))]
    if absent:
        raise CheckpointError(f"{index}: lists shard files that are not in the folder: {', '.join(absent[:5])}"
                              f"{f' ... ({len(absent)} in all)' if len(absent) > 5 else ''}. Download them again.")
    state: dict[str, torch.Tensor] = {}
    strays: list[str] = []
    for shard in sorted(by_shard):
        tensors = read_state_dict(os.path.join(folder, shard))
        lacking = [n for n in by_shard[shard] if n not in tensors]
        if lacking:
            raise CheckpointError(f"{index}: says {shard} holds {', '.join(lacking[:5])}"
                                  f"{f' ... ({len(lacking)} in all)' if len(lacking) > 5 else ''}, but it does not. "
                                  "The shard or the index is damaged or from another download: download both again.")
        for name in list(tensors):
            tensor = tensors.pop(name)
            if weight_map.get(name, shard) != shard:  # a second copy: the index says which one is meant
                strays.append(f"{name} (in {shard}; the index names {weight_map[name]})")
            elif name not in state:
                state[name] = place(name, tensor)
        del tensors
    if strays:
        log.warning("%s: %d tensor(s) also appear in a shard the index does not name for them; the copies the "
                    "index names were used: %s", index, len(strays), ", ".join(strays[:5]) +
                    (f" ... ({len(strays)} in all)" if len(strays) > 5 else ""))
    return state


def checkpoint_bytes(path: str) -> int:
    """Bytes on disk of a weight file, or of all shards of a sharded folder."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    index = find_index(path)
    shards = set(_weight_map(index).values()) if index else set()
    return sum(os.path.getsize(os.path.join(path, s)) for s in shards if os.path.isfile(os.path.join(path, s)))


def write_sharded(state: dict[str, torch.Tensor], folder: str, shards: int, safetensors: bool = True) -> str:
    """Write `state` as a sharded folder named as transformers names it (tiny models and tests);
    returns the index path. Tensors are split in order, about equally by count."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    names = list(state)
    stem, ext = ("model", ".safetensors") if safetensors else ("pytorch_model", ".bin")
    weight_map = {}
    for i in range(shards):
        part = {n: state[n].contiguous() for n in names[i * len(names) // shards:(i + 1) * len(names) // shards]}
        shard = f"{stem}-{i + 1:05d}-of-{shards:05d}{ext}"
        save_file(part, os.path.join(folder, shard)) if safetensors else torch.save(part, os.path.join(folder, shard))
        weight_map.update(dict.fromkeys(part, shard))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = os.path.join(folder, INDEX_NAMES[0] if safetensors else INDEX_NAMES[1])
    with open(index, "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    return index
