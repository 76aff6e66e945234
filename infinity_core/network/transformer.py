"""The Infinity transformer: text conditioning, AdaLN blocks with cosine self-attention and
cross-attention to T5, and the bit-pair head. Key names follow `infinity_2b_reg.pth`.

The model runs one scale at a time (`forward_scale`), attending to earlier scales through a
`KVCache` the caller owns. Self-attention hands (q, k, v) to the attention control installed by
`attention_control(...)` when there is one (the style method edits attention there), and runs
plain scaled-dot-product attention otherwise.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..schedules import Schedule
from .config import TransformerConfig
from .rope import apply_rope, rope_tables
from .text import TextBatch

LOG_MAX_ATTN_SCALE = math.log(100.0)
NUM_LEVELS = 15  # rows of lvl_embed: one per scale index


def _ada_layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    x = F.layer_norm(x.float(), (x.shape[-1],), eps=eps)
    return x.mul(scale.add(1)).add_(shift)


@dataclass
class Condition:
    """Everything the blocks need from the prompts, one row per batch row."""
    pooled: torch.Tensor       # [B, D] attentive pool of the text (the start token, head AdaLN)
    ada: torch.Tensor          # [B, 1, 6, C] shared AdaLN modulation
    memory: torch.Tensor       # [N, D] packed cross-attention memory
    lens: list[int]            # text tokens per row

    @functools.cached_property
    def key_mask(self) -> torch.Tensor:
        """[B, 1, 1, Lmax], True at each row's text tokens. Made once for every layer and scale:
        building it from `lens` copies from the host, which on a GPU waits for the queued work."""
        return _key_mask(self.lens, self.memory.device)

    def select(self, rows: list[int]) -> "Condition":
        text = TextBatch(self.memory, self.lens).select(rows)
        return Condition(self.pooled[rows], self.ada[rows], text.features, text.lens)


class KVCache:
    """Keys and values of the scales run so far, per self-attention layer: [B, H, L, hd] views of
    buffers allocated once for `capacity` tokens.

    The reference grows its cache by concatenation, copying all of it once per scale; the copies
    it leaves behind (one per layer and scale, each a little larger) fragment the allocator, so a
    run held more memory than its cache (see docs/memory.md). Here each scale's keys and values
    are written into place. The caller sizes the buffers: every token of the run, or, when rows
    will leave the batch, the tokens up to the step they leave (`refit` then moves the rows that
    stay into buffers for the steps after)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.keys: list[torch.Tensor] = []  # whole buffers [B, H, capacity, hd], one per layer
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []  # tokens written per layer

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one scale's k, v [B, H, L, hd] at `layer`; the layer's keys and values so far."""
        if layer == len(self.keys):
            shape = (k.shape[0], k.shape[1], self.capacity, k.shape[3])
            self.keys.append(k.new_empty(shape))
            self.values.append(v.new_empty(shape))
            self.lengths.append(0)
        start, end = self.lengths[layer], self.lengths[layer] + k.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"The KV cache was sized for {self.capacity} tokens and is asked to hold {end}.")
        self.keys[layer][:, :, start:end].copy_(k)
        self.values[layer][:, :, start:end].copy_(v)
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def refit(self, capacity: int, rows: Optional[list[int]] = None) -> None:
        """Move to buffers for `capacity` tokens, keeping only batch `rows` (None: all; nothing
        reads the others again). Each layer's old buffer goes before the next layer's is made."""
        self.capacity = capacity
        for cached in (self.keys, self.values):
            for layer, length in enumerate(self.lengths):
                old = cached[layer]
                kept = old[:, :, :length] if rows is None else old[rows, :, :length]
                cached[layer] = old.new_empty((kept.shape[0], old.shape[1], capacity, old.shape[3]))
                cached[layer][:, :, :length].copy_(kept)
                del old, kept


def cache_capacities(token_counts: Sequence[int], leave_after: Sequence[int] = ()) -> list[int]:
    """Per step, the tokens the KV cache is sized for: every token up to the first step of
    `leave_after` at or after it (the end of the run when there is none)."""
    last = len(token_counts) - 1
    ends = sorted({s for s in leave_after if 0 <= s < last} | {last})
    return [sum(token_counts[:next(e for e in ends if e >= si) + 1]) for si in range(len(token_counts))]


@dataclass(frozen=True)
class AttentionCall:
    """Where a self-attention call happens: the scale step and the layer (block) index."""
    step: int
    layer: int


def _bias(x: torch.Tensor, *parts) -> torch.Tensor:
    """Concatenated bias vectors (None = zeros of a part's width) on x's device and dtype.

    Raw parameters are moved at use, so a model that ComfyUI loads only partly onto the GPU
    (leaving such parameters on the CPU) still runs."""
    width = next(p.shape[0] for p in parts if p is not None)
    return torch.cat([torch.zeros(width, device=x.device, dtype=x.dtype) if p is None else p.to(x) for p in parts])


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # q already carries the learned per-head scale (cosine attention), so the softmax scale is 1.
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        C, H = cfg.embed_dim, cfg.num_heads
        self.num_heads = H
        self.mat_qkv = ops.Linear(C, 3 * C, bias=False, device="meta")
        self.q_bias = nn.Parameter(torch.empty(C, device="meta"))
        self.v_bias = nn.Parameter(torch.empty(C, device="meta"))
        self.scale_mul_1H11 = nn.Parameter(torch.empty(1, H, 1, 1, device="meta"))
        self.proj = ops.Linear(C, C, device="meta")

    def forward(self, x, rope, cache: KVCache, call: AttentionCall, control):
        B, L, C = x.shape
        qkv = self.mat_qkv(x).add_(_bias(x, self.q_bias, None, self.v_bias))
        q, k, v = qkv.view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        del qkv  # freed once q, k and v are replaced below: at the last scales it is a large tensor
        scale = self.scale_mul_1H11.to(x.device, torch.float32).clamp_max(LOG_MAX_ATTN_SCALE).exp()
        q = apply_rope(F.normalize(q.float(), dim=-1).mul(scale), *rope).to(v.dtype)
        k = apply_rope(F.normalize(k.float(), dim=-1), *rope).to(v.dtype)
        k, v = cache.extend(call.layer, k, v)
        out = plain_attention(q, k, v) if control is None else control(q, k, v, call)
        del q, k, v
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.proj(out)


class CrossAttention(nn.Module):
    """Each image row attends to the T5 tokens of its own prompt."""

    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        C = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.mat_q = ops.Linear(C, C, device="meta")
        self.mat_kv = ops.Linear(C, 2 * C, bias=False, device="meta")
        self.v_bias = nn.Parameter(torch.empty(C, device="meta"))
        self.proj = ops.Linear(C, C, device="meta")

    def forward(self, x, cond: Condition):
        B, L, C = x.shape
        H = self.num_heads
        q = self.mat_q(x).view(B, L, H, -1).transpose(1, 2)
        memory = cond.memory.to(x.dtype)
        kv = self.mat_kv(memory) + _bias(memory, None, self.v_bias)
        k, v = _pad_rows(kv.view(-1, 2, H, C // H), cond.lens)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=cond.key_mask)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


def _pad_rows(kv: torch.Tensor, lens: list[int]):
    """Packed [N, 2, H, hd] -> padded k, v [B, H, Lmax, hd] (see `_key_mask`)."""
    longest = max(lens)
    pieces = torch.split(kv, lens)
    padded = torch.stack([F.pad(p, (0, 0, 0, 0, 0, 0, 0, longest - p.shape[0])) for p in pieces])
    k, v = padded.permute(2, 0, 3, 1, 4).unbind(0)
    return k, v


def _key_mask(lens: list[int], device) -> torch.Tensor:
    """[B, 1, 1, Lmax]: True at the real tokens of each padded row."""
    mask = torch.arange(max(lens))[None] < torch.tensor(lens)[:, None]
    return mask[:, None, None, :].to(device)


class FFN(nn.Module):
    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        self.fc1 = ops.Linear(cfg.embed_dim, cfg.ffn_dim, device="meta")
        self.fc2 = ops.Linear(cfg.ffn_dim, cfg.embed_dim, device="meta")

    def forward(self, x):
        # gelu in place: the hidden layer is the largest tensor of a step, so only one is made
        return self.fc2(torch.ops.aten.gelu_(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm block: AdaLN self-attention, cross-attention, AdaLN FFN."""

    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        self.eps = cfg.norm_eps
        self.ada_gss = nn.Parameter(torch.empty(1, 1, 6, cfg.embed_dim, device="meta"))
        self.sa = SelfAttention(cfg, ops)
        self.ca = CrossAttention(cfg, ops)
        self.ffn = FFN(cfg, ops)
        self.ca_norm = ops.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps, device="meta")

    def forward(self, x, cond: Condition, rope, cache, call, control, dtype):
        """x [B, L, C] fp32, the residual stream: updated in place (the caller's is a scale's own copy)."""
        gate_sa, gate_ffn, scale_sa, scale_ffn, shift_sa, shift_ffn = (self.ada_gss.to(cond.ada) + cond.ada).unbind(2)
        h = _ada_layer_norm(x, scale_sa, shift_sa, self.eps).to(dtype)
        x.add_(self.sa(h, rope, cache, call, control).float().mul_(gate_sa))
        x.add_(self.ca(self.ca_norm(x.to(dtype)), cond).float())
        h = _ada_layer_norm(x, scale_ffn, shift_ffn, self.eps).to(dtype)
        return x.add_(self.ffn(h).float().mul_(gate_ffn))


