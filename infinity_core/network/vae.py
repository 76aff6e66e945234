"""The BSQ VAEs of Infinity: a convolutional encoder/decoder, quantised to one bit per latent
channel by `quantizer.py`. `infinity_vae_d32reg` (2B) has stride 16 and a 32-channel latent;
`infinity_vae_d56_f8_14_patchify` (8B) has stride 8 and 14 channels (see patchify.py).

Module and parameter names follow the released checkpoint (`encoder.down.0.block.1.conv1.conv.weight`
...), so its state dict loads as it is. Every layer comes from an `operations` namespace
(`torch.nn` by default, `comfy.ops.*` under ComfyUI).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InfinityError
from ..schedules import VAE_STRIDE
from . import quantizer
from .layouts import layout_for
from .patchify import Patchify

@dataclass(frozen=True)
class VAEConfig:
    base_ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    z_channels: int
    patch_size: int = 16  # pixels per latent position: encoder levels 0 .. log2 - 1 downsample

    @property
    def num_scalings(self) -> int:
        return self.patch_size.bit_length() - 1


PRESETS = {"infinity_vae_d32reg": VAEConfig(128, (1, 2, 4, 4, 4), 2, 32),
           "infinity_vae_d56_f8_14_patchify": VAEConfig(128, (1, 2, 4, 4), 2, 14, patch_size=8)}


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
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return group_norm_channels_last(x, self.norm)
        return self.norm(x)


def group_norm_channels_last(x: torch.Tensor, norm: nn.GroupNorm, chunk_values: int = 2 ** 21) -> torch.Tensor:
    """GroupNorm of a channels-last [B, C, H, W] tensor, as precise as the contiguous kernel.

    torch's CPU kernel for channels-last accumulates its moments in one long fp32 pass and moves
    a decoded pixel by up to 1.5e-4 with one thread (golden tolerance 1e-4). Here the moments are
    summed with torch's cascaded sums over a slice of rows at a time (at most `chunk_values`
    values, in one reused buffer), shifted by each group's mean over the first slice so that
    no large mean cancels, and combined in float64; then one pass applies scale and shift. One
    slice-sized buffer more than torch's kernel, and as many passes over x."""
    B, C, H, W = x.shape
    G = norm.num_groups
    per = C // G

    def group(per_channel):  # [B, C] -> each channel's group total, [B, C]
        return per_channel.view(B, G, per).sum(-1, keepdim=True).expand(B, G, per).reshape(B, C)
    parts = x.split(max(1, chunk_values // (W * C)), dim=2)
    # one shift per group (each channel of a group takes it): the group's mean over the first slice
    shift_by = group(parts[0].sum(dim=(2, 3), dtype=torch.float32))[:, :, None, None] / (per * parts[0].shape[2] * W)
    buffer = torch.empty_like(parts[0], dtype=torch.float32)
    sums = torch.zeros(2, B, C, dtype=torch.float64, device=x.device)
    for part in parts:
        shifted = torch.sub(part, shift_by, out=buffer[:, :, :part.shape[2]])
        sums[0] += shifted.sum(dim=(2, 3))
        sums[1] += shifted.square_().sum(dim=(2, 3))
    count = per * H * W
    mean_shifted = group(sums[0]) / count
    var = (group(sums[1]) / count - mean_shifted ** 2).clamp_min(0)
    scale = (var + norm.eps).rsqrt() * norm.weight.to(x.device, torch.float64)
    shift = norm.bias.to(x.device, torch.float64) - (mean_shifted + shift_by[:, :, 0, 0].double()) * scale
    return torch.addcmul(shift.float()[:, :, None, None], x.float(), scale.float()[:, :, None, None]).to(x.dtype)


def swish(x):
    """x * sigmoid(x), the product made in the sigmoid's tensor (the same values: x * s == s * x):
    at the decoder's last level one full-size activation fewer."""
    return torch.sigmoid(x).mul_(x)


class ResnetBlock(nn.Module):
    def __init__(self, ops, cin, cout, **factory):
        super().__init__()
        self.norm1 = Norm(ops, cin, **factory)
        self.conv1 = Conv(ops, cin, cout, 3, padding=1, **factory)
        self.norm2 = Norm(ops, cout, **factory)
        self.conv2 = Conv(ops, cout, cout, 3, padding=1, **factory)
        self.nin_shortcut = Conv(ops, cin, cout, 1, **factory) if cin != cout else None

    def forward(self, x):
        # One step per line, so each full-size intermediate is freed as soon as the next exists.
        h = self.norm1(x)
        h = swish(h)
        h = self.conv1(h)
        h = self.norm2(h)
        h = swish(h)
        h = self.conv2(h)
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return h.add_(x)  # x + h, in h's memory


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
                      i < cfg.num_scalings, **factory)
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
                    1 <= i <= cfg.num_scalings, **factory)
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
        if config.z_channels not in quantizer.CODEBOOK_DIMS:
            raise InfinityError(f"Only the released BSQ codebooks ({' and '.join(map(str, quantizer.CODEBOOK_DIMS))} "
                                f"bits) are supported; this VAE has {config.z_channels} latent channels.")
        if config.patch_size not in (8, 16) or config.num_scalings >= len(config.ch_mult):
            raise InfinityError(f"A VAE with {len(config.ch_mult)} levels cannot downsample {config.patch_size}x; "
                                "the released VAEs downsample 16x (5 levels) or 8x (4 levels).")
        ops = operations or nn
        self.config = config
        self.encoder = Encoder(config, ops, device=device, dtype=dtype)
        self.decoder = Decoder(config, ops, device=device, dtype=dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    @property
    def patchify(self) -> Patchify:
        """How the transformer's tokens (VAE_STRIDE pixels wide) sit on this VAE's latent grid."""
        return Patchify(VAE_STRIDE // self.config.patch_size)

    @property
    def token_bits(self) -> int:
        """Bits per token of the transformer this VAE goes with (32 for 2B, 56 for 8B)."""
        return self.config.z_channels * self.patchify.factor ** 2

    def check_goes_with(self, token_bits: int) -> None:
        """Refuse to pair this VAE with a transformer whose tokens carry `token_bits` bits."""
        if token_bits != self.token_bits:
            raise InfinityError(
                f"The VAE does not go with the transformer: the transformer's tokens carry {token_bits} bits, "
                f"this VAE's {self.token_bits}. Use infinity_vae_d32reg with Infinity-2B and "
                "infinity_vae_d56_f8_14_patchify with Infinity-8B (see the README's model table).")

    def check_codes(self, summed_codes: torch.Tensor) -> None:
        """Refuse codes another VAE's latent grid made (8B codes given to the 2B VAE, or back)."""
        if summed_codes.shape[1] != self.config.z_channels:
            raise InfinityError(
                f"These codes have {summed_codes.shape[1]} channels, but this VAE decodes {self.config.z_channels}: "
                "decode them with the VAE the sampler used (the one loaded with the same transformer).")

    def encode_latent(self, image: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, H, W] in [-1, 1] (H, W multiples of 16) -> latent [B, d, H/p, W/p] fp32."""
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] % VAE_STRIDE or image.shape[3] % VAE_STRIDE:
            raise InfinityError(f"Expected an image [B, 3, H, W] with H and W multiples of {VAE_STRIDE}, "
                                f"got {tuple(image.shape)}.")
        image = image.to(self.dtype).contiguous(memory_format=layout_for(self, image.device, "encode"))
        return self.encoder(image).float()

    def encode_bits(self, image: torch.Tensor, schedule_or_scales) -> list[torch.Tensor]:
        """Image -> per-scale token bits [B, 1, h, w, D] uint8 for a Schedule or a list of token
        grids (h, w); the multi-scale quantizer itself runs on the latent grid under them."""
        patchify = self.patchify
        scales = getattr(schedule_or_scales, "scales", schedule_or_scales)
        latent_bits = quantizer.encode_bits(self.encode_latent(image), patchify.latent_scales(scales))
        return [patchify.pack_bits(b) for b in latent_bits]

    def decode(self, summed_codes: torch.Tensor) -> torch.Tensor:
        """Summed codes [B, d, 1, H, W] or [B, d, H, W] (latent grid) -> image [B, 3, pH, pW] in
        [-1, 1], fp32."""
        self.check_codes(summed_codes)
        z = summed_codes.squeeze(2) if summed_codes.ndim == 5 else summed_codes
        z = z.to(self.dtype).contiguous(memory_format=layout_for(self, z.device, "decode"))
        return self.decoder(z).clamp(-1, 1).float()


# --- architecture from shapes, and random weights -------------------------------------------------

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
    downsamplings = sum(any(k.startswith(f"encoder.down.{i}.downsample.") for k in sd) for i in range(len(widths)))
    return VAEConfig(base_ch=base, ch_mult=tuple(w // base for w in widths),
                     num_res_blocks=_count(sd, "encoder.down.0.block."),
                     z_channels=_tensor(sd, "encoder.conv_out.conv.weight").shape[0],
                     patch_size=2 ** downsamplings)


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
