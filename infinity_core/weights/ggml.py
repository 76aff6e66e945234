"""GGML block-quantized tensors (the payload of GGUF files) and their dequantization in torch.

A quantized tensor is kept as its raw blocks: a uint8 tensor [rows, bytes per row] in the file's
layout, plus its GGML type and its logical (torch-order) shape. Dequantizing runs on whatever
device the blocks are on. The types below are decoded in torch; any other type GGUF knows is
decoded by the `gguf` package on the CPU (correct, slow: a warning says so once per type).
Block layouts follow ggml's `ggml-quants.c`; tests check every decoder against `gguf.quants`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

# GGML type ids (gguf.GGMLQuantizationType), named here so the decoders need no import
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 10, 11, 12, 13, 14, 30
QK_K = 256  # elements per K-quant super-block


@dataclass
class Quantized:
    """The raw blocks of one tensor as read from a GGUF file."""
    data: torch.Tensor            # uint8 [rows, bytes per row]
    qtype: int                    # GGML type id
    shape: tuple[int, ...]        # logical shape, torch order

    @property
    def type_name(self) -> str:
        return type_name(self.qtype)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        return dequantize(self.data, self.qtype, self.shape, dtype)


def type_name(qtype: int) -> str:
    import gguf
    try:
        return gguf.GGMLQuantizationType(qtype).name
    except ValueError:
        return f"type {qtype}"


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 scale stored at byte `start` of each block, as [n, 1] fp32."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """[n, k] bytes -> [n, 2k]: the low nibbles of all bytes, then the high nibbles."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=1)


def _bits(qh: torch.Tensor, count: int) -> torch.Tensor:
    """[n, 4] little-endian 32-bit words -> [n, count] of their low `count` bits (0/1)."""
    word = qh.to(torch.int64)
    word = word[:, 0] | word[:, 1] << 8 | word[:, 2] << 16 | word[:, 3] << 24
    return (word[:, None] >> torch.arange(count, device=qh.device)) & 1


def _q8_0(b):
    return _f16(b, 0) * b[:, 2:].contiguous().view(torch.int8).float()


def _q4_0(b):
    return _f16(b, 0) * (_nibbles(b[:, 2:]).float() - 8)


def _q4_1(b):
    return _f16(b, 0) * _nibbles(b[:, 4:]).float() + _f16(b, 2)


def _q5_0(b):
    q = _nibbles(b[:, 6:]).to(torch.int64) | (_bits(b[:, 2:6], 32) << 4)
    return _f16(b, 0) * (q.float() - 16)


def _q5_1(b):
    q = _nibbles(b[:, 8:]).to(torch.int64) | (_bits(b[:, 4:8], 32) << 4)
    return _f16(b, 0) * q.float() + _f16(b, 2)


