"""Reading a BSQ VAE file into the network: the released .pth (state dict under "vae"), or a plain
state dict in .pth or .safetensors, checked strictly; and the released layout written back (tests)."""
from __future__ import annotations

import re
from dataclasses import replace

import torch

from ..errors import CheckpointError, InfinityError
from ..network import quantizer
from ..network.vae import BSQVAE, PRESETS, config_from_state_dict
from .checkpoint import check_state_dict, read_state_dict, unwrap

WHAT = "an Infinity BSQ VAE (infinity_vae_d32reg or infinity_vae_d56_f8_14_patchify)"
MASK_KEYS = ("quantizer.lfq.mask", "quantize.lfq.mask")  # bit weights 2^(d-1)..2^0; we never use them


def _canonical_names(sd: dict, expected: dict) -> dict:
    """Plain names (`x.conv1.weight`, `x.norm1.weight`) renamed to the wrapper names the model
    uses, as the reference loader accepts them; anything else is left for the strict check."""
    out = {}
    for key, value in sd.items():
        if key not in expected:
            for wrapper in ("conv", "norm"):
                alt = re.sub(r"\.(weight|bias)$", rf".{wrapper}.\1", key)
                if alt in expected and alt not in sd:
                    key = alt
                    break
        out[key] = value
    return out


def _bit_weights(dim: int) -> torch.Tensor:
    return 2 ** torch.arange(dim - 1, -1, -1, dtype=torch.int64)


def _drop_masks(path: str, sd: dict, dim: int) -> dict:
    """Remove the optional mask buffers (2^(dim-1) ... 2^0), refusing any other value."""
    sd = dict(sd)
    for name in MASK_KEYS:
        mask = sd.pop(name, None)
        if mask is None:
            continue
        if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.int64
                and mask.shape == (dim,) and torch.equal(mask, _bit_weights(dim))):
            raise CheckpointError(f"{path}: buffer {name} should hold the bit weights 2^{dim - 1} ... 2^0; "
                                  f"the file is damaged or not {WHAT}.")
    return sd


def load_vae(path: str, device="cpu", dtype=torch.float32, operations=None) -> BSQVAE:
    """Load a BSQ VAE file: the released .pth (state dict under "vae") or a plain state dict,
    .pth or .safetensors. Anything that does not fit exactly raises CheckpointError."""
    sd = unwrap(read_state_dict(path), "vae")
    try:
        config = config_from_state_dict(sd)
    except CheckpointError:
        config = PRESETS["infinity_vae_d32reg"]  # not a VAE at all: the key check says why
    # Check against a released codebook width, so another latent width shows up as wrong shapes.
    supported = config.z_channels in quantizer.CODEBOOK_DIMS
    checked = config if supported else replace(config, z_channels=PRESETS["infinity_vae_d32reg"].z_channels)
    sd = _drop_masks(path, sd, checked.z_channels)
    try:
        model = BSQVAE(checked, operations, device="meta")
    except InfinityError as exc:
        raise CheckpointError(f"{path}: {exc} This is not {WHAT}.") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = _canonical_names(sd, expected)
    try:
        sd = check_state_dict(path, sd, expected, WHAT)
    except CheckpointError as exc:
        if supported:
            raise
        lines = str(exc).split("\n")
        lines.insert(-1, f"  its latent has {config.z_channels} channels; only the released BSQ codebooks "
                         f"({' and '.join(map(str, quantizer.CODEBOOK_DIMS))} channels) are supported")
        raise CheckpointError("\n".join(lines)) from None
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def vae_state_dict_for_file(vae: BSQVAE) -> dict[str, torch.Tensor]:
    """The state dict as the released file holds it, both mask buffers included (save it as
    `{"vae": sd}` in a .pth like the release, or as is in a .safetensors)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    for name in MASK_KEYS:
        sd[name] = _bit_weights(vae.config.z_channels)
    return sd
