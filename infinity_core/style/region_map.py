"""The region map: the content's regions drawn over the picture they were found in, each tinted
with the colour of the style that paints it and numbered; next to it a thumbnail of every style
image in its colour (its own regions outlined and numbered) and a legend of which style region
each content region took, so an artist sees the matching and can correct it.

Its text is large for its size: a node shows the map at about half its size (the regions
workflow's Preview Image node), where these sizes still read as 11-16 px."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..images import label_font
from .references import fit_image
from .regions import StyleRegions

MAP_SIDE, THUMB_SIDE, PAD, GAP = 320, 128, 12, 16
TEXT, NUMBER = 22, 32          # font sizes: captions and legend; region numbers on the map
LINE = 28                      # height of a text line
TINT = 0.5                     # how much of a region's pixel is its style's colour
BACKGROUND, INK, EDGE, UNPAINTED = (32, 32, 36), (235, 235, 235), (20, 20, 20), (70, 70, 76)
COLOURS = [(230, 97, 77), (80, 160, 230), (120, 200, 100), (240, 190, 60), (180, 110, 220), (70, 200, 200),
           (240, 140, 190), (160, 160, 160)]


def _size(grid, side: int) -> tuple[int, int]:
    """(width, height) of a picture of an (h, w) grid whose long side is `side`."""
    h, w = grid
    scale = side / max(h, w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _outlines(labels: torch.Tensor, size: tuple[int, int], width: int = 1) -> np.ndarray:
    """[H, W] bool: pixels within `width` of a border between two regions of `labels`, at `size`."""
    up = F.interpolate(labels[None, None].float(), size=(size[1], size[0]), mode="nearest")[0, 0]
    edge = torch.zeros_like(up, dtype=torch.bool)
    edge[1:] |= up[1:] != up[:-1]
    edge[:, 1:] |= up[:, 1:] != up[:, :-1]
    if width > 1:
        edge = F.max_pool2d(edge[None, None].float(), width, stride=1, padding=width // 2)[0, 0, :size[1], :size[0]] > 0
    return edge.numpy()


def _label_point(labels: torch.Tensor, region: int, size: tuple[int, int]) -> tuple[float, float]:
    """Where a region's number goes, at `size`: its cell deepest inside it (farthest from its
    border and the picture's edge; the nearest to its centroid of those), so the number sits on
    the region even when the region is a ring or scattered."""
    inside = (labels == region).float()[None, None]
    depth, layer = torch.zeros_like(inside), inside
    while layer.any():  # erode one cell at a time; the picture's edge counts as a border
        depth += layer
        layer = -F.max_pool2d(-F.pad(layer, (1, 1, 1, 1)), 3, stride=1)
    ys, xs = torch.nonzero(depth[0, 0] == depth.max(), as_tuple=True)
    cy, cx = torch.nonzero(labels == region, as_tuple=True)
    nearest = ((ys - cy.float().mean()) ** 2 + (xs - cx.float().mean()) ** 2).argmin()
    h, w = labels.shape
    return (xs[nearest].item() + 0.5) * size[0] / w, (ys[nearest].item() + 0.5) * size[1] / h


def _picture(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """An IMAGE in [0, 1] (any size) cover-fitted to `size` (width, height): [H, W, 3] float 0-255."""
    pixels = (fit_image(image, (size[1], size[0]))[0].permute(1, 2, 0) + 1) / 2
    return (pixels.clamp(0, 1) * 255).numpy()


def _style_colours(regions: StyleRegions, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[H, W, 3] the colour mix of the styles' shares at each cell of the final grid, and [H, W]
    whether any style paints there."""
    grid = regions.schedule.final_grid
    shares = torch.stack(regions.shares(grid)).clamp_min(0)                      # [styles, h, w]
    colours = torch.tensor([COLOURS[i % len(COLOURS)] for i in range(len(shares))], dtype=torch.float32)
    total = shares.sum(0, keepdim=True)
    mixed = torch.einsum("shw,sc->hwc", shares / total.clamp_min(1e-9), colours)
    up = lambda x: F.interpolate(x[None], size=(size[1], size[0]), mode="nearest")[0]  # noqa: E731
    return up(mixed.permute(2, 0, 1)).permute(1, 2, 0).numpy(), up((total > 0).float())[0].numpy() > 0


def tinted_map(regions: StyleRegions, size: tuple[int, int]) -> np.ndarray:
    """[H, W, 3] uint8: the content picture with each painted cell tinted by its style colour
    (TINT of it), unpainted cells as they are, and the content regions' borders in EDGE."""
    colours, painted = _style_colours(regions, size)
    picture = regions.content_picture()
    base = _picture(picture, size) if picture is not None else np.broadcast_to(np.float32(UNPAINTED), colours.shape)
    out = np.where(painted[..., None], base * (1 - TINT) + colours * TINT, base)
    out[_outlines(regions.plan.content.labels, size, width=3)] = EDGE
    return out.round().clip(0, 255).astype(np.uint8)


