"""Multi-scale binary spherical quantisation (BSQ) of the VAE latent: d bits per position (d = 32
for infinity_vae_d32reg, 14 for the 8B's patchify VAE), all on the VAE's latent grid.

A latent [B, d, H, W] becomes one bit tensor [B, 1, h, w, d] per scale (h, w) of a schedule
(`encode_bits`); bits come back as codes, summed over scales at the final size (`summed_codes`).
How tokens map onto this grid is `patchify.py`'s job.

Layout matters for rounding: trilinear interpolation on CPU rounds differently (by ~1 ulp) for a
channels-last tensor than for a contiguous one, and a 1-ulp change in the residual can flip a later
bit. The reference keeps codes in channels-last layout (a permuted view of [B, 1, h, w, d]), so
these functions do too; `BSQVAE.decode` makes its input contiguous.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import InfinityError

CODEBOOK_DIMS = (32, 14)  # bits per latent position of the released VAEs


def _check_dim(d: int, what: str, shape) -> None:
    if d not in CODEBOOK_DIMS:
        raise InfinityError(f"Expected {what} with {' or '.join(map(str, CODEBOOK_DIMS))} bits per latent "
                            f"position, got shape {tuple(shape)}.")


def resize(x: torch.Tensor, size_thw: Sequence[int]) -> torch.Tensor:
    """Trilinear resize of [B, C, T, H, W] to `size_thw` (align_corners=False, no antialias)."""
    return F.interpolate(x, size=tuple(size_thw), mode="trilinear", align_corners=False)


def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
    """Bits [B, 1, h, w, d] or [B, h, w, d] of 0/1 -> codes [B, d, 1, h, w] float32, each +-1/sqrt(d)
    (unit norm per position).

    The result is a permuted view of the bits' layout; keep it so (see the module docstring).
    """
    if bits.ndim == 4:
        bits = bits.unsqueeze(1)
    if bits.ndim != 5:
        raise InfinityError(f"Expected bits of shape [B, 1, h, w, d], got {tuple(bits.shape)}.")
    _check_dim(bits.shape[-1], "bits", bits.shape)
    scale = 1 / math.sqrt(bits.shape[-1])
    codes = bits.float() * scale * 2 - scale
    codes = F.normalize(codes, dim=-1)  # a no-op up to rounding, but the reference does it
    return codes.permute(0, 4, 1, 2, 3)


def summed_codes(bits_list: Sequence[torch.Tensor], scales: Sequence[Sequence[int]]) -> torch.Tensor:
    """Sum of the codes of every scale, resized to the final size: [B, d, 1, H, W].

    The same accumulation as the sampler: non-last scales are resized, the last is added as is.
    """
    if len(bits_list) != len(scales) or not scales:
        raise InfinityError(f"Got bits for {len(bits_list)} scales but a schedule of {len(scales)}.")
    final = (1, *scales[-1])
    total = 0
    for si, bits in enumerate(bits_list):
        codes = bits_to_codes(bits)
        total = total + (codes if si == len(scales) - 1 else resize(codes, final))
    return total


def encode_bits(latent: torch.Tensor, scales: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Latent [B, d, H, W] -> per-scale bits [B, 1, h, w, d] uint8 (the residual loop).

    Each scale quantises the residual, area-downsampled to its size, to the sign of each channel
    (+1 if > 0, else -1) after L2 normalisation; the code, resized back up, leaves the residual.
    """
    B, C, H, W = latent.shape
    _check_dim(C, "a latent", latent.shape)
    code_scale = 1 / math.sqrt(C)
    if tuple(scales[-1]) != (H, W):
        raise InfinityError(f"The last scale {tuple(scales[-1])} must equal the latent size {(H, W)}.")
    residual = latent.float().unsqueeze(2).contiguous()
    bits_list = []
    for h, w in scales:
        small = (h, w) != (H, W)
        r = F.interpolate(residual, size=(1, h, w), mode="area") if small else residual
        z = F.normalize(r.permute(0, 2, 3, 4, 1).contiguous(), dim=-1)  # [B, 1, h, w, d]
        sign = torch.where(z > 0, code_scale, -code_scale).to(z.dtype)
        # Straight-through form: z + (sign - z) is not exactly `sign` in fp32, and the reference
        # subtracts this value from the residual, so later bits depend on it.
        q = z + (sign - z)
        bits_list.append((z > 0).to(torch.uint8))
        q = q.permute(0, 4, 1, 2, 3)  # channels-last [B, d, 1, h, w], as the reference has it
        if small:
            q = resize(q, (1, H, W))
        residual = residual - q
    return bits_list
