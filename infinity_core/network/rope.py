"""2-D rotary position embedding of Infinity's self-attention.

The first half of each head's dims rotates by the token's row, the second half by its column,
on interleaved pairs (2j, 2j+1). Positions are placed on the final grid of the 1M schedule of the
same aspect ratio (round half to even), whatever the pixel budget, so every scale of every budget
shares one coordinate frame.
"""
from __future__ import annotations

import torch

from ..schedules import Schedule

ROPE_BASE = 10000.0


def scale_positions(h: int, w: int, rope_grid: tuple[int, int]) -> torch.Tensor:
    """[h*w, 2] integer (row, col) positions of an h x w scale on the 1M grid."""
    uh, uw = rope_grid
    rows = (torch.arange(h) * (uh / h)).round()
    cols = (torch.arange(w) * (uw / w)).round()
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)


def rope_tables(head_dim: int, schedule: Schedule, device=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per scale, (cos, sin) of shape [h*w, head_dim/2], computed in fp32."""
    half = head_dim // 2
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, half, 2, dtype=torch.int64).float() / half))
    tables = []
    for h, w in schedule.scales:
        pos = scale_positions(h, w, schedule.rope_grid).float()
        angles = torch.cat([torch.outer(pos[:, 0], inv_freq), torch.outer(pos[:, 1], inv_freq)], dim=-1)
        tables.append((angles.cos().to(device), angles.sin().to(device)))
    return tables


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the interleaved pairs of x [B, H, L, hd] by the angles of its L tokens."""
    dtype = x.dtype
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    # (cos a - sin b, sin a + cos b), written into place: one temporary of half of x, not six
    rotated = torch.empty_like(pairs)
    torch.mul(cos, a, out=rotated[..., 0]).sub_(sin * b)
    torch.mul(sin, a, out=rotated[..., 1]).add_(cos * b)
    return rotated.reshape(x.shape).to(dtype)
