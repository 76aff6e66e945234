"""The attention control of a stylized run: it applies Key Stage Attention Sharing and Adaptive
Query Sharing to the generation rows at the scheduled steps and layers, and leaves every other
call as plain attention. Installed for one run with `model.controlled_attention(control)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..network.transformer import AttentionCall, plain_attention
from .mechanisms import adaptive_query_sharing, key_stage_attention_sharing
from .stages import Stages


@dataclass
class RowLayout:
    """Which batch row holds which path, in the conditional half (the unconditional half, when
    guided, repeats it `rows` rows later). Rows leave the batch once nothing reads them."""
    rows: int
    content: Optional[int]
    styles: list[int]
    generation: int
    guided: bool

    def after_leaving(self, kept: list[int]) -> "RowLayout":
        where = {old: new for new, old in enumerate(kept)}
        return RowLayout(len(kept), where.get(self.content), [where[s] for s in self.styles if s in where],
                         where[self.generation], self.guided)

    def halves(self, uncond: bool) -> list[int]:
        """Row offsets of the halves the edits apply to."""
        return [0, self.rows] if self.guided and uncond else [0]


@dataclass
class StyleAttention:
    stages: Stages
    layout: RowLayout
    # per key step, per style: a [h*w] log-share added to that style's keys (None: no change)
    style_bias: dict = field(default_factory=dict)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: AttentionCall) -> torch.Tensor:
        out = plain_attention(q, k, v)
        step = call.step
        share_keys, blend_queries = self.stages.shares_keys_at(step), self.stages.blends_queries_at(step)
        if not (share_keys or blend_queries) or not self.stages.edits_layer(call.layer):
            return out
        layout = self.layout
        for offset in layout.halves(self.stages.uncond):
            con, gen = offset + layout.content, offset + layout.generation
            styles = [offset + s for s in layout.styles]
            if share_keys:
                shared = key_stage_attention_sharing(q[con], k[con], v[gen], [k[s] for s in styles],
                                                     [v[s] for s in styles], self.style_bias.get(step))
                out[gen] = torch.lerp(out[gen], shared, self.stages.key_strength)
            else:
                q_gen = torch.lerp(q[gen], adaptive_query_sharing(q[gen], q[con]), self.stages.fine_strength)
                out[gen] = plain_attention(q_gen[None], k[gen][None], v[gen][None])[0]
        return out
