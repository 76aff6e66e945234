"""Image tensors in ComfyUI's convention ([B, H, W, 3] float RGB in [0, 1]) to and from files,
and summed codes to images."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import InfinityError


def load_image(path: str) -> torch.Tensor:
    """[H, W, 3] float in [0, 1]; any mode (alpha, palette, grey) becomes RGB."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise InfinityError(f"Could not read the image {path}: {exc}") from exc
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)


def to_pil(image: torch.Tensor) -> Image.Image:
    """One [H, W, 3] image in [0, 1] as an 8-bit PIL image."""
    return Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


@torch.no_grad()
def decode_images(vae, summed_codes: torch.Tensor) -> torch.Tensor:
    """Summed codes [B, d, 1, H, W] -> images [B, H*16, W*16, 3] in [0, 1] on the CPU."""
    pixels = vae.decode(summed_codes.to(next(vae.parameters()).device))
    return ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


@torch.no_grad()
def preview_image(vae, summed_codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A cheap look at a forming image: the summed codes at the current scale's (h, w) grid,
    decoded to an (h*16, w*16) picture [B, h*16, w*16, 3]. Early scales cost almost nothing."""
    from .quantizer import resize
    return decode_images(vae, resize(summed_codes, (1, *grid)))


def label_font(size: int):
    """Pillow's built-in font at `size` px (scalable where Pillow has FreeType, else its bitmap font)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()
