"""The flan-t5-xl encoder from a GGUF file (as llama.cpp and ComfyUI-GGUF users have them).

The architecture (config.json) and the tokenizer still come from the T5 folder; only the weights
come from the GGUF file. Its tensors carry llama.cpp's T5 names (`enc.blk.0.attn_q.weight`) or
Hugging Face's own (`encoder.block.0.layer.0.SelfAttention.q.weight`); decoder tensors are
skipped. Quantized Linear and embedding weights stay quantized (see `lowbit`).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError
from .ggml import Quantized
from .gguf_file import describe, read_gguf
from .lowbit import Embedding, Linear, LowBitOps

# llama.cpp's T5 tensor names -> Hugging Face's (the parts that differ)
_LLAMA_CPP_NAMES = [
    (r"^token_embd\.", "shared."),
    (r"^enc\.output_norm\.", "encoder.final_layer_norm."),
    (r"^enc\.blk\.(\d+)\.attn_norm\.", r"encoder.block.\1.layer.0.layer_norm."),
    (r"^enc\.blk\.(\d+)\.attn_rel_b\.", r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias."),
    (r"^enc\.blk\.(\d+)\.attn_([qkvo])\.", r"encoder.block.\1.layer.0.SelfAttention.\2."),
    (r"^enc\.blk\.(\d+)\.ffn_norm\.", r"encoder.block.\1.layer.1.layer_norm."),
    (r"^enc\.blk\.(\d+)\.ffn_gate\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_0."),
    (r"^enc\.blk\.(\d+)\.ffn_up\.", r"encoder.block.\1.layer.1.DenseReluDense.wi_1."),
    (r"^enc\.blk\.(\d+)\.ffn_down\.", r"encoder.block.\1.layer.1.DenseReluDense.wo."),
]
_TIED = "encoder.embed_tokens.weight"  # the same tensor as shared.weight


def hf_name(name: str) -> str:
    for pattern, replacement in _LLAMA_CPP_NAMES:
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    return name


def _with_low_bit_layers(model: nn.Module) -> None:
    """Swap every Linear and the token embedding for layers that can hold GGML blocks."""
    for name, module in list(model.named_modules()):
        if type(module) is nn.Linear:
            swapped = Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
            model.set_submodule(name, swapped)
    old = model.get_input_embeddings()
    model.set_input_embeddings(Embedding(old.num_embeddings, old.embedding_dim, device="meta"))


def load_t5_gguf(config, path: str, dtype: torch.dtype) -> nn.Module:
    """A T5EncoderModel of `config` with the weights of the GGUF file at `path`."""
    from transformers import T5EncoderModel

    state = {hf_name(k): v for k, v in read_gguf(path).items() if not k.startswith(("dec.", "decoder."))}
    with torch.device("meta"):
        model = T5EncoderModel(config)
    _with_low_bit_layers(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != _TIED}
    missing = [k for k in expected if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if missing or wrong:
        problem = f"missing: {', '.join(missing[:4])}" if missing else f"wrong shape: {', '.join(wrong[:4])}"
        raise CheckpointError(
            f"{path}: not the T5 encoder that config.json describes ({problem}{' ...' if len(missing + wrong) > 4 else ''}).\n"
            f"  {describe(path, state)}\n"
            "Use a flan-t5-xl encoder GGUF (llama.cpp or Hugging Face tensor names) with that model's config.json.")
    floats = {}
    for name, value in state.items():
        if name not in expected:
            continue  # extra tensors (a full T5's lm_head ...) are not part of the encoder
        owner, attr = name.rpartition(".")[::2]
        module = model.get_submodule(owner)
        if isinstance(value, Quantized) and LowBitOps.hold_quantized(module, attr, value):
            continue
        floats[name] = (value.dequantize() if isinstance(value, Quantized) else value).to(dtype)
    model.load_state_dict(floats, strict=False, assign=True)
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:  # every expected key was found above, so this is a bug, not a bad file
        raise RuntimeError(f"T5 parameters left unloaded: {meta[:4]}")
    model.get_input_embeddings().out_dtype = dtype
    if dtype == torch.float16:  # as Hugging Face does: the FFN output (`wo`) overflows fp16
        for name, module in model.named_modules():
            if name.endswith("DenseReluDense.wo"):
                module.compute_dtype = torch.float32
    return model
