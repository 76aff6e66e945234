"""The paper's three mechanisms, each a small function of tensors.

- Feature Initialization: before the key stage, the generation path takes the style image's bits.
- Key Stage Attention Sharing: the generation row attends with the content row's query, to keys
  [K_con ; K_sty] and values [V_gen ; V_sty].
- Adaptive Query Sharing: Q_gen := a*Q_gen + (1-a)*Q_con, a the per-token, per-head cosine.

q, k, v of one row are [H, L, hd] (k, v over all cached tokens of that row).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def feature_initialization(generated_bits: torch.Tensor, style_bits: Sequence[torch.Tensor],
                           style_share: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """The generation row's bits [h, w, d] replaced by the style's. With several styles, each
    position takes the bits of the style with the largest share there (weight x mask, [h, w]);
    positions no style covers keep their own bits."""
    if not style_bits:
        return generated_bits
    if style_share is None:
        return style_bits[0]
    shares = torch.stack(list(style_share)).to(generated_bits.device)
    best = shares.argmax(dim=0)
    out = generated_bits.clone()
    for i, bits in enumerate(style_bits):
        take = (best == i) & (shares[i] > 0)
        out[take] = bits.to(out.dtype)[take]
    return out


def key_stage_attention_sharing(q_con: torch.Tensor, k_con: torch.Tensor, v_gen: torch.Tensor,
                                k_styles: Sequence[torch.Tensor], v_styles: Sequence[torch.Tensor],
                                style_bias: Optional[Sequence[Optional[torch.Tensor]]] = None) -> torch.Tensor:
    """Attention output of the generation row at a key step: query Q_con, keys [K_con ; K_sty...],
    values [V_gen ; V_sty...] (concatenated along tokens).

    style_bias[i], if given, is a [L_q] log-share added to every logit of style i's keys, so a
    style's share of attention is scaled by its weight (and -inf keeps masked-out tokens off it),
    or a [L_q, L_i] log-bias per query and key (semantic regions)."""
    keys = torch.cat([k_con, *k_styles], dim=1)
    values = torch.cat([v_gen, *v_styles], dim=1)
    bias = None
    if style_bias is not None and any(b is not None for b in style_bias):
        cols = [torch.zeros(q_con.shape[1], k_con.shape[1], device=q_con.device)]
        for k_sty, b in zip(k_styles, style_bias):
            b = torch.zeros(q_con.shape[1], device=q_con.device) if b is None else b.to(q_con.device)
            cols.append(b[:, None].expand(-1, k_sty.shape[1]) if b.ndim == 1 else b)
        bias = torch.cat(cols, dim=1).to(q_con.dtype)
    # as a batch of one: CPU attention takes its fast kernel only for 4-D inputs
    return F.scaled_dot_product_attention(q_con[None], keys[None], values[None], attn_mask=bias, scale=1.0)[0]


def adaptive_query_sharing(q_gen: torch.Tensor, q_con: torch.Tensor) -> torch.Tensor:
    """Q_gen := a*Q_gen + (1-a)*Q_con with a = cos(Q_gen, Q_con) per token and head.

    The queries are normalised (times a per-head scale, then rotated alike by RoPE), so the
    cosine is the same before or after RoPE."""
    a = F.cosine_similarity(q_gen.float(), q_con.float(), dim=-1).unsqueeze(-1).to(q_gen.dtype)
    return a * q_gen + (1 - a) * q_con
