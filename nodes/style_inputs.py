"""Images the sampler replays: style images (chainable, weighted, masked) and a content image.

Any size, aspect or channel count works: the engine fits each image to the output frame (cover and
centre-crop) and drops alpha. Encoding to bits happens in the sampler, once the output size is
known, and is cached there. The input tensors are only read, never changed.
"""
from __future__ import annotations

from ..infinity_core.errors import InfinityError
from ..infinity_core.style import StyleReference
from ..infinity_core.style.references import check_mask, check_picture
from ._api import io
from .common import CATEGORY, ContentIO, StyleIO, user_errors


def _masks(mask, count: int) -> list:
    """One mask (or None) per style image: a single mask serves them all, or one each."""
    if mask is None:
        return [None] * count
    if mask.ndim == 2:
        return [mask] * count
    if mask.shape[0] == 1:
        return [mask[0]] * count
    if mask.shape[0] != count:
        raise InfinityError(f"The mask batch holds {mask.shape[0]} masks for {count} style images: give one "
                            "mask for all of them, or one per image.")
    return list(mask)


class StyleImageEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleStyleImageEncoder",
            display_name="Infinity Style Image Encoder",
            category=CATEGORY,
            description="A style reference for Infinity Scale-wise Sampler. Chain several to mix styles; each image "
                        "of a batch becomes a style of its own. Without any style image the style prompt alone is "
                        "the style.",
            inputs=[
                io.Image.Input("image", tooltip="The style image: any size (it is fitted to the output frame); "
                                                "alpha is ignored. A batch adds one style per image."),
                io.Float.Input("weight", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="How much of the shared attention this style gets, relative to the others "
                                       "(1 = as in the paper, 0 = off)."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Where in the output this style applies (white = here). Any size: it is "
                                      "fitted to the output frame like the image."),
                StyleIO.Input("styles", optional=True,
                              tooltip="Styles from earlier Infinity Style Image Encoder nodes; this one is added "
                                      "after them."),
            ],
            outputs=[StyleIO.Output(display_name="styles", tooltip="The styles so far (earlier ones, then this "
                                                                   "one's), for the sampler or another encoder.")],
        )

    @classmethod
    @user_errors
    def execute(cls, image, weight, mask=None, styles=None):
        check_picture(image, "style image")
        if mask is not None:
            check_mask(mask)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise InfinityError(f"weight must be a number, 0 (off) or more; got {weight!r}.")
        images = list(image) if image.ndim == 4 else [image]
        added = tuple(StyleReference(picture, weight, m) for picture, m in zip(images, _masks(mask, len(images))))
        return io.NodeOutput(tuple(styles or ()) + added)


class ContentImageEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="InfinityStyleContentImageEncoder",
            display_name="Infinity Content Image Encoder",
            category=CATEGORY,
            description="Restyle an existing picture: the content path replays this image instead of sampling "
                        "the content prompt, so the result keeps its layout in the new style.",
            inputs=[io.Image.Input("image", tooltip="The picture to restyle: one image, any size (it is fitted to "
                                                    "the output frame; pick aspect 'from content image' on the "
                                                    "sampler to keep all of it).")],
            outputs=[ContentIO.Output(display_name="content", tooltip="The picture to restyle, for the sampler's "
                                                                      "content input.")],
        )

    @classmethod
    @user_errors
    def execute(cls, image):
        check_picture(image, "content image")
        if image.ndim == 4 and image.shape[0] != 1:
            raise InfinityError(f"Got a batch of {image.shape[0]} content images; a run restyles one. Pick one "
                                "with an image-from-batch node, or run them one at a time.")
        return io.NodeOutput(image[0] if image.ndim == 4 else image)
