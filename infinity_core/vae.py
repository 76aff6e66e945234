"""The BSQ VAE of Infinity (`infinity_vae_d32reg`): a convolutional encoder/decoder with stride 16
and a 32-channel latent, quantised to 32 bits per position by `quantizer.py`.

Module and parameter names follow the released checkpoint (`encoder.down.0.block.1.conv1.conv.weight`
...), so its state dict loads as it is. Every layer comes from an `operations` namespace
(`torch.nn` by default, `comfy.ops.*` under ComfyUI).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import quantizer
from .checkpoint import check_state_dict, read_state_dict, unwrap
from .errors import CheckpointError, InfinityError

CODEBOOK_DIM = quantizer.CODEBOOK_DIM
PATCH = 16
NUM_SCALINGS = 4  # log2(PATCH): levels 0-3 downsample, levels 1-4 upsample
WHAT = "an Infinity BSQ VAE (infinity_vae_d32reg)"
MASK_KEYS = ("quantizer.lfq.mask", "quantize.lfq.mask")  # bit weights 2^31..2^0; we never use them


@dataclass(frozen=True)
class VAEConfig:
    base_ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int


PRESETS = {"infinity_vae_d32reg": VAEConfig(128, (1, 2, 4, 4, 4), 2, 32)}


# --- building blocks ------------------------------------------------------------------------------

class Conv(nn.Module):
    """A Conv2d one level down (`<name>.conv.weight`), as in the released keys."""

    def __init__(self, ops, cin, cout, kernel, stride=1, padding=0, **factory):
        super().__init__()
        self.conv = ops.Conv2d(cin, cout, kernel, stride=stride, padding=padding, **factory)

    def forward(self, x):
        return self.conv(x)


class Norm(nn.Module):
    """GroupNorm one level down (`<name>.norm.weight`); 32 groups, or 24 when 32 does not divide."""

    def __init__(self, ops, ch, **factory):
        super().__init__()
        if ch % 32 and ch % 24:
            raise InfinityError(f"VAE width {ch} is divisible by neither 32 nor 24.")
        self.norm = ops.GroupNorm(32 if ch % 32 == 0 else 24, ch, eps=1e-6, affine=True, **factory)

    def forward(self, x):
        return self.norm(x)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, ops, cin, cout, **factory):
        super().__init__()
        self.norm1 = Norm(ops, cin, **factory)
        self.conv1 = Conv(ops, cin, cout, 3, padding=1, **factory)
        self.norm2 = Norm(ops, cout, **factory)
        self.conv2 = Conv(ops, cout, cout, 3, padding=1, **factory)
        self.nin_shortcut = Conv(ops, cin, cout, 1, **factory) if cin != cout else None

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    def __init__(self, ops, ch, **factory):
        super().__init__()
        self.conv = Conv(ops, ch, ch, 3, stride=2, **factory)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only


class Upsample(nn.Module):
    def __init__(self, ops, ch, **factory):
        super().__init__()
        self.conv = Conv(ops, ch, ch, 3, padding=1, **factory)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, ops, ch, **factory):
        super().__init__()
        self.block_1 = ResnetBlock(ops, ch, ch, **factory)
        self.block_2 = ResnetBlock(ops, ch, ch, **factory)

    def forward(self, x):
        return self.block_2(self.block_1(x))


def _blocks(ops, cin, cout, n, **factory):
    return nn.ModuleList(ResnetBlock(ops, cin if j == 0 else cout, cout, **factory) for j in range(n))


class DownLevel(nn.Module):
    def __init__(self, ops, cin, cout, n_blocks, downsample: bool, **factory):
        super().__init__()
        self.block = _blocks(ops, cin, cout, n_blocks, **factory)
        self.downsample = Downsample(ops, cout, **factory) if downsample else None

    def forward(self, x):
        for block in self.block:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class UpLevel(nn.Module):
    def __init__(self, ops, cin, cout, n_blocks, upsample: bool, **factory):
        super().__init__()
        self.block = _blocks(ops, cin, cout, n_blocks, **factory)
        self.upsample = Upsample(ops, cout, **factory) if upsample else None

    def forward(self, x):
        for block in self.block:
            x = block(x)
        return self.upsample(x) if self.upsample is not None else x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig, ops, **factory):
        super().__init__()
        widths = [cfg.base_ch * m for m in cfg.ch_mult]
        self.conv_in = Conv(ops, 3, cfg.base_ch, 3, padding=1, **factory)
        self.down = nn.ModuleList(
            DownLevel(ops, widths[i - 1] if i else cfg.base_ch, widths[i], cfg.num_res_blocks,
                      i < NUM_SCALINGS, **factory)
            for i in range(len(widths)))
        self.mid = Mid(ops, widths[-1], **factory)
        self.norm_out = Norm(ops, widths[-1], **factory)
        self.conv_out = Conv(ops, widths[-1], cfg.z_channels, 3, padding=1, **factory)

    def forward(self, x):
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        return self.conv_out(swish(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig, ops, **factory):
        super().__init__()
        widths = [cfg.base_ch * m for m in cfg.ch_mult]
        self.conv_in = Conv(ops, cfg.z_channels, widths[-1], 3, padding=1, **factory)
        self.mid = Mid(ops, widths[-1], **factory)
        # up.i is stored by level index but runs from the deepest level down to 0, with one
        # block more than the encoder per level.
        self.up = nn.ModuleList(
            UpLevel(ops, widths[min(i + 1, len(widths) - 1)], widths[i], cfg.num_res_blocks + 1,
                    1 <= i <= NUM_SCALINGS, **factory)
            for i in range(len(widths)))
        self.norm_out = Norm(ops, widths[0], **factory)
        self.conv_out = Conv(ops, widths[0], 3, 3, padding=1, **factory)

    def forward(self, z):
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(swish(self.norm_out(x)))


# --- the VAE --------------------------------------------------------------------------------------

class BSQVAE(nn.Module):
    def __init__(self, config: VAEConfig, operations=None, device=None, dtype=None):
        super().__init__()
        if config.z_channels != CODEBOOK_DIM:
            raise InfinityError(f"Only the {CODEBOOK_DIM}-bit BSQ codebook is supported; "
                                f"this VAE has {config.z_channels} latent channels.")
        ops = operations or nn
        self.config = config
        self.encoder = Encoder(config, ops, device=device, dtype=dtype)
        self.decoder = Decoder(config, ops, device=device, dtype=dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    def encode_latent(self, image: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, H, W] in [-1, 1] (H, W multiples of 16) -> latent [B, 32, H/16, W/16] fp32."""
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] % PATCH or image.shape[3] % PATCH:
            raise InfinityError(f"Expected an image [B, 3, H, W] with H and W multiples of {PATCH}, "
                                f"got {tuple(image.shape)}.")
        return self.encoder(image.to(self.dtype)).float()

    def encode_bits(self, image: torch.Tensor, schedule_or_scales) -> list[torch.Tensor]:
        """Image -> per-scale bits [B, 1, h, w, 32] uint8 for a Schedule or a list of (h, w)."""
        scales = getattr(schedule_or_scales, "scales", schedule_or_scales)
        return quantizer.encode_bits(self.encode_latent(image), scales)

    def decode(self, summed_codes: torch.Tensor) -> torch.Tensor:
        """Summed codes [B, 32, 1, H, W] or [B, 32, H, W] -> image [B, 3, 16H, 16W] in [-1, 1], fp32."""
        z = summed_codes.squeeze(2) if summed_codes.ndim == 5 else summed_codes
        # Contiguous on purpose: CPU GroupNorm on the channels-last codes loses ~1e-4 of accuracy.
        z = z.contiguous().to(self.dtype)
        return self.decoder(z).clamp(-1, 1).float()


