"""A tiny random T5 encoder folder, laid out like google/flan-t5-xl, made offline in a second.

Used by the tests and by the demo command when no real weights are present. The folder holds
`config.json` + `model.safetensors` (a 2-layer T5 encoder with random weights) and the tokenizer
files a real flan-t5-xl folder has (`spiece.model`, `tokenizer.json`, `tokenizer_config.json`).

The tokenizer is a SentencePiece unigram model trained here on a built-in word list, so nothing is
downloaded. Its ids follow T5: `<pad>` 0, `</s>` 1 (appended to every prompt), `<unk>` 2, no BOS.
Its pieces are mostly single characters plus common words: enough to turn any ASCII prompt into
tokens. The features mean nothing; only the shapes and the pipeline are real.
"""
from __future__ import annotations

import io
import os

import torch

from .weights.t5_tokenizer import sentencepiece_t5_tokenizer

# A few hundred words of the kind prompts use; the tokenizer's pieces are learned from them.
_WORDS = """
a an the of in on at with and or to from by for is are was as into under over near behind
painting photo photograph portrait picture image render scene view close-up landscape still life
cat dog bird horse fish lion tiger bear fox rabbit owl dragon robot castle house tree river lake
mountain hill sky cloud sun moon star city street road car boat ship train flower rose garden
forest sea ocean beach island desert snow rain storm night day morning evening sunset sunrise
red green blue yellow black white orange purple pink brown golden silver gray bright dark pale
soft warm cold vivid muted pastel neon glowing shiny rough smooth detailed simple minimal
watercolor oil acrylic sketch pencil charcoal ink pen digital anime cartoon comic pixel vector
realistic photorealistic impressionist cubist surreal abstract baroque renaissance gothic modern
style art artist drawing illustration poster print mosaic stained glass paper cut clay wood metal
woman man girl boy child people person face hair eyes hands smile old young small big tall short
happy sad calm wild quiet light shadow color texture pattern line shape brush stroke canvas
""".split()
_VOCAB_SIZE = 384  # pieces, including <pad>, </s> and <unk>; the model's vocab_size equals it


def _corpus() -> list[str]:
    sentences = [" ".join(_WORDS[i:i + 7]) for i in range(len(_WORDS))]
    sentences += [w.capitalize() + "," for w in _WORDS]
    sentences.append(" ".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz"))
    sentences.append("0 1 2 3 4 5 6 7 8 9 . , ! ? - ( ) : ; ' \" / & + = % #")
    return sentences


def train_sentencepiece(**normalizer) -> bytes:
    """A serialized SentencePiece unigram model with T5's special ids. Deterministic. No
    normalization unless `normalizer` (SentencePiece trainer options) asks for one: flan-t5-xl's
    model normalizes with the "nmt_nfkc" table."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=model, vocab_size=_VOCAB_SIZE,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        **(normalizer or {"normalization_rule_name": "identity"}))
    return model.getvalue()


def tiny_t5_config(vocab_size: int = _VOCAB_SIZE, d_model: int = 64):
    """flan-t5-xl's architecture (gated-GELU, relative attention 32 buckets / distance 128,
    untied head) at toy size."""
    from transformers import T5Config

    return T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=16, d_ff=64, num_layers=2,
                    num_decoder_layers=2, num_heads=2, relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                    layer_norm_epsilon=1e-6, dropout_rate=0.0, tie_word_embeddings=False,
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def write_tiny_t5(folder: str, d_model: int = 64, seed: int = 0) -> str:
    """Write a tiny random T5 encoder + tokenizer into `folder` (created if needed); return it.

    The same `d_model` and `seed` give the same files. The global RNG is left untouched."""
    from transformers import T5EncoderModel
    from transformers.utils import logging as hf_logging

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    spm_model = train_sentencepiece()
    tokenizer = sentencepiece_t5_tokenizer(spm_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(tiny_t5_config(len(tokenizer), d_model)).eval()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar for a 200 KB file
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    with open(os.path.join(folder, "spiece.model"), "wb") as f:  # as in the real folder
        f.write(spm_model)
    return folder
