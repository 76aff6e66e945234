"""A stylized generation: content, style and generation paths in one batch.

Rows are [content, style 1..n, generation] (then the same again, unconditional, for CFG). Style
rows replay their image's bits at every scale (teacher forcing); the content row samples from
its prompt, or replays a content image's bits; the generation row samples, except that Feature
Initialization hands it the style's bits before the key stage. The attention control does the
rest. Rows leave the batch as soon as nothing reads them: the style rows after the last step
that uses them (Feature Initialization or the key stage), the content row after the last key
or fine step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import InfinityError
from ..network.text import TextBatch
from ..sampler import SamplingSettings, ScaleEvent, draw_bits, make_generators, run_scales
from ..schedules import Schedule
from .control import RowLayout, StyleAttention
from .mechanisms import feature_initialization
from .prompts import StyleConditioning
from .references import BITS_CACHE, StyleReference, fit_mask, mask_on_grid
from .regions import Regions, StyleRegions, check_region_styles, content_preview, plan_regions
from .stages import Stages


def _active_styles(styles: Sequence[StyleReference], size) -> list[tuple[StyleReference, Optional[torch.Tensor]]]:
    """Styles that can act, with their masks fitted to the output; weight 0 or an empty mask is
    the same as leaving the style out, and a mask covering everything the same as none. With no
    style left, the style prompt alone is the style, as when no style is given at all."""
    active = []
    for i, ref in enumerate(styles):
        if ref.weight < 0 or not math.isfinite(ref.weight):
            raise InfinityError(f"Style {i + 1} has weight {ref.weight}; weights are 0 (off) or more.")
        mask = None if ref.mask is None else fit_mask(ref.mask, size)
        if ref.weight == 0 or (mask is not None and mask.max() <= 0):
            continue
        active.append((ref, None if mask is None or mask.min() >= 1 else mask))
    return active or [(StyleReference(None), None)]


@dataclass
class _Row:
    """One path's row: bits to replay per scale (None: it samples), its generator, its style."""
    path: str
    replay: Optional[list]
    generator: torch.Generator
    style: Optional[int] = None