# --- checkpoints ----------------------------------------------------------------------------------

def _tensor(sd: dict, name: str) -> torch.Tensor:
    """`name` in either spelling: `x.conv1.conv.weight` or the plain `x.conv1.weight`."""
    plain = re.sub(r"\.(conv|norm)\.(weight|bias)$", r".\2", name)
    for key in (name, plain):
        if isinstance(sd.get(key), torch.Tensor):
            return sd[key]
    raise CheckpointError(f"no tensor {name}")


def _count(sd: dict, prefix: str) -> int:
    """The number of indices 0, 1, 2, ... for which some key starts with `prefix<i>.`."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in sd):
        n += 1
    return n


def config_from_state_dict(sd: dict) -> VAEConfig:
    """The architecture, read from tensor shapes; CheckpointError if they are not a VAE's."""
    base = _tensor(sd, "encoder.conv_in.conv.weight").shape[0]
    widths = [_tensor(sd, f"encoder.down.{i}.block.0.conv1.conv.weight").shape[0]
              for i in range(_count(sd, "encoder.down."))]
    if not widths or any(w % base or (w % 32 and w % 24) for w in widths + [base]):
        raise CheckpointError(f"VAE block widths {widths} do not fit base width {base}")
    return VAEConfig(base_ch=base, ch_mult=tuple(w // base for w in widths),
                     num_res_blocks=_count(sd, "encoder.down.0.block."),
                     z_channels=_tensor(sd, "encoder.conv_out.conv.weight").shape[0])


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


def _bit_weights() -> torch.Tensor:
    return 2 ** torch.arange(CODEBOOK_DIM - 1, -1, -1, dtype=torch.int64)


def _drop_masks(path: str, sd: dict) -> dict:
    """Remove the optional mask buffers (2^31 ... 2^0), refusing any other value."""
    sd = dict(sd)
    for name in MASK_KEYS:
        mask = sd.pop(name, None)
        if mask is None:
            continue
        if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.int64
                and mask.shape == (CODEBOOK_DIM,) and torch.equal(mask, _bit_weights())):
            raise CheckpointError(f"{path}: buffer {name} should hold the bit weights 2^31 ... 2^0; "
                                  f"the file is damaged or not {WHAT}.")
    return sd


