"""The scale-wise sampler: one transformer pass per scale, CFG on logits, bit sampling.

`run_scales` is the loop shared by plain and stylized generation: the caller decides, per scale,
which bits each row takes (`choose_bits`) and which rows stay in the batch (`keep_rows`).
`generate` is plain text-to-image on top of it, reproducing the reference sampler's draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .quantizer import bits_to_codes, resize
from .schedules import Schedule
from .text import TextBatch
from .transformer import InfinityTransformer, KVCache


@dataclass(frozen=True)
class SamplingSettings:
    """cfg and tau are a number or one value per scale; top_k = 0 / top_p = 0 turn a filter off."""
    cfg: float | Sequence[float] = 3.0
    tau: float | Sequence[float] = 0.5
    top_k: int = 900
    top_p: float = 0.97

    def cfg_at(self, si: int) -> float:
        return float(self.cfg[si]) if isinstance(self.cfg, Sequence) else float(self.cfg)

    def tau_at(self, si: int) -> float:
        return float(self.tau[si]) if isinstance(self.tau, Sequence) else float(self.tau)

    def guided(self, num_scales: int) -> bool:
        return any(self.cfg_at(si) != 1 for si in range(num_scales))


@dataclass
class ScaleEvent:
    """Reported after each scale: `summed_codes` [B, d, 1, H, W] of the rows the caller shows."""
    step: int
    num_steps: int
    summed_codes: torch.Tensor


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then top-p on the last dim (a bit's two outcomes), as the reference does."""
    logits = logits.clone()
    V = logits.shape[-1]
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1, sorted=False)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(logits < kth, -torch.inf)
    if top_p > 0:
        sorted_logits, order = logits.sort(dim=-1)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False  # the most likely outcome always stays
        logits.masked_fill_(remove.scatter(-1, order, remove), -torch.inf)
    return logits


def draw_bits(logits_Ld2: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One multinomial draw per bit for one image row: [L, 2d] logits -> [L, d] bits.

    A single call per row and scale, so the generator advances exactly as the reference's."""
    pairs = filter_logits(logits_Ld2.reshape(-1, 2), top_k, top_p)
    bits = torch.multinomial(pairs.softmax(dim=-1), 1, replacement=True, generator=generator)
    return bits.view(logits_Ld2.shape[0], -1)


def make_generators(seeds: Sequence[int], device) -> list[torch.Generator]:
    return [torch.Generator(device=torch.device(device).type).manual_seed(int(s)) for s in seeds]


def unconditional_text(model: InfinityTransformer, text: TextBatch, negative: Optional[TextBatch]) -> TextBatch:
    """Per row, the negative prompt if given (one for all rows, or one per row), else the learned null text."""
    if negative is None:
        return model.null_text(text.lens)
    if len(negative) == 1:
        return negative.select([0] * len(text))
    return negative


ChooseBits = Callable[[int, torch.Tensor], torch.Tensor]


@torch.no_grad()
def run_scales(model: InfinityTransformer, text: TextBatch, schedule: Schedule, settings: SamplingSettings,
               choose_bits: ChooseBits, negative: Optional[TextBatch] = None,
               keep_rows: Optional[Callable[[int], Optional[list[int]]]] = None,
               on_scale: Optional[Callable[[int, torch.Tensor], None]] = None,
               last_step: Optional[int] = None) -> torch.Tensor:
    """Run every scale of `schedule` (or steps 0..last_step) for the rows of `text`; return their summed
    codes [B, d, 1, H, W].

    choose_bits(si, logits [B, h*w, 2d]) gives the bits [B, h, w, d] each row takes at step si.
    keep_rows(si), after step si, may name the rows still needed; the others leave the batch
    (and their cache). on_scale(si, summed_codes) is called after each scale."""
    device = model.device
    guided = settings.guided(len(schedule))
    rows = len(text)
    if guided:
        text = TextBatch.cat([text.to(device), unconditional_text(model, text, negative).to(device)])
    cond = model.condition(text.to(device))
    cache = KVCache()
    x = model.start_tokens(cond)
    final = (1, *schedule.final_grid)
    summed = torch.zeros(rows, model.config.codebook_dim, *final, device=device)
    last = len(schedule) - 1 if last_step is None else last_step
    for si, (h, w) in enumerate(schedule.scales[:last + 1]):
        logits = model.logits(model.forward_scale(x, si, cond, schedule, cache), cond)
        logits = logits.mul(1 / settings.tau_at(si))
        cfg = settings.cfg_at(si)
        if guided:
            logits = cfg * logits[:rows] + (1 - cfg) * logits[rows:]
        codes = bits_to_codes(choose_bits(si, logits).view(rows, 1, h, w, -1))
        if si == len(schedule) - 1:
            summed = summed + codes
        else:
            summed = summed + resize(codes, final)
        if on_scale is not None:
            on_scale(si, summed)
        if si == last:
            break
        kept = keep_rows(si) if keep_rows is not None else None
        if kept is not None and len(kept) < rows:
            summed = summed[kept]
            batch_rows = kept + [rows + r for r in kept] if guided else kept
            cache.keep_rows(batch_rows)
            cond = cond.select(batch_rows)
            rows = len(kept)
        nh, nw = schedule.scales[si + 1]
        nxt = resize(summed, (1, nh, nw)).flatten(2).transpose(1, 2)  # [B, h'w', d], row-major
        x = model.embed_codes(nxt)
        if guided:
            x = torch.cat([x, x])
    return summed


@dataclass
class Generation:
    summed_codes: torch.Tensor    # [B, d, 1, H, W]
    drawn_bits: list              # per scale, [B, 1, h, w, d] uint8: what the generator drew


def generate(model: InfinityTransformer, text: TextBatch, schedule: Schedule, seeds: Sequence[int],
             settings: SamplingSettings = SamplingSettings(), negative: Optional[TextBatch] = None,
             replay: Optional[Sequence[Optional[torch.Tensor]]] = None,
             callback: Optional[Callable[[ScaleEvent], None]] = None) -> Generation:
    """Plain text-to-image: one image per prompt row, image i drawn with its own generator
    seeded by seeds[i] (so image i of a batch is the image a single run with seeds[i] makes).

    replay[si], when given, replaces the drawn bits at step si (teacher forcing); the generator
    still draws, so later scales see the same random stream as a free run."""
    if len(seeds) != len(text):
        raise ValueError(f"{len(text)} prompts but {len(seeds)} seeds.")
    generators = make_generators(seeds, model.device)
    drawn = []

    def choose_bits(si, logits):
        bits = torch.stack([draw_bits(row, settings.top_k, settings.top_p, g) for row, g in zip(logits, generators)])
        h, w = schedule.scales[si]
        drawn.append(bits.view(len(seeds), 1, h, w, -1).to(torch.uint8))
        if replay is not None and si < len(replay) and replay[si] is not None:
            return replay[si].to(bits.device)
        return bits

    def on_scale(si, summed):
        if callback is not None:
            callback(ScaleEvent(si, len(schedule), summed))

    summed = run_scales(model, text, schedule, settings, choose_bits, negative=negative, on_scale=on_scale)
    return Generation(summed, drawn)
