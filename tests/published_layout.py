"""The unofficial GGUF release people use with this paper (kzopp/Infinity-2B-GGUF_UNOFFICIAL) in
miniature, under its own file names:

- `infinity_2b_reg_Q8_0.gguf`: the transformer in Q8_0, under the checkpoint's tensor names;
- `flan-t5-xl-encoder-Q8_0.gguf`: a T5 encoder as llama.cpp's converter writes one: architecture
  `t5encoder`, llama.cpp's tensor names (`enc.blk.0.attn_q.weight` ...), the model's sizes and its
  SentencePiece tokenizer (pieces, scores, token types, its normalizer table) in the metadata, and the
  vocabulary padded with unused `[PADn]` pieces up to the embedding's rows (flan-t5-xl: 32100 -> 32128);
- `infinity_vae_d32_reg.pth`: the VAE, as the released file holds it.

The keys and token types follow llama.cpp's `convert_hf_to_gguf.py` (T5EncoderModel); written here
with the gguf package, independently of the pack's reader.
"""
from __future__ import annotations

import os
import re

import gguf
import numpy as np
import torch

from infinity_core.network.transformer import build_random_transformer
from infinity_core.network.vae import build_random_vae
from infinity_core.tiny import TINY_TRANSFORMER, TINY_VAE
from infinity_core.tiny_t5 import tiny_t5_config, train_sentencepiece
from infinity_core.weights.gguf_file import write_gguf
from infinity_core.weights.vae_file import vae_state_dict_for_file

PUBLISHED = {"transformer": ("infinity", "infinity_2b_reg_Q8_0.gguf"),
             "vae": ("vae", "infinity_vae_d32_reg.pth"),
             "t5": ("text_encoders", "flan-t5-xl-encoder-Q8_0.gguf")}

