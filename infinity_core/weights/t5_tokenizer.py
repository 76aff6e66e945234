"""T5's tokenizer built from SentencePiece pieces and scores, wherever they come from: a
SentencePiece model (the tiny test set) or the `tokenizer.ggml.*` metadata of a GGUF file
(llama.cpp's T5 converter writes flan-t5-xl's tokenizer there).

The pipeline is the one transformers builds for T5 (`T5TokenizerFast`): the SentencePiece
normalizer (its precompiled NFKC table, when the model has one), whitespace split, then
Metaspace with a prefix space; `</s>` is appended by the post-processor. No protobuf and no
slow-to-fast conversion are needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Pieces:
    """A SentencePiece unigram vocabulary: pieces with their scores, by id, and T5's special ids."""
    pieces: list[tuple[str, float]]
    unk_id: int
    eos_id: int
    pad_id: int
    charsmap: bytes = field(default=b"", repr=False)  # SentencePiece's precompiled normalizer ("" = identity)


def t5_tokenizer(vocab: Pieces):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = vocab.pieces
    backend = Tokenizer(models.Unigram(pieces, unk_id=vocab.unk_id, byte_fallback=False))
    if vocab.charsmap:
        backend.normalizer = normalizers.Sequence([normalizers.Precompiled(vocab.charsmap),
                                                   normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    eos = pieces[vocab.eos_id][0]
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, vocab.eos_id)])
    return T5TokenizerFast(tokenizer_object=backend, eos_token=eos, unk_token=pieces[vocab.unk_id][0],
                           pad_token=pieces[vocab.pad_id][0], extra_ids=0, legacy=True, model_max_length=512)


def sentencepiece_t5_tokenizer(spm_model: bytes, charsmap: bytes = b""):
    """T5's tokenizer for a serialized SentencePiece model (with its normalizer's table, if any)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=spm_model)
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return t5_tokenizer(Pieces(pieces, sp.unk_id(), sp.eos_id(), sp.pad_id(), charsmap))