class BlockChunk(nn.Module):
    """Only here so the state-dict keys read `block_chunks.{c}.module.{j}` as in the release."""

    def __init__(self, blocks):
        super().__init__()
        self.module = nn.ModuleList(blocks)


class AttentivePool(nn.Module):
    """The start token: one learned query per head attends over the prompt's tokens."""

    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        D, heads = cfg.embed_dim, cfg.pool_heads
        self.num_heads = heads
        self.mat_q = nn.Parameter(torch.empty(1, heads, D // heads, device="meta"))
        self.mat_kv = ops.Linear(cfg.text_channels, 2 * D, bias=False, device="meta")
        self.v_bias = nn.Parameter(torch.empty(D, device="meta"))
        self.proj = ops.Linear(D, D, device="meta")

    def forward(self, text: torch.Tensor, lens: list[int]) -> torch.Tensor:
        D = self.v_bias.shape[0]
        kv = self.mat_kv(text) + _bias(text, None, self.v_bias)
        k, v = _pad_rows(kv.view(-1, 2, self.num_heads, D // self.num_heads), lens)
        q = self.mat_q.to(kv).expand(len(lens), -1, -1).unsqueeze(2)  # [B, heads, 1, hd]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_key_mask(lens, kv.device))
        return self.proj(out.reshape(len(lens), D))


class TextPoolWrapper(nn.Module):
    def __init__(self, cfg, ops):
        super().__init__()
        self.ca = AttentivePool(cfg, ops)


class HeadAdaLN(nn.Module):
    def __init__(self, cfg: TransformerConfig, ops):
        super().__init__()
        self.eps = cfg.norm_eps
        self.ada_lin = nn.Sequential(nn.SiLU(), ops.Linear(cfg.embed_dim, 2 * cfg.embed_dim, device="meta"))

    def forward(self, x, pooled):
        scale, shift = self.ada_lin(pooled).view(-1, 1, 2, x.shape[-1]).unbind(2)
        return _ada_layer_norm(x, scale, shift, self.eps)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim, device="meta"))

    def forward(self, x):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps)) * self.weight.to(x)


