"""The scale-wise sampler: one transformer pass per scale, CFG on logits, bit sampling.

`run_scales` is the loop shared by plain and stylized generation: the caller decides, per scale,
which bits each row takes (`choose_bits`) and which rows stay in the batch (`keep_rows`).
`generate` is plain text-to-image on top of it, reproducing the reference sampler's draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .errors import InfinityError
from .network.quantizer import bits_to_codes, resize
from .network.text import TextBatch
from .network.transformer import Condition, InfinityTransformer, KVCache, cache_capacities
from .schedules import Schedule

# What the Sampler node's widgets allow; API prompts and the command line get the same checks.
LIMITS = {"cfg": (1.0, 20.0), "tau": (0.05, 2.0), "top_k": (0, 1000), "top_p": (0.0, 1.0), "batch_size": (1, 16)}
SEED_RANGE = 2 ** 64  # torch generators take seeds below this; seed + i wraps around


def check_number(name: str, value, integer: bool = False) -> None:
    """Refuse a value outside LIMITS[name] (NaN and infinity included), naming the input."""
    low, high = LIMITS[name]
    kind = "a whole number" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok or not low <= value <= high:
        raise InfinityError(f"{name} must be {kind} from {low} to {high}; got {value!r}.")


def seeds_for(seed: int, batch: int) -> list[int]:
    """The seeds of a batch: seed, seed + 1, ... (wrapping around at 2^64)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_RANGE:
        raise InfinityError(f"seed must be a whole number from 0 to 2^64 - 1; got {seed!r}.")
    check_number("batch_size", batch, integer=True)
    return [(seed + i) % SEED_RANGE for i in range(batch)]


@dataclass(frozen=True)
class SamplingSettings:
    """cfg and tau are a number or one value per scale; top_k = 0 / top_p = 0 turn a filter off."""
    cfg: float | Sequence[float] = 3.0
    tau: float | Sequence[float] = 0.5
    top_k: int = 900
    top_p: float = 0.97

    def __post_init__(self):
        for name in ("cfg", "tau"):
            value = getattr(self, name)
            for one in value if isinstance(value, Sequence) else [value]:
                check_number(name, one)
        check_number("top_k", self.top_k, integer=True)
        check_number("top_p", self.top_p)

    def cfg_at(self, si: int) -> float:
        return float(self.cfg[si]) if isinstance(self.cfg, Sequence) else float(self.cfg)

    def tau_at(self, si: int) -> float:
        return float(self.tau[si]) if isinstance(self.tau, Sequence) else float(self.tau)

    def guided(self, num_scales: int) -> bool:
        return any(self.cfg_at(si) != 1 for si in range(num_scales))


@dataclass
class ScaleEvent:
    """Reported after each scale: `summed_codes` [B, d, 1, H, W] (on the VAE's latent grid) of the
    rows the caller shows."""
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
TextAt = Callable[[int], TextBatch]


class StepConditions:
    """The transformer's conditioning at each step: one `Condition` per distinct text, made once.

    With `text_at`, step si conditions on text_at(si) everywhere the text enters (start token at
    step 0, AdaLN, cross-attention, head) and its unconditional half is that text's own. The keys
    and values a step adds to the cache are the ones it computed under its own text, so later
    steps attend to what that step saw: exactly a run whose prompt changed at that step alone
    (a block-causal pass where that scale's tokens are conditioned on the other text)."""

    def __init__(self, model: InfinityTransformer, text: TextBatch, text_at: Optional[TextAt], guided: bool,
                 negative: Optional[TextBatch]):
        self.model, self.text, self.text_at = model, text, text_at
        self.guided, self.negative = guided, negative
        self.made: dict[int, tuple[TextBatch, Condition]] = {}  # id(text) -> (text, its Condition)
        self.rows: Optional[list[int]] = None  # batch rows still running, when some have left

    def at(self, si: int) -> Condition:
        text = self.text if self.text_at is None else self.text_at(si)
        if id(text) not in self.made:
            if len(text) != len(self.text):
                raise ValueError(f"The text of step {si} has {len(text)} rows, the run has {len(self.text)}.")
            cond = self.model.condition(self._guided(text))
            self.made[id(text)] = (text, cond if self.rows is None else cond.select(self.rows))
        return self.made[id(text)][1]

    def _guided(self, text: TextBatch) -> TextBatch:
        text = text.to(self.model.device)
        if not self.guided:
            return text
        return TextBatch.cat([text, unconditional_text(self.model, text, self.negative).to(self.model.device)])

    def keep_rows(self, batch_rows: list[int]) -> None:
        """Rows leave the batch: `batch_rows` index the current batch."""
        self.rows = batch_rows if self.rows is None else [self.rows[i] for i in batch_rows]
        self.made = {key: (text, cond.select(batch_rows)) for key, (text, cond) in self.made.items()}


