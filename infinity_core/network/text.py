"""Text conditioning: the T5 encoder turning prompts into packed features (a TextBatch)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import InfinityError

log = logging.getLogger(__name__)


@dataclass
class TextBatch:
    """Packed T5 features: the real tokens (with `</s>`) of each prompt, concatenated.

    `features` is [sum(lens), Ct5]; prompt i owns rows `offsets[i]:offsets[i] + lens[i]`.
    """
    features: torch.Tensor
    lens: list[int]

    @property
    def offsets(self) -> list[int]:
        out, total = [], 0
        for n in self.lens:
            out.append(total)
            total += n
        return out

    def __len__(self) -> int:
        return len(self.lens)

    def row(self, i: int) -> torch.Tensor:
        start = self.offsets[i]
        return self.features[start:start + self.lens[i]]

    def select(self, indices: list[int]) -> "TextBatch":
        return TextBatch(torch.cat([self.row(i) for i in indices]), [self.lens[i] for i in indices])

    def to(self, device=None, dtype=None) -> "TextBatch":
        return TextBatch(self.features.to(device=device, dtype=dtype), list(self.lens))

    @staticmethod
    def cat(batches: list["TextBatch"]) -> "TextBatch":
        return TextBatch(torch.cat([b.features for b in batches]), [n for b in batches for n in b.lens])


# --- T5 encoder ------------------------------------------------------------------------------------

MAX_TOKENS = 512  # the reference tokenises with max_length=512 and truncation; `</s>` is kept



def check_prompts(prompts: list[str]) -> None:
    """Refuse empty prompts (callers check before loading the text encoder too)."""
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i + 1} is a {type(prompt).__name__}, not a string")
        if not prompt.strip():
            which = f"prompt {i + 1} of {len(prompts)}" if len(prompts) > 1 else "the prompt"
            raise InfinityError(f"Text encoder: {which} is empty{' (only spaces)' if prompt else ''}. "
                                "Write a few words describing it (for example 'a cat'), or leave it out.")


class T5TextEncoder:
    """A `transformers` T5 encoder and its tokenizer, turning prompts into a packed TextBatch.

    `model` is the nn.Module (the ComfyUI layer wraps it in a ModelPatcher and may move it);
    `device` and `dtype` are read from its weights at each call."""

    def __init__(self, model: torch.nn.Module, tokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:  # the final norm's: a GGUF file's embedding may be raw blocks
        return self.model.get_encoder().final_layer_norm.weight.dtype

    @property
    def channels(self) -> int:
        return self.model.config.d_model

    def encode(self, prompts: list[str]) -> TextBatch:
        """Features of each prompt's tokens and its `</s>` (the reference's `kv_compact`, `lens`).

        Prompts longer than 512 tokens are cut to 511 tokens + `</s>`, as in the reference.
        The batch is padded to its longest prompt only: the attention mask makes that the same
        as the reference's padding to 512 for the real tokens."""
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts, not one string")
        prompts = list(prompts)
        check_prompts(prompts)
        if not prompts:
            return TextBatch(torch.zeros(0, self.channels, device=self.device), [])
        for i, count in enumerate(len(ids) for ids in self.tokenizer(prompts).input_ids):
            if count > MAX_TOKENS:
                log.warning("Prompt %d of %d has %d tokens; the text encoder reads %d, so the rest was cut: %r",
                            i + 1, len(prompts), count, MAX_TOKENS, prompts[i][:60] + "...")
        tokens = self.tokenizer(prompts, max_length=MAX_TOKENS, truncation=True, padding="longest",
                                return_tensors="pt")
        device = self.device
        mask = tokens["attention_mask"].to(device)
        with torch.no_grad():
            hidden = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=mask).last_hidden_state
        features = hidden.float()[mask.bool()]  # the real rows of each prompt, in order, prompt after prompt
        return TextBatch(features, mask.sum(dim=1).tolist())
