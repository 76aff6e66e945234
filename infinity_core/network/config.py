"""Transformer architecture, read from a checkpoint's tensor shapes and matched to known presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import InfinityError
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
        problems = [f"{name} is {value}" for name, value in (("depth", self.depth), ("width", self.embed_dim),
                    ("heads", self.num_heads), ("mlp_ratio", self.mlp_ratio)) if not value > 0]
        if problems:
            raise InfinityError("Not an Infinity architecture: " + "; ".join(problems) + ".")
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


def canonical_mlp_ratio(embed_dim: int, ffn_dim: int) -> float:
    """The mlp_ratio a checkpoint's feed-forward width stands for. Many ratios round to the same
    width (`ffn_dim` is embed_dim x mlp_ratio rounded to a multiple of 256); the default 4 is
    taken when it gives that width, else ffn_dim / embed_dim, which gives it exactly."""
    default = TransformerConfig.__dataclass_fields__["mlp_ratio"].default
    return default if round(embed_dim * default / 256) * 256 == ffn_dim else ffn_dim / embed_dim


def _dims(state: Mapping[str, torch.Tensor], key: str, rank: int) -> tuple[int, ...]:
    shape = tuple(state[key].shape)
    if len(shape) != rank or 0 in shape:
        raise InfinityError(f"{key} has shape {shape}; an Infinity checkpoint holds a {rank}-D tensor there "
                            "with no empty dimension.")
    return shape


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> TransformerConfig:
    """The architecture implied by the tensors' shapes, in canonical form. Raises KeyError if a
    needed key is absent and InfinityError if the shapes describe no Infinity model."""
    block_ids = set()
    for key in state:
        if key.startswith("block_chunks."):
            parts = key.split(".")
            if len(parts) < 5 or not (parts[1].isdigit() and parts[2] == "module" and parts[3].isdigit()):
                raise InfinityError(f"{key} is not a block key of the form block_chunks.<chunk>.module.<block>.<name>.")
            block_ids.add((int(parts[1]), int(parts[3])))
    embed_dim = _dims(state, "pos_start", 3)[-1]
    ffn_dim = _dims(state, "block_chunks.0.module.0.ffn.fc1.weight", 2)[0]
    return TransformerConfig(
        depth=len(block_ids),
        embed_dim=embed_dim,
        num_heads=_dims(state, "block_chunks.0.module.0.sa.scale_mul_1H11", 4)[1],
        mlp_ratio=canonical_mlp_ratio(embed_dim, ffn_dim),
        text_channels=_dims(state, "text_norm.weight", 1)[0],
        block_chunks=1 + max(c for c, _ in block_ids),
        text_maxlen=_dims(state, "cfg_uncond", 2)[0],
        codebook_dim=_dims(state, "word_embed.weight", 2)[1],
    )


def preset_name(cfg: TransformerConfig) -> str | None:
    return next((name for name, preset in PRESETS.items() if preset == cfg), None)
