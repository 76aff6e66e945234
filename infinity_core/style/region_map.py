"""The region map: the content's regions coloured by the style that paints them, each labelled
with its match, next to a thumbnail of every style image in its colour (with its own regions
outlined and numbered), so an artist sees the matching and can correct it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .references import fit_image
from .regions import StyleRegions

MAP_SIDE, THUMB_SIDE, PAD, CAPTION = 384, 112, 10, 30
BACKGROUND, INK, EDGE, UNPAINTED = (32, 32, 36), (235, 235, 235), (20, 20, 20), (70, 70, 76)
COLOURS = [(230, 97, 77), (80, 160, 230), (120, 200, 100), (240, 190, 60), (180, 110, 220), (70, 200, 200),
           (240, 140, 190), (160, 160, 160)]


def _font():
    try:
        return ImageFont.load_default(size=12)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _size(grid, side: int) -> tuple[int, int]:
    """(width, height) of a picture of an (h, w) grid whose long side is `side`."""
    h, w = grid
    scale = side / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _outlines(labels: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool: pixels on a border between two regions of `labels`, at `size` (width, height)."""
    up = F.interpolate(labels[None, None].float(), size=(size[1], size[0]), mode="nearest")[0, 0]
    edge = torch.zeros_like(up, dtype=torch.bool)
    edge[1:] |= up[1:] != up[:-1]
    edge[:, 1:] |= up[:, 1:] != up[:, :-1]
    return edge.numpy()


def _centre(labels: torch.Tensor, region: int, size: tuple[int, int]) -> tuple[float, float]:
    ys, xs = torch.nonzero(labels == region, as_tuple=True)
    h, w = labels.shape
    return (xs.float().mean().item() + 0.5) * size[0] / w, (ys.float().mean().item() + 0.5) * size[1] / h


def _painted_map(regions: StyleRegions, size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3]: each cell of the final grid in the colour mix of the styles' shares there."""
    grid = regions.schedule.final_grid
    shares = torch.stack(regions.shares(grid)).clamp_min(0)                      # [styles, h, w]
    colours = torch.tensor([COLOURS[i % len(COLOURS)] for i in range(len(shares))], dtype=torch.float32)
    total = shares.sum(0, keepdim=True)
    mixed = torch.einsum("shw,sc->hwc", shares / total.clamp_min(1e-9), colours)
    mixed = torch.where(total[0, ..., None] > 0, mixed, torch.tensor(UNPAINTED, dtype=torch.float32))
    up = F.interpolate(mixed.permute(2, 0, 1)[None], size=(size[1], size[0]), mode="nearest")[0]
    return up.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _thumbnail(image: torch.Tensor, grid, side: int) -> Image.Image:
    h, w = grid
    pixels = (fit_image(image, (h * 16, w * 16))[0].permute(1, 2, 0) + 1) / 2
    picture = Image.fromarray((pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return picture.resize(_size(grid, side), Image.BICUBIC)


def note_picture(text: str) -> Image.Image:
    """A small picture saying why there is no map."""
    picture = Image.new("RGB", (MAP_SIDE, 52), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    pen.font = _font()
    pen.text((PAD, PAD), text, fill=INK)
    return picture


def draw_region_map(regions: StyleRegions) -> Image.Image:
    plan, grid = regions.plan, regions.schedule.final_grid
    map_size, thumb_size = _size(grid, MAP_SIDE), _size(grid, THUMB_SIDE)
    rows = max(1, len(regions.styles))
    width = PAD * 3 + map_size[0] + thumb_size[0]
    height = max(PAD * 2 + CAPTION + map_size[1], PAD + rows * (thumb_size[1] + CAPTION + PAD))
    picture = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    pen.font = _font()

    painted = _painted_map(regions, map_size)
    painted[_outlines(plan.content.labels, map_size)] = EDGE
    picture.paste(Image.fromarray(painted), (PAD, PAD + CAPTION))
    mode = "hard" if regions.regions.hard else f"soft, strength {regions.regions.strength:g}"
    pen.text((PAD, PAD), f"content: {plan.content.count} regions ({mode})", fill=INK)
    pen.text((PAD, PAD + 14), "region -> style.region (score)", fill=INK)
    for match in plan.matches:
        x, y = _centre(plan.content.labels, match.region, map_size)
        label = f"{match.region + 1}->{match.style + 1}.{match.style_region + 1} ({match.score:.2f})"
        box = pen.textbbox((0, 0), label)
        left, top = PAD + x - (box[2] - box[0]) / 2, PAD + CAPTION + y - (box[3] - box[1]) / 2
        pen.rectangle([left - 2, top - 1, left + box[2] - box[0] + 2, top + box[3] - box[1] + 2], fill=BACKGROUND)
        pen.text((left, top), label, fill=INK)

    left = PAD * 2 + map_size[0]
    for i, ((ref, mask), seg) in enumerate(zip(regions.styles, plan.styles)):
        top = PAD + i * (thumb_size[1] + CAPTION + PAD)
        colour = COLOURS[i % len(COLOURS)]
        how = "mask decides" if mask is not None else f"{seg.count} regions" if seg is not None else "no image"
        pen.text((left, top), f"style {i + 1}  weight {ref.weight:g}", fill=colour)
        pen.text((left, top + 14), how, fill=INK)
        if ref.image is None:
            continue
        thumb = np.asarray(_thumbnail(ref.image, grid, THUMB_SIDE)).copy()
        if seg is not None:
            thumb[_outlines(seg.labels, thumb_size)] = colour
        picture.paste(Image.fromarray(thumb), (left, top + CAPTION))
        pen.rectangle([left - 2, top + CAPTION - 2, left + thumb_size[0] + 1, top + CAPTION + thumb_size[1] + 1],
                      outline=colour, width=2)
        if seg is not None:
            for region in range(seg.count):
                x, y = _centre(seg.labels, region, thumb_size)
                pen.text((left + x - 3, top + CAPTION + y - 6), str(region + 1), fill=colour)
    return picture