class InfinityTransformer(nn.Module):
    """Modules are created on the meta device; `load_transformer` or `build_random` fill them."""

    def __init__(self, cfg: TransformerConfig, operations=None):
        super().__init__()
        ops = operations or nn
        self.config = cfg
        C, D, Ct5 = cfg.embed_dim, cfg.embed_dim, cfg.text_channels
        self.cfg_uncond = nn.Parameter(torch.empty(cfg.text_maxlen, Ct5, device="meta"))
        self.text_norm = RMSNorm(Ct5, cfg.norm_eps)
        self.text_proj_for_sos = TextPoolWrapper(cfg, ops)
        self.text_proj_for_ca = nn.Sequential(ops.Linear(Ct5, D, device="meta"), nn.GELU(approximate="tanh"),
                                              ops.Linear(D, D, device="meta"))
        self.pos_start = nn.Parameter(torch.empty(1, 1, C, device="meta"))
        self.lvl_embed = ops.Embedding(NUM_LEVELS, C, device="meta")
        self.word_embed = ops.Linear(cfg.codebook_dim, C, device="meta")
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), ops.Linear(D, 6 * C, device="meta"))
        per_chunk = cfg.depth // cfg.block_chunks
        blocks = [Block(cfg, ops) for _ in range(cfg.depth)]
        self.block_chunks = nn.ModuleList(BlockChunk(blocks[c * per_chunk:(c + 1) * per_chunk])
                                          for c in range(cfg.block_chunks))
        self.head_nm = HeadAdaLN(cfg, ops)
        self.head = ops.Linear(C, 2 * cfg.codebook_dim, device="meta")
        self.attention_control = None
        self.compute_dtype = torch.float32  # dtype the blocks compute in; the residual stays fp32
        self._rope_cache: dict = {}

    @property
    def blocks(self) -> list[Block]:
        return [b for chunk in self.block_chunks for b in chunk.module]

    @property
    def device(self) -> torch.device:
        return self.pos_start.device

    def null_text(self, lens: list[int]) -> TextBatch:
        """The learned unconditional text: the first len_i rows of `cfg_uncond` per prompt."""
        return TextBatch(torch.cat([self.cfg_uncond[:n] for n in lens]), list(lens))

    def condition(self, text: TextBatch) -> Condition:
        t = self.text_norm(text.features.to(self.device))
        pooled = self.text_proj_for_sos.ca(t, text.lens)
        memory = self.text_proj_for_ca(t)
        ada = self.shared_ada_lin(pooled.float()).float().view(len(text), 1, 6, self.config.embed_dim)
        return Condition(pooled, ada, memory, list(text.lens))

    def start_tokens(self, cond: Condition) -> torch.Tensor:
        return (cond.pooled.unsqueeze(1) + self.pos_start.to(cond.pooled)).float()

    def embed_codes(self, codes_BLd: torch.Tensor) -> torch.Tensor:
        return self.word_embed(codes_BLd.float())

    def rope(self, schedule: Schedule):
        key = (schedule.h_div_w, schedule.scales, self.device)
        if key not in self._rope_cache:
            self._rope_cache = {key: rope_tables(self.config.head_dim, schedule, self.device)}
        return self._rope_cache[key]

    def forward_scale(self, x: torch.Tensor, step: int, cond: Condition, schedule: Schedule,
                      cache: KVCache) -> torch.Tensor:
        """Hidden states [B, h*w, C] of scale `step`, given its input tokens x [B, h*w, C]."""
        x = x + self.lvl_embed(torch.full(x.shape[:2], step, dtype=torch.long, device=x.device)).float()
        rope = self.rope(schedule)[step]
        for layer, block in enumerate(self.blocks):
            x = block(x, cond, rope, cache, AttentionCall(step, layer), self.attention_control, self.compute_dtype)
        return x

    def logits(self, hidden: torch.Tensor, cond: Condition) -> torch.Tensor:
        """[B, L, 2*d]: logits of bit j being 0 / 1 at positions 2j / 2j+1."""
        return self.head(self.head_nm(hidden.float(), cond.pooled.float()))

    @contextlib.contextmanager
    def controlled_attention(self, control):
        """Route self-attention through `control` for the duration of one run, whatever happens."""
        if self.attention_control is not None:
            raise RuntimeError("An attention control is already installed on this model.")
        self.attention_control = control
        try:
            yield self
        finally:
            self.attention_control = None

    @torch.no_grad()
    def teacher_forced_logits(self, text: TextBatch, x_wo_prefix: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """Logits of all scales at once for given inputs (training-style pass, no CFG)."""
        cond = self.condition(text)
        counts = schedule.token_counts
        cache = KVCache(sum(counts))
        inputs = [self.start_tokens(cond)] + list(torch.split(self.embed_codes(x_wo_prefix), counts[1:], dim=1))
        return torch.cat([self.logits(self.forward_scale(x, si, cond, schedule, cache), cond)
                          for si, x in enumerate(inputs)], dim=1)


# ---------------------------------------------------------------------------------------------
# Placing and building

def place_weights(model: InfinityTransformer, device, dtype, storage=None) -> InfinityTransformer:
    # Blocks go straight to the compute dtype and the rest to fp32, so no tensor is ever
    # converted twice (a bf16 file loaded as bf16 would otherwise pass through fp32).
    # The blocks' Linear weights go straight to `storage` when given (fp8).
    stored = {id(m.weight) for m in model.block_chunks.modules() if isinstance(m, nn.Linear)} if storage else set()
    for param in model.block_chunks.parameters():
        if param.is_floating_point():
            param.data = param.data.to(device=device, dtype=storage if id(param) in stored else dtype)
        else:  # raw GGML blocks
            param.data = param.data.to(device=device)
    for name, module in model.named_children():
        if name != "block_chunks":
            module.to(device=device, dtype=torch.float32)
    for param in model.parameters(recurse=False):  # cfg_uncond, pos_start
        param.data = param.data.to(device=device, dtype=torch.float32)
    model.compute_dtype = dtype
    return model.eval().requires_grad_(False)


def build_random_transformer(cfg: TransformerConfig, seed: int = 0, operations=None, device="cpu",
                             dtype: torch.dtype = torch.float32) -> InfinityTransformer:
    """A random-weight model of any size, for tests, the demo and benchmarks; same classes as the
    real one. Values are drawn on `device` with a generator there (so a CUDA model of the 2B's
    shape is made in seconds; the values differ from the CPU's for the same seed), then placed
    as `place_weights` places a loaded checkpoint in `dtype`."""
    gen = torch.Generator(device=torch.device(device).type).manual_seed(seed)
    model = InfinityTransformer(cfg, operations)
    state = {}
    for name, meta in model.state_dict().items():
        randn = lambda: torch.randn(meta.shape, generator=gen, device=device)  # noqa: E731
        if name.endswith("scale_mul_1H11"):
            value = torch.full(meta.shape, math.log(4.0), device=device)
        elif name.endswith(("norm.weight", "text_norm.weight")):
            value = 1 + 0.1 * randn()
        elif name.endswith("ada_gss"):
            value = randn() / cfg.embed_dim ** 0.5
        else:
            fan_in = meta.shape[-1] if meta.dim() > 1 else cfg.embed_dim
            value = randn() / fan_in ** 0.5
        # blocks go to the compute dtype one tensor at a time, so no fp32 copy of the whole model exists
        state[name] = value.to(dtype) if name.startswith("block_chunks.") else value
    model.load_state_dict(state, strict=True, assign=True)
    return place_weights(model, device, dtype)
