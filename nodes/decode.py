"""Summed codes to pixels: the Decode node, and the small previews the sampler shows per scale."""
from __future__ import annotations

import torch
from PIL import Image

from ..infinity_core.images import decode_images, preview_image, to_pil
from . import comfy_bridge as bridge
from ._api import io
from .common import CATEGORY, CodesIO, VaeIO, user_errors

# Tokens on the long side of a preview: at most ~384 px, quick to decode at every scale; at least
# 4, as a 1x1 grid can be too small for the VAE's group norms (and shows nothing anyway).
PREVIEW_TOKENS = (4, 24)


def preview_picture(vae, summed: torch.Tensor, grid: tuple[int, int]) -> Image.Image:
    """The first image of a batch as it stands after the scale with this (h, w) grid."""
    h, w = grid
    low, high = PREVIEW_TOKENS
    scale = min(max(1.0, low / max(h, w)), high / max(h, w))
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    return to_pil(preview_image(vae, summed[:1], small)[0])


def decode_with_progress(vae, summed: torch.Tensor) -> torch.Tensor:
    """Summed codes [B, ...] -> IMAGE [B, H, W, 3], one image at a time: the bar advances and a
    cancel stops between images. No picture on the bar: the images show on the Save or Preview
    node, and a picture on this node would grow it over its neighbours."""
    progress, images = bridge.Progress(len(summed)), []
    for i in range(len(summed)):
        bridge.check_interrupt()
        images.append(decode_images(vae, summed[i:i + 1]))
        progress.update(i + 1)
    return torch.cat(images)


class Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleDecode",
            display_name="Infinity Decode",
            category=CATEGORY,
            description="Turns the sampler's codes into images with the BSQ VAE.",
            inputs=[VaeIO.Input("vae", tooltip="From Infinity Loader."),
                    CodesIO.Input("codes", tooltip="From Infinity Scale-wise Sampler.")],
            outputs=[io.Image.Output(display_name="image", tooltip="The decoded images (a batch when the sampler "
                                                                   "made several).")],
        )

    @classmethod
    @user_errors
    def execute(cls, vae, codes):
        bridge.load(vae)
        return io.NodeOutput(decode_with_progress(vae.obj, codes.summed).to(bridge.intermediate_device()))
