"""Tiny random models for tests, built from the same classes as the real ones."""
import torch

from infinity_core.network.text import TextBatch
from infinity_core.tiny import TINY_FAMILIES, TINY_TRANSFORMER  # noqa: F401 (TINY_TRANSFORMER: for test_loading)
from infinity_core.network.transformer import build_random_transformer
from infinity_core.network.vae import build_random_vae


def tiny_models(seed: int = 0, family: str = "2b"):
    """A tiny transformer and VAE of the 2B family, or of the 8B one (spatial patchify)."""
    transformer, vae = TINY_FAMILIES[family]
    return build_random_transformer(transformer, seed), build_random_vae(vae, seed)


def random_text(tokens: int, seed: int, channels: int = 128) -> TextBatch:
    gen = torch.Generator().manual_seed(seed)
    return TextBatch(torch.randn(tokens, channels, generator=gen), [tokens])


def random_image(h: int, w: int, seed: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(h, w, channels, generator=torch.Generator().manual_seed(seed))
