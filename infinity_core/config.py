"""Transformer architecture, read from a checkpoint's tensor shapes and matched to known presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from .errors import InfinityError
from .patchify import Patchify

# Bits per token -> latent positions per token side. 2B: a token is one 32-bit position of
# infinity_vae_d32reg; 8B: a 2x2 block of 14-bit positions of the patchify VAE (see patchify.py).
PATCH_FACTOR_BY_TOKEN_BITS = {32: 1, 56: 2}


@dataclass(frozen=True)
class TransformerConfig:
    depth: int
    embed_dim: int
    num_heads: int
    mlp_ratio: float = 4.0
    text_channels: int = 2048
    block_chunks: int = 8
    text_maxlen: int = 512
    codebook_dim: int = 32
    norm_eps: float = 1e-6

    def __post_init__(self):
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"width {self.embed_dim} does not split into {self.num_heads} heads")
        if self.block_chunks < 1 or self.depth % self.block_chunks:
            problems.append(f"{self.depth} blocks do not split into {self.block_chunks} chunks")
        if self.text_channels < 64 or self.text_channels % (64 if self.embed_dim > 4096 else 128):
            problems.append(f"text width {self.text_channels} is not a multiple of the text pool's 128-wide heads")
        if self.codebook_dim not in PATCH_FACTOR_BY_TOKEN_BITS:
            problems.append(f"tokens of {self.codebook_dim} bits fit no released VAE (2B: 32, 8B: 56)")
        if problems:
            raise InfinityError("Not an Infinity architecture: " + "; ".join(problems) + ".")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_dim(self) -> int:
        return round(self.embed_dim * self.mlp_ratio / 256) * 256

    @property
    def patchify(self) -> Patchify:
        return Patchify(PATCH_FACTOR_BY_TOKEN_BITS[self.codebook_dim])

    @property
    def vae_codebook_dim(self) -> int:
        """Bits per latent position of the VAE this transformer goes with."""
        return self.codebook_dim // self.patchify.factor ** 2

    @property
    def pool_heads(self) -> int:
        """Heads of the text attentive pool: one per 128 T5 channels (per 64 above 4096 wide)."""
        return self.text_channels // (64 if self.embed_dim > 4096 else 128)


PRESETS = {
    "infinity_2b": TransformerConfig(depth=32, embed_dim=2048, num_heads=16, block_chunks=8),
    # also the expected shape of the 512x512 8B model (a checkpoint is read from its own shapes anyway)
    "infinity_8b": TransformerConfig(depth=40, embed_dim=3584, num_heads=28, block_chunks=8, codebook_dim=56),
}


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> TransformerConfig:
    """The architecture implied by the tensors' shapes. Raises KeyError if a needed key is absent."""
    block_ids = {tuple(int(p) for p in k.split(".")[1:4:2]) for k in state if k.startswith("block_chunks.")}
    embed_dim = state["pos_start"].shape[-1]
    ffn_dim = state["block_chunks.0.module.0.ffn.fc1.weight"].shape[0]
    return TransformerConfig(
        depth=len(block_ids),
        embed_dim=embed_dim,
        num_heads=state["block_chunks.0.module.0.sa.scale_mul_1H11"].shape[1],
        mlp_ratio=ffn_dim / embed_dim,
        text_channels=state["text_norm.weight"].shape[0],
        block_chunks=1 + max(c for c, _ in block_ids),
        text_maxlen=state["cfg_uncond"].shape[0],
        codebook_dim=state["word_embed.weight"].shape[1],
    )


def preset_name(cfg: TransformerConfig) -> str | None:
    return next((name for name, preset in PRESETS.items() if preset == cfg), None)
