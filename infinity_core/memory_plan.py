"""The memory a generation needs before it starts: the transformer's weights as stored, and the
KV cache at a pixel budget. One formula for the Loader's tooltip, the memory table (docs/memory.md) and the
sampler (which hands ComfyUI the cache size so it offloads other models when needed).

Weights follow what `load_transformer` keeps: in bf16 / fp16 the blocks take 2 bytes a value and
the text, embedding and head modules stay fp32 (as in the reference); fp8 stores the blocks'
Linear weights in 1 byte (the rest of the blocks in the bf16 compute dtype); a GGUF file keeps
every Linear and Embedding weight in its GGML blocks, the rest as fp32 / bf16 like fp8. The KV cache holds keys
and values of every block for every token of every scale run so far, per batch row, in the
compute dtype: 2 x depth x width x tokens x rows x bytes.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import torch
from torch import nn

from .network.config import PRESETS, TransformerConfig
from .schedules import PIXEL_BUDGETS, schedule

GIB = 2 ** 30
COMPUTE_BYTES = 2  # bf16 / fp16: the compute dtype on a GPU
# weight option -> bytes per value of a Linear weight in the blocks (GGML: block bytes / elements)
WEIGHT_OPTIONS = {
    "fp32": 4.0, "bf16": 2.0, "fp8_e4m3fn": 1.0,
    "Q8_0": 34 / 32, "Q6_K": 210 / 256, "Q5_K": 176 / 256, "Q5_0": 22 / 32, "Q4_K": 144 / 256, "Q4_0": 18 / 32,
}
GGUF_OPTIONS = ("Q8_0", "Q6_K", "Q5_K", "Q5_0", "Q4_K", "Q4_0")


@functools.lru_cache(maxsize=None)
def _tensor_kinds(cfg: TransformerConfig) -> dict[tuple[bool, bool], int]:
    """Values of the model by (in the blocks, a Linear or Embedding weight: what low-bit layers hold)."""
    from .network.transformer import InfinityTransformer

    one_block = InfinityTransformer(dataclasses.replace(cfg, depth=1, block_chunks=1))  # meta: shapes only
    linear = {f"{name}.weight" for name, m in one_block.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    counts: dict = {}
    for name, tensor in one_block.state_dict().items():
        kind = (name.startswith("block_chunks."), name in linear)
        counts[kind] = counts.get(kind, 0) + tensor.numel() * (cfg.depth if kind[0] else 1)
    return counts


def weight_bytes(cfg: TransformerConfig, option: str) -> int:
    """Bytes of the transformer's weights once loaded with `option` (a key of WEIGHT_OPTIONS)."""
    total = 0.0
    for (in_blocks, is_linear), values in _tensor_kinds(cfg).items():
        if option == "fp32":
            size = 4
        elif is_linear and (in_blocks or option in GGUF_OPTIONS):
            size = WEIGHT_OPTIONS[option]
        else:
            size = COMPUTE_BYTES if in_blocks else 4
        total += values * size
    return int(total)


def kv_cache_bytes(cfg: TransformerConfig, token_counts: Sequence[int], rows: int | Sequence[int],
                   itemsize: int = COMPUTE_BYTES) -> int:
    """Peak KV cache of one pass over the scales. `rows` is the batch rows, or the rows at each
    step when rows leave the batch (a stylized run drops its content and style rows)."""
    per_step = [rows] * len(token_counts) if isinstance(rows, int) else list(rows)
    peak, cached = 0, 0
    for tokens, batch in zip(token_counts, per_step):
        cached += tokens
        peak = max(peak, batch * cached)
    return 2 * cfg.depth * cfg.embed_dim * peak * itemsize


def decode_scratch_bytes(model: nn.Module) -> int:
    """Room for decoding the largest low-bit Linear weight (fp32 decode + the compute copy)."""
    largest = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear) and weight is not None and weight.element_size() == 1:
            largest = max(largest, module.in_features * module.out_features)
    return largest * (4 + COMPUTE_BYTES)


# google/flan-t5-xl's encoder (config.json): width, heads x head width, gated FFN width, layers, vocabulary
FLAN_T5_XL = dict(d_model=2048, inner=32 * 64, d_ff=5120, layers=24, vocab=32128, buckets=32, heads=32)


def t5_weight_bytes(option: str, t5: dict = FLAN_T5_XL) -> int:
    """Bytes of the T5 encoder's weights: its Linear and embedding weights at `option` (GGUF files
    quantize those), its norms and relative-position table in the compute dtype."""
    d, layers = t5["d_model"], t5["layers"]
    matrices = layers * (4 * d * t5["inner"] + 3 * d * t5["d_ff"]) + t5["vocab"] * d
    small = layers * 2 * d + d + t5["buckets"] * t5["heads"]
    return int(matrices * WEIGHT_OPTIONS[option] + small * (4 if option == "fp32" else COMPUTE_BYTES))


def plan(guided: bool = True) -> list[dict]:
    """Rows of the memory plan: per preset and weight option, the weights and, per pixel budget,
    the KV cache of one image (2 rows with guidance)."""
    rows = []
    for name, cfg in PRESETS.items():
        caches = {pn: kv_cache_bytes(cfg, schedule(1.0, pn).token_counts, 2 if guided else 1) for pn in PIXEL_BUDGETS}
        for option in WEIGHT_OPTIONS:
            rows.append({"model": name, "weights": option, "weight_bytes": weight_bytes(cfg, option), "cache_bytes": caches})
    return rows


def gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def plan_markdown() -> str:
    """The README table."""
    budgets = list(PIXEL_BUDGETS)
    lines = ["| model | weights | weights GiB | " + " | ".join(f"+ KV cache @{pn}" for pn in budgets) + " |",
             "|---|---|---|" + "---|" * len(budgets)]
    for row in plan():
        lines.append(f"| {row['model']} | {row['weights']} | {gib(row['weight_bytes'])} | "
                     + " | ".join(f"{gib(row['cache_bytes'][pn])} (= {gib(row['weight_bytes'] + row['cache_bytes'][pn])})"
                                  for pn in budgets) + " |")
    return "\n".join(lines)


def t5_markdown(options: Sequence[str] = ("bf16", "Q8_0", "Q4_K", "Q4_0")) -> str:
    return ("| text encoder | " + " | ".join(options) + " |\n|---|" + "---|" * len(options) + "\n"
            "| flan-t5-xl encoder | " + " | ".join(f"{gib(t5_weight_bytes(o))} GiB" for o in options) + " |")


def plan_tooltip(options: Sequence[str] = ("bf16", "fp8_e4m3fn", "Q8_0", "Q4_0"), pn: str = "1M") -> str:
    """A few lines for the Loader: weights + cache at one budget, one image with guidance."""
    lines = []
    for row in plan():
        if row["weights"] in options:
            lines.append(f"{row['model']} {row['weights']}: {gib(row['weight_bytes'])} + {gib(row['cache_bytes'][pn])}")
    return (f"Memory plan at {pn}, one image with guidance (GiB of weights + KV cache; add the T5 and VAE "
            "unless ComfyUI offloads them): " + "; ".join(lines) + ".")


if __name__ == "__main__":
    print(plan_markdown() + "\n\n" + t5_markdown())
