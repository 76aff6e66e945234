"""Layers whose weights are stored below the compute precision (the `operations` seam).

`LowBitOps` is the layer factory the models are built with when weights are fp8 or GGML blocks
from a GGUF file: a Linear's weight stays in its storage form on the device and is decoded to
the input's dtype at each call, one layer at a time, so only one layer's full-precision weight
exists at once (as ComfyUI's `manual_cast` and ComfyUI-GGUF's ops do).

Raw GGML blocks are kept as int8 bytes, as bitsandbytes keeps its 8-bit weights, so code that
casts activations to a layer's float weight dtype (Hugging Face's T5) leaves them alone.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .ggml import Quantized, dequantize


class _HoldsBlocks:
    """Mixin: `weight` may hold raw GGML blocks (qtype set) instead of a float tensor."""
    qtype: Optional[int] = None
    weight_shape: tuple = ()

    def hold(self, q: Quantized) -> None:
        self.weight = nn.Parameter(q.data.view(torch.int8), requires_grad=False)
        self.qtype, self.weight_shape = q.qtype, tuple(q.shape)

    def decoded_weight(self, dtype: torch.dtype, device) -> torch.Tensor:
        weight = self.weight.to(device)
        if self.qtype is None:
            return weight.to(dtype)
        return dequantize(weight.view(torch.uint8), self.qtype, self.weight_shape, dtype)


class Linear(_HoldsBlocks, nn.Linear):
    """Computes in the input's dtype whatever the weight's storage (fp8, GGML blocks, bf16...).

    compute_dtype, when set, overrides that: Hugging Face keeps T5's `wo` in fp32 for fp16 runs."""
    compute_dtype: Optional[torch.dtype] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is not None:
            x = x.to(self.compute_dtype)
        bias = None if self.bias is None else self.bias.to(x)
        return F.linear(x, self.decoded_weight(x.dtype, x.device), bias)


class Embedding(_HoldsBlocks, nn.Embedding):
    """Looks up rows; GGML blocks never cross rows, so only the rows asked for are decoded."""
    out_dtype: torch.dtype = torch.float32

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.qtype is None:
            return super().forward(ids)
        rows = self.weight[ids.to(self.weight.device)].view(torch.uint8)
        return dequantize(rows, self.qtype, (*ids.shape, self.weight_shape[-1]), self.out_dtype)


class LowBitOps:
    """The layer factory for fp8 / GGUF weights (ComfyUI's and ComfyUI-GGUF's ops play this
    role inside ComfyUI). `hold_quantized` puts raw blocks into a layer that can run them."""
    Linear = Linear
    Embedding = Embedding
    LayerNorm = nn.LayerNorm

    @staticmethod
    def hold_quantized(module: nn.Module, attr: str, q: Quantized) -> bool:
        if attr != "weight" or not isinstance(module, _HoldsBlocks):
            return False
        module.hold(q)
        return True

