"""Spatial patchify: how tokens sit on the VAE's latent grid.

Infinity-2B's tokens are latent positions (factor 1: 32 bits each). Infinity-8B's VAE downsamples
8x, not 16x, so its latent grid is twice the token grid at every scale; each token carries the
2x2 block of 14-bit positions beneath it (factor 2: 56 bits), token bit 4c + 2i + j being latent
channel c at (2y + i, 2x + j), which is torch's pixel_unshuffle / pixel_shuffle. The VAE, its
multi-scale quantizer, the summed codes and the decoder all live on the latent grid; only the
transformer's inputs and outputs are in token layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from . import quantizer


@dataclass(frozen=True)
class Patchify:
    factor: int = 1  # latent positions per token side

    def latent_grid(self, grid: Sequence[int]) -> tuple[int, int]:
        h, w = grid
        return h * self.factor, w * self.factor

    def latent_scales(self, scales: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        return [self.latent_grid(hw) for hw in scales]

    def unpack_bits(self, token_bits: torch.Tensor) -> torch.Tensor:
        """Token bits [B, 1, h, w, f*f*d] -> latent bits [B, 1, f*h, f*w, d] (a view where it can be:
        the codes made from it keep the reference's memory layout, which fixes their rounding)."""
        if self.factor == 1:
            return token_bits
        by_channel = F.pixel_shuffle(token_bits.squeeze(1).permute(0, 3, 1, 2), self.factor)
        return by_channel.permute(0, 2, 3, 1).unsqueeze(1)

    def pack_bits(self, latent_bits: torch.Tensor) -> torch.Tensor:
        """Latent bits [B, 1, f*h, f*w, d] -> token bits [B, 1, h, w, f*f*d]."""
        if self.factor == 1:
            return latent_bits
        by_channel = F.pixel_unshuffle(latent_bits.squeeze(1).permute(0, 3, 1, 2), self.factor)
        return by_channel.permute(0, 2, 3, 1).unsqueeze(1).contiguous()

    def token_inputs(self, summed_codes: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """The next scale's input: summed codes [B, d, 1, H, W] resized (trilinear) to the latent
        grid under `grid`, packed into tokens: [B, h*w, f*f*d], row-major."""
        x = quantizer.resize(summed_codes, (1, *self.latent_grid(grid)))
        if self.factor != 1:
            x = F.pixel_unshuffle(x.squeeze(2), self.factor)
        return x.flatten(2).transpose(1, 2)

    def summed_codes(self, token_bits: Sequence[torch.Tensor], scales: Sequence[Sequence[int]]) -> torch.Tensor:
        """Summed codes [B, d, 1, H, W] on the final latent grid of per-scale token bits."""
        return quantizer.summed_codes([self.unpack_bits(b) for b in token_bits], self.latent_scales(scales))
