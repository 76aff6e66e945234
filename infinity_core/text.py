"""Text conditioning: packed T5 features of one or more prompts."""
from __future__ import annotations

from dataclasses import dataclass

import torch


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