@torch.no_grad()
def run_scales(model: InfinityTransformer, text: TextBatch, schedule: Schedule, settings: SamplingSettings,
               choose_bits: ChooseBits, negative: Optional[TextBatch] = None,
               keep_rows: Optional[Callable[[int], Optional[list[int]]]] = None,
               on_scale: Optional[Callable[[int, torch.Tensor], None]] = None,
               text_at: Optional[TextAt] = None, last_step: Optional[int] = None,
               leave_after: Sequence[int] = ()) -> torch.Tensor:
    """Run every scale of `schedule` (or steps 0..last_step) for the rows of `text`; return their summed
    codes [B, d, 1, H, W] on the VAE's latent grid (see patchify.py).

    choose_bits(si, logits [B, h*w, 2D]) gives the token bits [B, h, w, D] each row takes at step si.
    keep_rows(si), after step si, may name the rows still needed; the others leave the batch
    (and their cache). on_scale(si, summed_codes) is called after each scale.
    text_at(si), when given, is the rows' text at step si in place of `text`; see `StepConditions`.
    leave_after names the steps after which keep_rows may let rows go: the KV cache is sized up to
    the next of them, so rows that leave early never hold room for the later, larger scales."""
    device = model.device
    guided = settings.guided(len(schedule))
    rows = len(text)
    conditions = StepConditions(model, text, text_at, guided, negative)
    cond = conditions.at(0)
    last = len(schedule) - 1 if last_step is None else last_step
    capacity = cache_capacities(schedule.token_counts[:last + 1], leave_after)
    cache = KVCache(capacity[0])
    x = model.start_tokens(cond)
    patchify = model.config.patchify
    final = (1, *patchify.latent_grid(schedule.final_grid))
    summed = torch.zeros(rows, model.config.vae_codebook_dim, *final, device=device)
    for si, (h, w) in enumerate(schedule.scales[:last + 1]):
        cond = conditions.at(si)
        logits = model.logits(model.forward_scale(x, si, cond, schedule, cache), cond)
        logits = logits.mul(1 / settings.tau_at(si))
        cfg = settings.cfg_at(si)
        if guided:
            logits = cfg * logits[:rows] + (1 - cfg) * logits[rows:]
        codes = bits_to_codes(patchify.unpack_bits(choose_bits(si, logits).view(rows, 1, h, w, -1)))
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
            cache.refit(capacity[si + 1], batch_rows)
            conditions.keep_rows(batch_rows)
            rows = len(kept)
        elif capacity[si + 1] != cache.capacity:  # no row left after all: room for the later steps
            cache.refit(capacity[si + 1])
        x = model.embed_codes(patchify.token_inputs(summed, schedule.scales[si + 1]))
        if guided:
            x = torch.cat([x, x])
    return summed


@dataclass
class Generation:
    summed_codes: torch.Tensor    # [B, d, 1, H, W] on the latent grid
    drawn_bits: list              # per scale, token bits [B, 1, h, w, D] uint8: what the generator drew


def generate(model: InfinityTransformer, text: TextBatch, schedule: Schedule, seeds: Sequence[int],
             settings: SamplingSettings = SamplingSettings(), negative: Optional[TextBatch] = None,
             replay: Optional[Sequence[Optional[torch.Tensor]]] = None,
             callback: Optional[Callable[[ScaleEvent], None]] = None,
             text_at: Optional[TextAt] = None) -> Generation:
    """Plain text-to-image: one image per prompt row, image i drawn with its own generator
    seeded by seeds[i].

    Each image runs as its own pass, as stylized images do: in bf16 / fp16 a batched matmul
    rounds differently with the batch size, so only this keeps image i of a batch exactly the
    image a single run with seeds[i] makes, in every precision.

    replay[si] ([B, 1, h, w, d]), when given, replaces the drawn bits at step si (teacher
    forcing); the generator still draws, so later scales see the same random stream as a free run.
    text_at(si), when given, is the prompts' text at step si (see `StepConditions`)."""
    if len(seeds) != len(text):
        raise ValueError(f"{len(text)} prompts but {len(seeds)} seeds.")
    if negative is not None and len(negative) not in (1, len(text)):
        raise ValueError(f"{len(text)} prompts but {len(negative)} negative prompts.")
    images, drawn = [], []
    for i, seed in enumerate(seeds):
        one_negative = None if negative is None else negative.select([i if len(negative) > 1 else 0])
        one_replay = None if replay is None else [None if r is None else r[i:i + 1] for r in replay]
        image = _generate_one(model, text.select([i]), schedule, seed, settings, one_negative, one_replay, callback,
                              _row_text_at(text_at, i))
        images.append(image.summed_codes)
        drawn.append(image.drawn_bits)
    return Generation(torch.cat(images), [torch.cat(per_scale) for per_scale in zip(*drawn)])


def _row_text_at(text_at: Optional[TextAt], row: int) -> Optional[TextAt]:
    """text_at for one image of the batch: its row of each step's text, picked once per text
    (StepConditions encodes each distinct text once)."""
    if text_at is None:
        return None
    picked = {}

    def at(si):
        full = text_at(si)
        if id(full) not in picked:
            picked[id(full)] = (full, full.select([row]))  # holding `full` keeps its id unique
        return picked[id(full)][1]
    return at


def _generate_one(model, text, schedule, seed, settings, negative, replay, callback, text_at) -> Generation:
    generator = make_generators([seed], model.device)[0]
    drawn = []

    def choose_bits(si, logits):
        h, w = schedule.scales[si]
        bits = draw_bits(logits[0], settings.top_k, settings.top_p, generator).view(1, 1, h, w, -1)
        drawn.append(bits.to(torch.uint8))
        if replay is not None and si < len(replay) and replay[si] is not None:
            return replay[si].to(bits.device)
        return bits

    def on_scale(si, summed):
        if callback is not None:
            callback(ScaleEvent(si, len(schedule), summed))

    summed = run_scales(model, text, schedule, settings, choose_bits, negative=negative, on_scale=on_scale,
                        text_at=text_at)
    return Generation(summed, drawn)