def _k_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit (scale, min) pairs packed in 12 bytes (Q4_K, Q5_K), each [n, 8]."""
    lo, hi, mix = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scale = torch.cat([lo & 63, (mix & 0x0F) | ((lo >> 6) << 4)], dim=1)
    minimum = torch.cat([hi & 63, (mix >> 4) | ((hi >> 6) << 4)], dim=1)
    return scale.float(), minimum.float()


def _k_expand(per_sub: torch.Tensor, width: int) -> torch.Tensor:
    """[n, s] per-sub-block values -> [n, s * width], each repeated over its sub-block."""
    return per_sub.repeat_interleave(width, dim=1)


def _q4_k(b):
    d, dmin = _f16(b, 0), _f16(b, 2)
    scale, minimum = _k_scales(b[:, 4:16])
    qs = b[:, 16:].reshape(-1, 4, 32)  # 4 chunks of 64 elements: low nibbles, then high nibbles
    q = torch.cat([qs & 0x0F, qs >> 4], dim=2).reshape(-1, QK_K).float()
    return d * _k_expand(scale, 32) * q - dmin * _k_expand(minimum, 32)


def _q5_k(b):
    d, dmin = _f16(b, 0), _f16(b, 2)
    scale, minimum = _k_scales(b[:, 4:16])
    qh, qs = b[:, 16:48], b[:, 48:].reshape(-1, 4, 32)
    low = torch.cat([qs & 0x0F, qs >> 4], dim=2)                        # [n, 4, 64]
    shifts = torch.arange(8, device=b.device, dtype=torch.uint8).view(1, 4, 2, 1)
    high = ((qh[:, None, None, :] >> shifts) & 1).reshape(-1, 4, 64)  # bit 2c / 2c+1 of qh
    q = (low | (high << 4)).reshape(-1, QK_K).float()
    return d * _k_expand(scale, 32) * q - dmin * _k_expand(minimum, 32)


def _q6_k(b):
    ql, qh = b[:, :128].reshape(-1, 2, 2, 32), b[:, 128:192].reshape(-1, 2, 1, 32)
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    d = _f16(b, 208)
    low = torch.cat([ql & 0x0F, ql >> 4], dim=2)                        # [n, 2 halves, 4, 32]
    shifts = torch.tensor([0, 2, 4, 6], device=b.device, dtype=torch.uint8).view(1, 1, 4, 1)
    high = (qh >> shifts) & 3
    q = (low | (high << 4)).reshape(-1, QK_K).float() - 32
    return d * _k_expand(scales, 16) * q


# type -> (elements per block, bytes per block, decoder of [n, bytes] -> [n, elements] fp32)
DECODERS = {
    Q8_0: (32, 34, _q8_0), Q4_0: (32, 18, _q4_0), Q4_1: (32, 20, _q4_1),
    Q5_0: (32, 22, _q5_0), Q5_1: (32, 24, _q5_1),
    Q4_K: (QK_K, 144, _q4_k), Q5_K: (QK_K, 176, _q5_k), Q6_K: (QK_K, 210, _q6_k),
}
_warned: set = set()


def block_size(qtype: int) -> tuple[int, int]:
    """(elements, bytes) of one block of a GGML type."""
    if qtype in DECODERS:
        return DECODERS[qtype][:2]
    import gguf
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]


def dequantize(data: torch.Tensor, qtype: int, shape, dtype=torch.float32) -> torch.Tensor:
    """The tensor of `shape` that the raw blocks `data` encode, in `dtype`, on data's device."""
    if qtype in DECODERS:
        elements, nbytes, decode = DECODERS[qtype]
        blocks = data.reshape(-1, nbytes)
        return decode(blocks).to(dtype).reshape(shape)
    if qtype == BF16:
        return data.contiguous().view(torch.bfloat16).to(dtype).reshape(shape)
    import gguf
    if qtype not in _warned:
        _warned.add(qtype)
        warnings.warn(f"GGUF type {type_name(qtype)} is decoded on the CPU by the gguf package, which is slow; "
                      "Q8_0, Q6_K, Q5_K, Q5_0, Q4_K and Q4_0 files run faster.")
    values = gguf.quants.dequantize(data.cpu().numpy(), gguf.GGMLQuantizationType(qtype))
    return torch.from_numpy(values).to(data.device, dtype).reshape(shape)


def quantize_q8_0(tensor: torch.Tensor) -> Quantized:
    """A 2-D tensor (columns a multiple of 32) as Q8_0 blocks, byte for byte what ggml's reference
    quantizer (and the gguf package) writes: per 32 values an fp16 scale d = max|x| / 127 and the
    values x / d rounded half away from zero to int8. For making Q8_0 weights where the gguf
    package is not installed (bench/gpu_check.py)."""
    rows, cols = tensor.shape
    blocks = tensor.detach().float().reshape(-1, 32)
    d = blocks.abs().amax(dim=1, keepdim=True) / 127
    inverse = torch.where(d == 0, torch.zeros_like(d), 1 / d)
    scaled = blocks * inverse
    size = scaled.abs()
    whole = size.floor()
    q = (whole + (2 * (size - whole)).floor()).copysign(scaled).to(torch.int8)  # no 0.5 added: exact
    raw = torch.cat([d.to(torch.float16).view(torch.uint8), q.view(torch.uint8)], dim=1)
    return Quantized(raw.reshape(rows, cols // 32 * 34), Q8_0, (rows, cols))