def _thumbnail(image: torch.Tensor, grid, side: int) -> Image.Image:
    h, w = grid
    pixels = (fit_image(image, (h * 16, w * 16))[0].permute(1, 2, 0) + 1) / 2
    picture = Image.fromarray((pixels.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return picture.resize(_size(grid, side), Image.BICUBIC)


def note_picture(text: str) -> Image.Image:
    """A small picture saying why there is no map."""
    picture = Image.new("RGB", (MAP_SIDE * 2, PAD * 2 + 2 * LINE), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    pen.font = label_font(TEXT - 4)
    pen.text((PAD, PAD), text, fill=INK)
    return picture


def legend_lines(regions: StyleRegions) -> list[tuple[tuple, str]]:
    """(colour, text) per content region: the style region it took and the match's score."""
    return [(COLOURS[m.style % len(COLOURS)],
             f"{m.region + 1} -> style {m.style + 1}, region {m.style_region + 1} ({m.score:.2f})")
            for m in sorted(regions.plan.matches, key=lambda m: m.region)]


def draw_region_map(regions: StyleRegions) -> Image.Image:
    plan, grid = regions.plan, regions.schedule.final_grid
    map_size, thumb_size = _size(grid, MAP_SIDE), _size(grid, THUMB_SIDE)
    text_font, number_font = label_font(TEXT), label_font(NUMBER)
    styles = max(1, len(regions.styles))
    lines = legend_lines(regions)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    mode = "hard" if regions.regions.hard else f"soft, strength {regions.regions.strength:g}"
    caption, heading = f"content: {plan.content.count} regions", f"region -> style, its region (score); {mode}"
    legend_width = max([measure.textlength(t, font=text_font) + LINE for _, t in lines] +
                       [measure.textlength(heading, font=text_font)])
    right = round(PAD + max(map_size[0], measure.textlength(caption, font=text_font)) + GAP)  # styles, legend
    width = round(right + max(styles * (thumb_size[0] + GAP) - GAP, legend_width) + PAD)
    legend_top = PAD + LINE + thumb_size[1] + GAP
    height = max(PAD + LINE + map_size[1] + PAD, legend_top + LINE * (len(lines) + 1) + PAD)
    picture = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(picture)

    pen.text((PAD, PAD), caption, fill=INK, font=text_font)
    top = PAD + LINE
    picture.paste(Image.fromarray(tinted_map(regions, map_size)), (PAD, top))
    for match in plan.matches:
        x, y = _label_point(plan.content.labels, match.region, map_size)
        label = str(match.region + 1)
        box = pen.textbbox((0, 0), label, font=number_font)
        w, h = box[2] - box[0], box[3] - box[1]
        left, upper = PAD + x - w / 2, top + y - h / 2
        pen.rounded_rectangle([left - 6, upper - 4, left + w + 6, upper + h + 6], radius=6, fill=BACKGROUND,
                              outline=COLOURS[match.style % len(COLOURS)], width=3)
        pen.text((left - box[0], upper - box[1]), label, fill=INK, font=number_font)

    for i, ((ref, mask), seg) in enumerate(zip(regions.styles, plan.styles)):
        left = right + i * (thumb_size[0] + GAP)
        colour = COLOURS[i % len(COLOURS)]
        how = "mask" if mask is not None else "" if seg is not None else "no image"
        pen.text((left, PAD), f"style {i + 1}" + (f" ({how})" if how else ""), fill=colour, font=text_font)
        if ref.image is None:
            continue
        thumb = np.asarray(_thumbnail(ref.image, grid, THUMB_SIDE)).copy()
        if seg is not None:
            thumb[_outlines(seg.labels, thumb_size, width=2)] = colour
        picture.paste(Image.fromarray(thumb), (left, top))
        pen.rectangle([left - 2, top - 2, left + thumb_size[0] + 1, top + thumb_size[1] + 1], outline=colour, width=2)
        if seg is not None:
            for region in range(seg.count):
                x, y = _label_point(seg.labels, region, thumb_size)
                label = str(region + 1)
                box = pen.textbbox((0, 0), label, font=text_font)
                left_x, upper = left + x - (box[2] - box[0]) / 2, top + y - (box[3] - box[1]) / 2
                pen.rectangle([left_x - 3, upper - 2, left_x + box[2] - box[0] + 3, upper + box[3] - box[1] + 3],
                              fill=BACKGROUND)
                pen.text((left_x - box[0], upper - box[1]), label, fill=colour, font=text_font)

    pen.text((right, legend_top), heading, fill=INK, font=text_font)
    for row, (colour, text) in enumerate(lines, start=1):
        y = legend_top + row * LINE
        pen.rectangle([right, y + 4, right + LINE - 10, y + LINE - 6], fill=colour)
        pen.text((right + LINE, y), text, fill=INK, font=text_font)
    return picture