class _StyleRun:
    """The per-scale decisions of one stylized image."""

    def __init__(self, model, vae, cond: StyleConditioning, styles, stages: Stages, schedule: Schedule,
                 seed: int, settings: SamplingSettings, content_image, regions: Optional[Regions]):
        self.schedule, self.stages, self.settings = schedule, stages, settings
        self.styles = _active_styles(styles, schedule.image_hw)
        n = len(self.styles)
        # every sampled row has its own generator seeded with the seed, so the generation row
        # draws exactly what a plain run of the generation prompt draws
        generators = make_generators([seed] * (n + 2), model.device)
        content_bits = None if content_image is None else BITS_CACHE.bits(vae, content_image, schedule)
        self.regional: Optional[StyleRegions] = None
        if regions is not None and self.styles:
            plan = plan_regions(model, vae, cond, self.styles, stages, schedule, seed, settings, content_image, regions)
            step = regions.step_for(stages)
            picture = (lambda: content_image) if content_image is not None else (
                lambda: content_preview(vae, plan.content_bits, schedule, step))
            self.regional = StyleRegions(plan, self.styles, regions, schedule, picture)
            if content_bits is None:
                content_bits = plan.content_bits
        # What the steps read (replayed bits, shares, key biases) goes to the model's device now:
        # a copy from the host inside the loop would wait for the GPU's queued work each time.
        device = model.device
        def on_device(bits):
            return None if bits is None else [b.to(device) for b in bits]

        def style_bits(ref):
            return None if ref.image is None else on_device(BITS_CACHE.bits(vae, ref.image, schedule))
        self.rows = ([_Row("content", on_device(content_bits), generators[0])]
                     + [_Row("style", style_bits(ref), generators[1 + i], style=i)
                        for i, (ref, _) in enumerate(self.styles)]
                     + [_Row("generation", None, generators[-1])])
        self.text = TextBatch.cat([cond.content] + [cond.style] * n + [cond.generation])
        self.negative = cond.negative
        self.guided = settings.guided(len(schedule))
        self.init_shares = {si: self._init_shares(schedule.scales[si], device)
                            for si in stages.init_steps if si < len(schedule)}
        bias = {step: [None if b is None else b.to(device) for b in biases]
                for step, biases in self._style_bias().items()}
        self.control = StyleAttention(stages, self._layout(), bias)

    def _layout(self) -> RowLayout:
        paths = [row.path for row in self.rows]
        return RowLayout(rows=len(self.rows), content=paths.index("content") if "content" in paths else None,
                         styles=[i for i, p in enumerate(paths) if p == "style"],
                         generation=paths.index("generation"), guided=self.guided)

    def _shares(self, grid) -> list[Optional[torch.Tensor]]:
        """Per style, its weight x mask coverage on an (h, w) grid; None where it is plainly 1."""
        shares = []
        for ref, mask in self.styles:
            if mask is None:
                shares.append(None if ref.weight == 1 else torch.full(grid, float(ref.weight)))
            else:
                shares.append(ref.weight * mask_on_grid(mask, grid))
        return shares

    def _style_bias(self) -> dict:
        bias = {}
        for step in self.stages.key_steps:
            if not 0 <= step < len(self.schedule):
                continue
            if self.regional is not None:
                bias[step] = self.regional.key_bias(step)
            else:
                bias[step] = [None if s is None else s.flatten().log() for s in self._shares(self.schedule.scales[step])]
        return bias

    def _init_shares(self, grid, device) -> Optional[list[torch.Tensor]]:
        """What Feature Initialization weighs the styles by at a step with this grid (None: one
        plain style takes every position)."""
        if self.regional is not None:
            shares = self.regional.shares(grid)
        elif len(self.styles) > 1 or any(m is not None for _, m in self.styles):
            shares = [torch.ones(grid) if s is None else s for s in self._shares(grid)]
        else:
            return None
        return [s.to(device) for s in shares]

    def choose_bits(self, si: int, logits: torch.Tensor) -> torch.Tensor:
        """Bits [rows, h, w, d] of the rows in the batch at step si."""
        h, w = self.schedule.scales[si]
        bits = []
        for row, row_logits in zip(self.rows, logits):
            if row.replay is not None:
                bits.append(row.replay[si].view(h, w, -1).long())
            else:
                bits.append(draw_bits(row_logits, self.settings.top_k, self.settings.top_p, row.generator).view(h, w, -1))
        if si in self.init_shares and self.styles:
            layout = self.control.layout
            gen = layout.generation
            bits[gen] = feature_initialization(bits[gen], [bits[r] for r in layout.styles], self.init_shares[si])
        return torch.stack(bits)

    def keep_rows(self, si: int) -> Optional[list[int]]:
        """After step si, the rows still read later; the others leave the batch."""
        needed_until = {"content": self.stages.content_needed_until(), "style": self.stages.style_needed_until()}
        kept = [i for i, row in enumerate(self.rows) if row.path == "generation" or si < needed_until[row.path]]
        if len(kept) == len(self.rows):
            return None
        self.rows = [self.rows[i] for i in kept]
        self.control.layout = self._layout()
        return kept


def stylize(model, vae, cond: StyleConditioning, styles: Sequence[StyleReference], stages: Stages,
            schedule: Schedule, seeds: Sequence[int], settings: SamplingSettings = SamplingSettings(),
            content_image: Optional[torch.Tensor] = None,
            callback: Optional[Callable[[ScaleEvent], None]] = None, regions: Optional[Regions] = None,
            on_regions: Optional[Callable[[StyleRegions], None]] = None) -> torch.Tensor:
    """Summed codes [B, d, 1, H, W] (the VAE's latent grid) of one stylized image per seed.

    With `regions`, each content region is stylized by the style region it matches (see
    regions.py); on_regions receives each image's regions, matching and shares before it runs."""
    vae.check_goes_with(model.config.codebook_dim)
    stages.validate(schedule, model.config.depth)
    if regions is not None:
        regions.validate(schedule, model.config.depth)
        check_region_styles(styles)
    images = []
    for seed in seeds:
        run = _StyleRun(model, vae, cond, styles, stages, schedule, seed, settings, content_image, regions)
        if on_regions is not None and run.regional is not None:
            on_regions(run.regional)

        def on_scale(si, summed, run=run):
            if callback is not None:
                callback(ScaleEvent(si, len(schedule), summed[run.control.layout.generation][None]))

        with model.controlled_attention(run.control):
            summed = run_scales(model, run.text, schedule, settings, run.choose_bits, negative=run.negative,
                                keep_rows=run.keep_rows, on_scale=on_scale, leave_after=run.stages.leave_steps())
        images.append(summed[run.control.layout.generation][None])
    return torch.cat(images)
