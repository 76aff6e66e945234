"""A tiny random-weight model set, built from the same classes as the real models and written to
real files laid out like ComfyUI's models/ folder. Tests and the demo use it where the real
weights are absent; its images are noise."""
from __future__ import annotations

import os

import torch
from safetensors.torch import save_file

from .config import TransformerConfig
from .sharded import find_index, write_sharded
from .tiny_t5 import write_tiny_t5
from .transformer import build_random_transformer
from .vae import VAEConfig, build_random_vae, vae_state_dict_for_file

TINY_TRANSFORMER = TransformerConfig(depth=4, embed_dim=64, num_heads=2, text_channels=128, block_chunks=2)
TINY_VAE = VAEConfig(32, (1, 1, 1, 1, 1), 1, 32)
# The 8B family in miniature: 56-bit tokens over a 14-bit VAE that downsamples 8x (spatial patchify).
TINY_8B_TRANSFORMER = TransformerConfig(depth=4, embed_dim=64, num_heads=2, text_channels=128, block_chunks=2,
                                        codebook_dim=56)
TINY_8B_VAE = VAEConfig(32, (1, 1, 1, 1), 1, 14, patch_size=8)
TINY_FAMILIES = {"2b": (TINY_TRANSFORMER, TINY_VAE), "8b": (TINY_8B_TRANSFORMER, TINY_8B_VAE)}
TINY_FILES = {"transformer": ("infinity", "tiny-random-infinity.safetensors"),
              "vae": ("vae", "tiny-random-vae.pth"),
              "text_encoder": ("text_encoders", "tiny-random-t5")}
# The 8B family's transformer is a sharded folder, as the release is; the T5 is shared.
TINY_8B_FILES = {"transformer": ("infinity", "tiny-random-infinity-8b"),
                 "vae": ("vae", "tiny-random-vae-8b-patchify.pth"),
                 "text_encoder": TINY_FILES["text_encoder"]}


def write_tiny_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """Write (once) the tiny set under `models_dir`; returns the path of each part by kind."""
    paths = {kind: os.path.join(models_dir, sub, name) for kind, (sub, name) in TINY_FILES.items()}
    if not os.path.isfile(paths["transformer"]):
        os.makedirs(os.path.dirname(paths["transformer"]), exist_ok=True)
        save_file(build_random_transformer(TINY_TRANSFORMER, seed).state_dict(), paths["transformer"])
    if not os.path.isfile(paths["vae"]):
        os.makedirs(os.path.dirname(paths["vae"]), exist_ok=True)
        torch.save({"vae": vae_state_dict_for_file(build_random_vae(TINY_VAE, seed))}, paths["vae"])
    if not os.path.isfile(os.path.join(paths["text_encoder"], "config.json")):
        write_tiny_t5(paths["text_encoder"], d_model=TINY_TRANSFORMER.text_channels, seed=seed)
    return paths


def write_tiny_8b_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """Write (once) the tiny 8B-family set under `models_dir` beside the 2B one (sharing its T5);
    returns the path of each part by kind."""
    paths = {kind: os.path.join(models_dir, sub, name) for kind, (sub, name) in TINY_8B_FILES.items()}
    if find_index(paths["transformer"]) is None:  # the index is written last
        write_sharded(build_random_transformer(TINY_8B_TRANSFORMER, seed).state_dict(), paths["transformer"], shards=2)
    if not os.path.isfile(paths["vae"]):
        os.makedirs(os.path.dirname(paths["vae"]), exist_ok=True)
        torch.save({"vae": vae_state_dict_for_file(build_random_vae(TINY_8B_VAE, seed))}, paths["vae"])
    write_tiny_models(models_dir, seed)  # the shared T5 (and the 2B set beside it)
    return paths