# Hugging Face's T5 names -> llama.cpp's
LLAMA_CPP = [(r"^shared\.", "token_embd."), (r"^encoder\.final_layer_norm\.", "enc.output_norm."),
             (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"enc.blk.\1.attn_norm."),
             (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.", r"enc.blk.\1.attn_rel_b."),
             (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.", r"enc.blk.\1.attn_\2."),
             (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"enc.blk.\1.ffn_norm."),
             (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.", r"enc.blk.\1.ffn_gate."),
             (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.", r"enc.blk.\1.ffn_up."),
             (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.", r"enc.blk.\1.ffn_down.")]
# llama.cpp's SentencePiece token types
NORMAL, UNKNOWN, CONTROL, UNUSED, BYTE = 1, 2, 3, 5, 6
PADDED_VOCAB = 392  # the tiny tokenizer's 384 pieces, padded as llama.cpp pads flan-t5-xl's


def llama_cpp_name(name: str) -> str:
    for pattern, replacement in LLAMA_CPP:
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    return name


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def _fields(message: bytes):
    """(field number, value) of a protobuf message: bytes for length-delimited fields."""
    at = 0
    while at < len(message):
        key, at = _varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(message, at)
        elif wire == 2:
            size, at = _varint(message, at)
            value, at = message[at:at + size], at + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, at = message[at:at + size], at + size
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield number, value


def precompiled_charsmap(spm_model: bytes) -> bytes:
    """ModelProto.normalizer_spec (field 3) .precompiled_charsmap (field 2), read from the wire format
    (what llama.cpp reads with sentencepiece's protobuf classes)."""
    spec = next(v for n, v in _fields(spm_model) if n == 3)
    return next((v for n, v in _fields(spec) if n == 2), b"")


Q8_0 = gguf.GGMLQuantizationType.Q8_0


def _quantized(array: np.ndarray) -> bool:
    """What llama.cpp's Q8_0 conversion quantizes: matrices whose rows split into whole blocks."""
    return array.ndim == 2 and array.shape[-1] % gguf.GGML_QUANT_SIZES[Q8_0][0] == 0


def q8_0_round_trip(tensor: torch.Tensor) -> torch.Tensor:
    """The values the T5 file stores for a weight, decoded by the gguf package."""
    array = tensor.float().numpy()
    if not _quantized(array):
        return tensor.float()
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(array, Q8_0), Q8_0).astype(np.float32))


def t5_state(vocab: int, d_model: int, seed: int) -> tuple[object, dict[str, torch.Tensor]]:
    """A random tiny flan-t5-like encoder's config and weights (Hugging Face names, no tied copy)."""
    from transformers import T5EncoderModel

    config = tiny_t5_config(vocab, d_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    return config, state


# A few of NFKC's mappings (full-width letters, the fi ligature, circled one, ideographic space) as
# SentencePiece normalization rules. flan-t5-xl's model carries the whole NFKC table, 240 KB, which
# the gguf package's reader takes seconds to parse; this one compiles to about 1 KB.
NORMALIZATION_RULES = ([f"{0xFF21 + i:04X}\t{0x41 + i:04X}" for i in range(26)]
                       + [f"{0xFF41 + i:04X}\t{0x61 + i:04X}" for i in range(26)]
                       + ["FB01\t66 69", "2460\t31", "3000\t20"])


def normalized_sentencepiece(folder: str) -> bytes:
    """The tiny SentencePiece model with a normalizer table (NORMALIZATION_RULES)."""
    rules = os.path.join(folder, "normalization_rules.tsv")
    with open(rules, "w", encoding="utf-8") as f:
        f.write("\n".join(NORMALIZATION_RULES) + "\n")
    try:
        return train_sentencepiece(normalization_rule_tsv=rules)
    finally:
        os.remove(rules)


def write_t5_gguf_like_llama_cpp(path: str, d_model: int = 128, seed: int = 0):
    """Write the tiny T5 encoder GGUF in Q8_0; returns (config, spm model bytes, HF-named float weights)."""
    import sentencepiece as spm

    spm_model = normalized_sentencepiece(os.path.dirname(os.path.abspath(path)))
    sp = spm.SentencePieceProcessor(model_proto=spm_model)
    config, state = t5_state(PADDED_VOCAB, d_model, seed)
    tokens, scores, types = [f"[PAD{i}]" for i in range(PADDED_VOCAB)], [-10000.0] * PADDED_VOCAB, [UNUSED] * PADDED_VOCAB
    for i in range(sp.get_piece_size()):
        tokens[i], scores[i] = sp.id_to_piece(i), sp.get_score(i)
        types[i] = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else UNUSED if sp.is_unused(i)
                    else BYTE if sp.is_byte(i) else NORMAL)
    writer = gguf.GGUFWriter(path, arch="t5encoder")
    writer.add_context_length(512)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.d_ff)
    writer.add_block_count(config.num_layers)
    writer.add_head_count(config.num_heads)
    writer.add_key_length(config.d_kv)
    writer.add_value_length(config.d_kv)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    writer.add_relative_attn_buckets_count(config.relative_attention_num_buckets)
    writer.add_layer_norm_rms_eps(config.layer_norm_epsilon)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tokenizer_model("t5")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(True)
    writer.add_remove_extra_whitespaces(True)
    writer.add_precompiled_charsmap(precompiled_charsmap(spm_model))
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    writer.add_pad_token_id(sp.pad_id())
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if _quantized(array):
            writer.add_tensor(llama_cpp_name(name), gguf.quants.quantize(array, Q8_0), raw_dtype=Q8_0)
        else:
            writer.add_tensor(llama_cpp_name(name), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return config, spm_model, state


def decoded_weights(path: str) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file decoded by the gguf package, by llama.cpp name, in torch's shape order."""
    out = {}
    for tensor in gguf.GGUFReader(path).tensors:
        values = gguf.quants.dequantize(np.array(tensor.data), tensor.tensor_type)
        out[tensor.name] = torch.from_numpy(np.array(values, dtype=np.float32)).reshape(
            [int(n) for n in reversed(tensor.shape)])
    return out


def write_published_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """The three published files in miniature under `models_dir`; returns their paths by slot."""
    paths = {slot: os.path.join(models_dir, sub, name) for slot, (sub, name) in PUBLISHED.items()}
    for path in paths.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    write_gguf(paths["transformer"], build_random_transformer(TINY_TRANSFORMER, seed).state_dict(), "Q8_0")
    torch.save({"vae": vae_state_dict_for_file(build_random_vae(TINY_VAE, seed))}, paths["vae"])
    write_t5_gguf_like_llama_cpp(paths["t5"], d_model=TINY_TRANSFORMER.text_channels, seed=seed)
    return paths
