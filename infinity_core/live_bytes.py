"""The most bytes of tensors alive at once while a computation runs, found by running it on the
meta device (shapes only, nothing allocated) and following every tensor it makes.

A tensor's storage counts from the op that makes it until the last tensor viewing it is freed;
in-place ops make nothing. What a kernel allocates inside itself (scratch space, an attention
kernel's tiles) is not seen, and neither is the allocator's slack: this is the floor a real run
sits a little above (see docs/memory.md for how far, measured).
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, list[int]] = {}  # storage -> [tensors viewing it, bytes]
        self._followed: set[int] = set()  # ids of the tensors followed (an in-place op returns its input)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in self._followed:
                self._follow(t)
        return out

    def _follow(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self._storages:
            self._storages[key] = [0, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._storages[key][0] += 1
        self._followed.add(id(t))
        weakref.finalize(t, self._release, key, id(t))

    def _release(self, key: int, tensor_id: int) -> None:
        self._followed.discard(tensor_id)
        entry = self._storages[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._storages[key]


def peak_bytes(fn: Callable[[], object]) -> int:
    """The most bytes of tensors made by `fn()` (on meta tensors) alive at once; its result is
    dropped before returning, so it counts as alive at the end too."""
    with torch.no_grad(), LiveBytes() as tracer:
        result = fn()
        del result
    return tracer.peak
