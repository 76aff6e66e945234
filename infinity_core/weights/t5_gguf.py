"""The flan-t5-xl encoder from a GGUF file (as llama.cpp and ComfyUI-GGUF users have them).

A file made by llama.cpp's T5 converter (`flan-t5-xl-encoder-Q8_0.gguf`) carries the model's
sizes and its tokenizer in its metadata (`t5encoder.*`, `tokenizer.ggml.*`) and works alone; a file
holding only weights takes config.json and the tokenizer from the flan-t5-xl folder it is put in.
Its tensors carry llama.cpp's T5 names (`enc.blk.0.attn_q.weight`) or Hugging Face's own
(`encoder.block.0.layer.0.SelfAttention.q.weight`); decoder tensors are skipped. Quantized Linear
and embedding weights stay quantized (see `lowbit`).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError
from .ggml import Quantized
from .gguf_file import describe, field_value, open_gguf, read_gguf
from .lowbit import Embedding, Linear, LowBitOps
from .t5_tokenizer import Pieces, t5_tokenizer

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


# llama.cpp's SentencePiece token types: pieces that are never produced from text
_UNUSED = 5
# T5's value, which llama.cpp does not store (its T5 code has it built in)
_MAX_DISTANCE = 128


def own_config_and_tokenizer(reader):
    """(T5Config, tokenizer) from an opened GGUF file's own metadata, as llama.cpp's converter
    writes them, or None when the file lacks either (then the folder's files are used)."""
    from transformers import T5Config

    arch = field_value(reader, "general.architecture")
    tokens = field_value(reader, "tokenizer.ggml.tokens")
    if arch not in ("t5", "t5encoder") or not tokens or field_value(reader, "tokenizer.ggml.model") != "t5":
        return None
    size = {key: field_value(reader, f"{arch}.{key}") for key in (
        "embedding_length", "feed_forward_length", "block_count", "attention.head_count", "attention.key_length")}
    embedding = next((t for t in reader.tensors if hf_name(t.name) == "shared.weight"), None)
    if None in size.values() or embedding is None:
        return None
    gated = any(hf_name(t.name).endswith("DenseReluDense.wi_0.weight") for t in reader.tensors)
    eps = float(f"{field_value(reader, f'{arch}.attention.layer_norm_rms_epsilon') or 1e-6:.7g}")  # stored as float32
    ids = {key: field_value(reader, f"tokenizer.ggml.{key}_token_id") for key in ("eos", "padding", "unknown")}
    config = T5Config(
        vocab_size=int(embedding.shape[-1]), d_model=size["embedding_length"], d_ff=size["feed_forward_length"],
        num_layers=size["block_count"], num_heads=size["attention.head_count"], d_kv=size["attention.key_length"],
        relative_attention_num_buckets=field_value(reader, f"{arch}.attention.relative_buckets_count") or 32,
        relative_attention_max_distance=_MAX_DISTANCE, layer_norm_epsilon=eps, dropout_rate=0.0,
        feed_forward_proj="gated-gelu" if gated else "relu",
        pad_token_id=ids["padding"] or 0, eos_token_id=1 if ids["eos"] is None else ids["eos"])
    scores = field_value(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = field_value(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    used = len(tokens)
    while used and types[used - 1] == _UNUSED:  # the padding up to the embedding's rows
        used -= 1
    charsmap = bytes(field_value(reader, "tokenizer.ggml.precompiled_charsmap") or b"")
    vocab = Pieces(list(zip(tokens[:used], scores[:used])), unk_id=2 if ids["unknown"] is None else ids["unknown"],
                   eos_id=config.eos_token_id, pad_id=config.pad_token_id, charsmap=charsmap)
    return config, t5_tokenizer(vocab)


def _with_low_bit_layers(model: nn.Module) -> None:
    """Swap every Linear and the token embedding for layers that can hold GGML blocks."""
    for name, module in list(model.named_modules()):
        if type(module) is nn.Linear:
            swapped = Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
            model.set_submodule(name, swapped)
    old = model.get_input_embeddings()
    model.set_input_embeddings(Embedding(old.num_embeddings, old.embedding_dim, device="meta"))


def load_t5_gguf(config, path: str, dtype: torch.dtype, reader=None) -> nn.Module:
    """A T5EncoderModel of `config` with the weights of the GGUF file at `path` (`reader`: opened already)."""
    from transformers import T5EncoderModel

    reader = reader or open_gguf(path)
    state = {hf_name(k): v for k, v in read_gguf(path, reader).items() if not k.startswith(("dec.", "decoder."))}
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
            f"  {describe(path, state, reader)}\n"
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
