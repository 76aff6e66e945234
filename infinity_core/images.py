"""Image tensors in ComfyUI's convention ([B, H, W, 3] float RGB in [0, 1]) to and from files,
and summed codes to images."""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image

from .errors import InfinityError

_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # what Pillow makes of 16-bit grey PNG / TIFF


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from any PIL image; alpha is dropped. 16-bit grey is scaled by
    65535 (Pillow's own RGB conversion clips it at 255, turning the picture almost white)."""
    if img.mode in _SIXTEEN_BIT:
        grey = np.asarray(img, dtype=np.float32) / 65535.0
    elif img.mode == "F":
        grey = np.asarray(img, dtype=np.float32)
    else:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1)


def from_pil(picture: Image.Image) -> torch.Tensor:
    """A picture the pack drew -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(pil_to_rgb(picture))[None]


# Pictures whose shorter side is at least twice this are reduced by a whole factor as they are read,
# to a shorter side of KEEP_SIDE..2*KEEP_SIDE px: still more than the largest output side (1776 px),
# and the fitting to the output frame does the rest.
KEEP_SIDE = 2048
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the turn that makes the picture upright
_REDUCIBLE_AS = {"1": "L", "P": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}  # modes reduce() lacks


def open_picture(path: str) -> Image.Image:
    """A picture file, read: turned upright by its EXIF orientation (a phone photo, as ComfyUI's
    LoadImage turns it) and reduced as it is read when it is large, so the peak memory stays near
    the decoded file's 8-bit pixels (a JPEG is decoded at 1/2 to 1/8 scale directly, without even those)."""
    if os.path.isdir(path):
        raise InfinityError(f"{path} is a folder, not an image: give the path of an image file.")
    try:
        with warnings.catch_warnings():
            # up to Pillow's hard limit (178 M pixels) a large picture is expected here, and reduced
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            orientation = img.getexif().get(0x0112, 1)
            factor = min(img.size) // KEEP_SIDE
            if factor >= 2:
                img.draft(img.mode, (img.width // factor, img.height // factor))  # JPEG only; others ignore it
            img.load()
            factor = min(img.size) // KEEP_SIDE
            if factor >= 2:
                picture = (img.convert(_REDUCIBLE_AS[img.mode]) if img.mode in _REDUCIBLE_AS else img).reduce(factor)
            else:
                picture = img.copy()
    except Image.DecompressionBombError as exc:
        raise InfinityError(f"Could not read the image {path}: {exc}. Make a smaller copy of it first.") from None
    except (OSError, ValueError) as exc:
        raise InfinityError(f"Could not read the image {path}: {exc}") from exc
    return picture.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else picture


def load_image(path: str) -> torch.Tensor:
    """[H, W, 3] float in [0, 1]; any mode (alpha, palette, grey, 16-bit) becomes RGB (see open_picture)."""
    return torch.from_numpy(pil_to_rgb(open_picture(path)))


def to_pil(image: torch.Tensor) -> Image.Image:
    """One [H, W, 3] image in [0, 1] as an 8-bit PIL image."""
    return Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


@torch.no_grad()
def decode_images(vae, summed_codes: torch.Tensor) -> torch.Tensor:
    """Summed codes [B, d, 1, H, W] (latent grid) -> images [B, pH, pW, 3] in [0, 1] on the CPU."""
    pixels = vae.decode(summed_codes.to(next(vae.parameters()).device))
    return ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


@torch.no_grad()
def preview_image(vae, summed_codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A cheap look at a forming image: the summed codes at the latent grid under the current
    scale's (h, w) token grid, decoded to an (h*16, w*16) picture [B, h*16, w*16, 3]. Early
    scales cost almost nothing."""
    from .network.quantizer import resize
    return decode_images(vae, resize(summed_codes, (1, *vae.patchify.latent_grid(grid))))


def label_font(size: int):
    """Pillow's built-in font at `size` px (scalable where Pillow has FreeType, else its bitmap font)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()
