"""A tiny random CLIP folder, laid out like openai/clip-vit-base-patch32, made offline in a second.

Holds config.json + model.safetensors (2-layer towers, random weights), a byte-level BPE tokenizer
(vocab.json, merges.txt, tokenizer.json, tokenizer_config.json) and preprocessor_config.json.
The tokenizer's vocabulary is the 256 byte symbols, each alone and word-final, a few merges and
CLIP's two special tokens last (so `<|endoftext|>` has the highest id, as in the real one). The
preprocessing deliberately differs from CLIP's defaults (size, crop, mean, std), so tests notice
if the folder's own settings are not the ones used. Scores from it mean nothing.
"""
from __future__ import annotations

import json
import os

import torch

IMAGE_SIZE = 32
RESIZE_TO = 36
IMAGE_MEAN = [0.45, 0.40, 0.35]
IMAGE_STD = [0.25, 0.20, 0.30]
_MERGES = [("a", "t</w>"), ("c", "at</w>"), ("i", "n</w>"), ("t", "h"), ("th", "e</w>")]
_SPECIALS = ("<|startoftext|>", "<|endoftext|>")


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP byte-level BPE: printable bytes stand for themselves, the others are shifted
    to unused code points from 256 on, so every byte is one visible symbol."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


def _vocab() -> dict[str, int]:
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in _MERGES] + list(_SPECIALS)
    return {token: i for i, token in enumerate(tokens)}


def tiny_clip_config(vocab_size: int):
    from transformers import CLIPConfig

    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
                eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=IMAGE_SIZE, patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)


def write_tiny_clip(folder: str, seed: int = 0) -> str:
    """Write the tiny CLIP into `folder` (created if needed); return it. The same seed gives the
    same files; the global RNG is left untouched."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no "torchvision is not installed" notice for the image processor
    try:
        return _write(os.fspath(folder), seed)
    finally:
        hf_logging.set_verbosity(verbosity)


def _write(folder: str, seed: int) -> str:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel
    from transformers.utils import logging as hf_logging

    os.makedirs(folder, exist_ok=True)
    vocab = _vocab()
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _MERGES))
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": _SPECIALS[0],
                   "eos_token": _SPECIALS[1], "pad_token": _SPECIALS[1], "unk_token": _SPECIALS[1],
                   "do_lower_case": True}, f)
    AutoTokenizer.from_pretrained(folder, local_files_only=True).save_pretrained(folder)  # adds tokenizer.json
    CLIPImageProcessor(size={"shortest_edge": RESIZE_TO}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                       image_mean=IMAGE_MEAN, image_std=IMAGE_STD).save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(tiny_clip_config(len(vocab))).eval()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return folder