def load_vae(path: str, device="cpu", dtype=torch.float32, operations=None) -> BSQVAE:
    """Load a BSQ VAE file: the released .pth (state dict under "vae") or a plain state dict,
    .pth or .safetensors. Anything that does not fit exactly raises CheckpointError."""
    sd = _drop_masks(path, unwrap(read_state_dict(path), "vae"))
    try:
        config = config_from_state_dict(sd)
    except CheckpointError:
        config = PRESETS["infinity_vae_d32reg"]  # not a VAE at all: the key check says why
    # Always check against a 32-channel model, so another latent width shows up as wrong shapes.
    model = BSQVAE(replace(config, z_channels=CODEBOOK_DIM), operations, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = _canonical_names(sd, expected)
    try:
        sd = check_state_dict(path, sd, expected, WHAT)
    except CheckpointError as exc:
        if config.z_channels == CODEBOOK_DIM:
            raise
        lines = str(exc).split("\n")
        lines.insert(-1, f"  its latent has {config.z_channels} channels; only the {CODEBOOK_DIM}-bit "
                         f"BSQ codebook ({CODEBOOK_DIM} channels, infinity_vae_d32reg) is supported")
        raise CheckpointError("\n".join(lines)) from None
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def build_random_vae(config: VAEConfig, seed: int) -> BSQVAE:
    """A randomly initialised VAE for tests and tiny models; the same seed gives the same weights.
    Norm affines are randomised too, so a swapped or unloaded norm changes the output."""
    gen = torch.Generator().manual_seed(seed)
    model = BSQVAE(config, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Conv):
                bound = m.conv.weight[0].numel() ** -0.5
                m.conv.weight.uniform_(-bound, bound, generator=gen)
                m.conv.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(m, Norm):
                m.norm.weight.copy_(1 + 0.1 * torch.randn(m.norm.weight.shape, generator=gen))
                m.norm.bias.copy_(0.1 * torch.randn(m.norm.bias.shape, generator=gen))
    return model.eval().requires_grad_(False)


def vae_state_dict_for_file(vae: BSQVAE) -> dict[str, torch.Tensor]:
    """The state dict as the released file holds it, both mask buffers included (save it as
    `{"vae": sd}` in a .pth like the release, or as is in a .safetensors)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    for name in MASK_KEYS:
        sd[name] = _bit_weights()
    return sd
