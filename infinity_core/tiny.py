"""A tiny random-weight model set, built from the same classes as the real models and written to
real files laid out like ComfyUI's models/ folder. Tests and the demo use it where the real
weights are absent; its images are noise."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import torch
from safetensors.torch import save_file

from .network.config import TransformerConfig
from .network.transformer import build_random_transformer
from .network.vae import VAEConfig, build_random_vae
from .tiny_t5 import write_tiny_t5
from .weights.sharded import find_index, write_sharded
from .weights.vae_file import vae_state_dict_for_file

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


MANIFEST = "tiny-models.sha256.json"


def default_cache_dir() -> str:
    """Where the command lines keep the tiny set: the user's cache folder."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "infinitystyle", "tiny-models")


def write_tiny_models(models_dir: str, seed: int = 0) -> dict[str, str]:
    """Write the tiny set under `models_dir`, or reuse it when every file is as written (checked
    against a manifest of hashes: a damaged or half-written set is built again, since nothing
    here can be downloaded). Returns the path of each part by kind."""
    paths = {kind: os.path.join(models_dir, sub, name) for kind, (sub, name) in TINY_FILES.items()}
    manifest = os.path.join(models_dir, MANIFEST)
    if _hashes(models_dir, paths) == _read_manifest(manifest):
        return paths
    for path in paths.values():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(build_random_transformer(TINY_TRANSFORMER, seed).state_dict(), paths["transformer"])
    torch.save({"vae": vae_state_dict_for_file(build_random_vae(TINY_VAE, seed))}, paths["vae"])
    write_tiny_t5(paths["text_encoder"], d_model=TINY_TRANSFORMER.text_channels, seed=seed)
    with open(manifest, "w", encoding="utf-8") as f:
        json.dump(_hashes(models_dir, paths), f, indent=1, sort_keys=True)
    return paths


def _hashes(models_dir: str, paths: dict[str, str]) -> dict[str, str]:
    """sha256 of every file of the set, by path relative to the models folder."""
    files = []
    for path in paths.values():
        if os.path.isdir(path):
            files += [os.path.join(here, name) for here, _, names in os.walk(path) for name in names]
        elif os.path.isfile(path):
            files.append(path)
    out = {}
    for file in sorted(files):
        with open(file, "rb") as f:
            out[os.path.relpath(file, models_dir).replace(os.sep, "/")] = hashlib.sha256(f.read()).hexdigest()
    return out


def _read_manifest(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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
