"""The memory a generation needs before it starts: the transformer's weights as stored, and what
sampling adds at a pixel budget (the KV cache and the largest step's working set). One formula for
the Loader's tooltip, the memory tables of docs/memory.md (`python -m infinity_core.memory_plan
--write docs/memory.md` regenerates them; a test fails when they differ) and the sampler (which hands
ComfyUI what sampling adds, so it offloads other models when needed).

Weights follow what `load_transformer` keeps: in bf16 / fp16 the blocks take 2 bytes a value and
the text, embedding and head modules stay fp32 (as in the reference); fp8 stores the blocks'
Linear weights in 1 byte (the rest of the blocks in the bf16 compute dtype); a GGUF file keeps
every Linear and Embedding weight in its GGML blocks, the rest as fp32 / bf16 like fp8. The KV cache holds keys
and values of every block for every token it is sized for, per batch row, in the compute dtype:
2 x depth x width x tokens x rows x bytes (see `KVCache`: sized for the whole run, or up to the
step where rows leave). The step's working set is what `Block.forward` holds at its peak, counted
in `step_bytes`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import torch
from torch import nn

from .network.config import PRESETS, TransformerConfig
from .network.transformer import InfinityTransformer, cache_capacities
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


def _rows_at(rows: int | Sequence[int], steps: int) -> list[int]:
    return [rows] * steps if isinstance(rows, int) else list(rows)


def kv_cache_bytes(cfg: TransformerConfig, token_counts: Sequence[int], rows: int | Sequence[int],
                   itemsize: int = COMPUTE_BYTES) -> int:
    """The KV cache's buffers at their largest over one pass. `rows` is the batch rows, or the rows
    at each step when rows leave the batch (a stylized run drops its content and style rows):
    the buffers are sized up to the step where the rows change, as the sampler sizes them."""
    per_step = _rows_at(rows, len(token_counts))
    changes = [si for si in range(len(per_step) - 1) if per_step[si + 1] != per_step[si]]
    capacity = cache_capacities(token_counts, changes)
    return 2 * cfg.depth * cfg.embed_dim * itemsize * max(r * c for r, c in zip(per_step, capacity))


def step_bytes(cfg: TransformerConfig, tokens: int, rows: int, itemsize: int = COMPUTE_BYTES) -> int:
    """The working set of one step of `tokens` tokens and `rows` batch rows beyond the cache, at
    its peak in a block, per token row (C the width, F the FFN width, b the compute dtype's bytes):
    - self-attention, while the keys are rotated: the fp32 residual (4C), the normalised input
      (bC), qkv (3bC), the rotated queries (bC) and, for the keys, their fp32 normalised copy, the
      rotated copy and a half-size temporary (4C + 4C + 2C): (14 + 5b) C;
    - the FFN: the residual (4C), its input (bC), the hidden layer (bF, gelu in place) and the
      output (bC): (4 + 2b) C + bF.
    The larger counts (the attention's for the released shapes)."""
    C, F, b = cfg.embed_dim, cfg.ffn_dim, itemsize
    return rows * tokens * max((14 + 5 * b) * C, (4 + 2 * b) * C + b * F)


def sampling_bytes(cfg: TransformerConfig, token_counts: Sequence[int], rows: int | Sequence[int],
                   itemsize: int = COMPUTE_BYTES) -> int:
    """What sampling adds to the weights at its peak: the cache's buffers and the largest step's
    working set (the last step of a plain run; rows that leave early hold less than it)."""
    per_step = _rows_at(rows, len(token_counts))
    cache = kv_cache_bytes(cfg, token_counts, per_step, itemsize)
    return cache + max(step_bytes(cfg, n, r, itemsize) for n, r in zip(token_counts, per_step))


def decode_scratch_bytes(model: nn.Module) -> int:
    """Room for decoding the largest low-bit Linear weight (fp32 decode + the compute copy)."""
    largest = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear) and weight is not None and weight.element_size() == 1:
            largest = max(largest, module.in_features * module.out_features)
    return largest * (4 + COMPUTE_BYTES)


def vae_bytes(vae_config, image_hw: tuple[int, int], part: str, dtype: torch.dtype = torch.float32,
              layout: torch.memory_format | None = None) -> int:
    """The VAE's working set at its peak while it decodes to (part "decode") or encodes (part
    "encode") one image of `image_hw` pixels: its activations, traced on the meta device (see
    live_bytes.py), in `layout` (default: the one it runs in on CPU in this dtype, layouts.MEASURED)."""
    from .live_bytes import peak_bytes
    from .network.layouts import MEASURED
    from .network.vae import BSQVAE

    vae = BSQVAE(vae_config, device="meta", dtype=dtype)
    p = vae_config.patch_size
    shape = (1, vae_config.z_channels, image_hw[0] // p, image_hw[1] // p) if part == "decode" else (1, 3, *image_hw)
    layout = layout or MEASURED[("cpu", dtype, part)]
    x = torch.empty(shape, device="meta", dtype=dtype).contiguous(memory_format=layout)
    return peak_bytes(lambda: (vae.decoder if part == "decode" else vae.encoder)(x))


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
    what sampling one image adds (2 rows with guidance), as its KV cache and largest step."""
    rows = []
    for name, cfg in PRESETS.items():
        counts = {pn: schedule(1.0, pn).token_counts for pn in PIXEL_BUDGETS}
        batch = 2 if guided else 1
        cache = {pn: kv_cache_bytes(cfg, counts[pn], batch) for pn in PIXEL_BUDGETS}
        sampling = {pn: sampling_bytes(cfg, counts[pn], batch) for pn in PIXEL_BUDGETS}
        for option in WEIGHT_OPTIONS:
            rows.append({"model": name, "weights": option, "weight_bytes": weight_bytes(cfg, option),
                         "cache_bytes": cache, "sampling_bytes": sampling})
    return rows


def gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def sampling_markdown() -> str:
    """Per model and budget: the KV cache, the largest step beyond it, and their sum."""
    budgets = list(PIXEL_BUDGETS)
    lines = ["| model | GiB | " + " | ".join(f"@{pn}" for pn in budgets) + " |", "|---|---|" + "---|" * len(budgets)]
    for row in plan():
        if row["weights"] == "bf16":
            cache, total = row["cache_bytes"], row["sampling_bytes"]
            for label, values in (("KV cache", cache), ("largest step", {pn: total[pn] - cache[pn] for pn in budgets}),
                                  ("sampling adds", total)):
                lines.append(f"| {row['model']} | {label} | " + " | ".join(gib(values[pn]) for pn in budgets) + " |")
    return "\n".join(lines)


def plan_markdown() -> str:
    """Weights per option, and weights + what sampling adds per budget."""
    budgets = list(PIXEL_BUDGETS)
    lines = ["| model | weights | weights GiB | " + " | ".join(f"total @{pn}" for pn in budgets) + " |",
             "|---|---|---|" + "---|" * len(budgets)]
    for row in plan():
        lines.append(f"| {row['model']} | {row['weights']} | {gib(row['weight_bytes'])} | "
                     + " | ".join(gib(row["weight_bytes"] + row["sampling_bytes"][pn]) for pn in budgets) + " |")
    return "\n".join(lines)


def t5_markdown(options: Sequence[str] = ("bf16", "Q8_0", "Q4_K", "Q4_0")) -> str:
    return ("| text encoder | " + " | ".join(options) + " |\n|---|" + "---|" * len(options) + "\n"
            "| flan-t5-xl encoder | " + " | ".join(f"{gib(t5_weight_bytes(o))} GiB" for o in options) + " |")


GPU_GIB = (8, 12, 16, 24, 48)
RESERVE = GIB  # CUDA's own context and the VAE, kept free on top of the plan
# best quality first; only what a user can download or make with gguf_file.py (K-quants load, but
# nothing here writes them)
PREFERRED = ("bf16", "fp8_e4m3fn", "Q8_0", "Q5_0", "Q4_0")


def _fits(gpu_gib: int, model: str, t5_option: str | None = None) -> tuple[str, str, int] | None:
    """The best weight option, the largest budget at which `model` fits and its total there (with
    the T5 resident when t5_option is given), or None."""
    room = gpu_gib * GIB - RESERVE - (t5_weight_bytes(t5_option) if t5_option else 0)
    rows = {row["weights"]: row for row in plan() if row["model"] == model}
    for pn in reversed(PIXEL_BUDGETS):
        for option in PREFERRED:
            total = rows[option]["weight_bytes"] + rows[option]["sampling_bytes"][pn]
            if total <= room:
                return option, pn, total
    return None


def gpu_markdown() -> str:
    """Per GPU size and model: the best weights that fit at the largest budget, and whether the
    bf16 T5 can stay loaded beside them (else ComfyUI offloads it after encoding)."""
    lines = ["| GPU | " + " | ".join(PRESETS) + " |", "|---|" + "---|" * len(PRESETS)]
    for size in GPU_GIB:
        cells = []
        for model in PRESETS:
            alone = _fits(size, model)
            if alone is None:
                cells.append("does not fit")
                continue
            option, pn, total = alone
            t5 = "T5 bf16 stays loaded" if _fits(size, model, "bf16") == alone else "T5 offloaded after encoding"
            cells.append(f"{option} @{pn} ({gib(total)} GiB), {t5}")
        lines.append(f"| {size} GiB | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BEGIN, END = "<!-- memory_plan.py: begin -->", "<!-- memory_plan.py: end -->"


def generated_section() -> str:
    """What docs/memory.md holds between BEGIN and END."""
    return "\n\n".join([
        BEGIN,
        "What sampling one image with guidance (two batch rows) adds to the weights, bf16 compute:\n\n"
        + sampling_markdown(),
        "The transformer's weights as the Loader keeps them, and weights + what sampling adds:\n\n" + plan_markdown(),
        "The text encoder's weights:\n\n" + t5_markdown(),
        f"Which weights for which GPU: the best (in the order {', '.join(PREFERRED)}) whose total fits in the GPU "
        f"less {gib(RESERVE)} GiB for CUDA's context and the VAE, at the largest budget where one does:\n\n"
        + gpu_markdown(),
        END])


def write_section(path: str) -> None:
    """Replace the section between BEGIN and END of the document at `path`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, _, rest = text.partition(BEGIN)
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to replace.")
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + generated_section() + tail)


def plan_tooltip(options: Sequence[str] = ("bf16", "fp8_e4m3fn", "Q8_0", "Q4_0"), pn: str = "1M") -> str:
    """A few lines for the Loader: weights + what sampling adds at one budget, one image with guidance."""
    lines = []
    for row in plan():
        if row["weights"] in options:
            sampling = row["sampling_bytes"][pn]
            lines.append(f"{row['model']} {row['weights']}: {gib(row['weight_bytes'])} + {gib(sampling)}")
    return (f"Memory plan at {pn}, one image with guidance (GiB of weights + what sampling adds: KV cache and the "
            "largest step; add the T5 and VAE unless ComfyUI offloads them): " + "; ".join(lines) + ".")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print the memory plan's tables, or write them into a document.")
    parser.add_argument("--write", metavar="PATH", help=f"replace the section between {BEGIN} and {END} in PATH")
    args = parser.parse_args()
    if args.write:
        write_section(args.write)
    else:
        print(generated_section())
