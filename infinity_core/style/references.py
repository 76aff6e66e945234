"""Style and content images: fitted to the output frame and encoded to per-scale bits, once.

Images use ComfyUI's IMAGE convention ([H, W, C] or [1, H, W, C] float in [0, 1]); masks are
[H, W] in [0, 1] over the output image. Both are resized to cover the target size and
centre-cropped, so any size or aspect works.
"""
from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import InfinityError
from ..schedules import Schedule


@dataclass
class StyleReference:
    """One style: an image (None = a text-only style, sampled from the style prompt), a weight
    that scales its share of the shared attention (0 = off), and an optional mask of the output
    regions it applies to."""
    image: Optional[torch.Tensor] = None
    weight: float = 1.0
    mask: Optional[torch.Tensor] = None


def check_picture(tensor: torch.Tensor, what: str) -> None:
    """Refuse an empty picture or one holding NaN / infinity (an API prompt can send either)."""
    if tensor.ndim >= 2 and 0 in tensor.shape:
        raise InfinityError(f"The {what} is empty (shape {tuple(tensor.shape)}): give a picture with pixels.")
    if not torch.isfinite(tensor).all():
        raise InfinityError(f"The {what} holds NaN or infinite values: give a picture with values from 0 to 1.")


MASK_SLACK = 1e-3  # rounding in other nodes' mask arithmetic; values this close to 0..1 are clamped


def check_mask(mask: torch.Tensor) -> None:
    """Refuse what is not a mask: ComfyUI's MASK is [H, W] or a batch [B, H, W] of values 0 to 1."""
    check_picture(mask, "mask")
    if mask.ndim not in (2, 3):
        raise InfinityError(f"A mask is [H, W] (or a batch [B, H, W]); this one has shape {tuple(mask.shape)}. "
                            "Connect a MASK output, such as Load Image's.")
    low, high = float(mask.min()), float(mask.max())
    if low < -MASK_SLACK or high > 1 + MASK_SLACK:
        raise InfinityError(f"Mask values go from 0 (the style does not paint here) to 1 (it paints here); this mask "
                            f"holds {low:g} to {high:g}. Rescale it to 0-1 first (or use Image To Mask).")


def _as_bchw(image: torch.Tensor) -> torch.Tensor:
    check_picture(image, "image")
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise InfinityError(f"Expected one image, got a batch of {image.shape[0]}; give each image separately.")
        image = image[0]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise InfinityError(f"Expected an image [H, W, C] with 1, 3 or 4 channels, got shape {tuple(image.shape)}.")
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, 3)
    return image[..., :3].permute(2, 0, 1)[None].float()  # alpha is dropped


def _cover_crop(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize [B, C, h, w] to cover `size`, then take the centre crop of exactly that size."""
    H, W = size
    h, w = x.shape[-2:]
    scale = max(H / h, W / w)
    nh, nw = max(H, round(h * scale)), max(W, round(w * scale))
    if (nh, nw) != (h, w):
        kwargs = {"antialias": True} if mode == "bicubic" else {}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kwargs)
    top, left = (nh - H) // 2, (nw - W) // 2
    return x[..., top:top + H, left:left + W]


def fit_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """IMAGE -> [1, 3, H, W] in [-1, 1] at the output size."""
    x = _cover_crop(_as_bchw(image), size, "bicubic").clamp(0, 1)
    return x * 2 - 1


def fit_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """MASK of any size -> [H, W] in [0, 1] at the output size."""
    check_mask(mask)
    if mask.ndim == 3:
        if mask.shape[0] != 1:
            raise InfinityError(f"Expected one mask per style, got a batch of {mask.shape[0]}.")
        mask = mask[0]
    if mask.ndim != 2:
        raise InfinityError(f"Expected a mask [H, W], got shape {tuple(mask.shape)}.")
    return _cover_crop(mask.float()[None, None], size, "bilinear").clamp(0, 1)[0, 0]


def mask_on_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The share of each token cell of an (h, w) grid that the mask covers: [h, w]."""
    return F.adaptive_avg_pool2d(mask[None, None], grid)[0, 0]


def tensor_digest(tensor: torch.Tensor) -> str:
    """A key for a tensor's content (an image, text features): equal values, equal keys."""
    values = tensor.detach().float().contiguous().cpu()
    return hashlib.sha1(values.numpy().tobytes()).hexdigest() + str(tuple(values.shape))


def object_token(obj) -> str:
    """A key for one model object: id() can be reused after an object is freed; a token stored
    on the object cannot."""
    if not hasattr(obj, "_bits_cache_token"):
        obj._bits_cache_token = uuid.uuid4().hex
    return obj._bits_cache_token


class BitsCache:
    """Per-scale bits of encoded images, by (image content, VAE, schedule): a style reused across
    prompts or seeds is encoded once."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._entries: OrderedDict = OrderedDict()
        self.encodes = 0  # how many encodes ran, for tests and benchmarks

    def bits(self, vae, image: torch.Tensor, schedule: Schedule) -> list[torch.Tensor]:
        key = (tensor_digest(image), object_token(vae), schedule.scales)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        fitted = fit_image(image, schedule.image_hw).to(next(vae.parameters()).device)
        with torch.no_grad():
            value = [b.cpu() for b in vae.encode_bits(fitted, schedule.scales)]
        self.encodes += 1
        self._entries[key] = value
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value


BITS_CACHE = BitsCache()
