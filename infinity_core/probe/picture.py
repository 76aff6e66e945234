"""The Stage Probe's pictures: a labelled grid of its images and a bar plot of how far each step's
image moves from the base image. Both come back as IMAGE tensors [1, H, W, 3] in [0, 1]."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..images import from_pil, label_font, to_pil

TILE = 256          # long side of a grid tile, px
LABEL = 24          # label band under a tile, px
GAP = 4             # between tiles, px
COLUMNS = 7         # at most, per grid row
BAR_WIDTH = 36      # plot px per step
BACKGROUND, INK, DIM, BAR = (24, 24, 28), (235, 235, 235), (110, 110, 118), (240, 160, 60)


def _tile(image: torch.Tensor) -> Image.Image:
    """One [H, W, 3] image fitted to TILE px on its long side (area-averaged when shrinking)."""
    h, w = image.shape[:2]
    size = (max(1, round(h * TILE / max(h, w))), max(1, round(w * TILE / max(h, w))))
    mode = "area" if max(h, w) > TILE else "nearest"
    return to_pil(F.interpolate(image.permute(2, 0, 1)[None].float(), size=size, mode=mode)[0].permute(1, 2, 0))


def probe_grid(images: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """Images [N, H, W, 3] in a grid, in order, each over its label."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    rows = math.ceil(len(images) / COLUMNS)
    columns = math.ceil(len(images) / rows)
    tiles = [_tile(image) for image in images]
    cell_w, cell_h = max(t.width for t in tiles), max(t.height for t in tiles) + LABEL
    grid = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP, rows * cell_h + (rows + 1) * GAP), BACKGROUND)
    pen = ImageDraw.Draw(grid)
    pen.font = label_font(15)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        x = GAP + (i % columns) * (cell_w + GAP)
        y = GAP + (i // columns) * (cell_h + GAP)
        grid.paste(tile, (x + (cell_w - tile.width) // 2, y))
        pen.text((x + 4, y + cell_h - LABEL + 4), label, fill=INK)
    return from_pil(grid)


def _axis_top(largest: float) -> float:
    """A round number at or above `largest` (1, 2 or 5 times a power of ten) for the y axis."""
    if largest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(largest))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= largest)


def difference_plot(steps: list[int], differences: list[float]) -> torch.Tensor:
    """Bars of the mean absolute pixel difference from the base image (0-255 levels), one per step."""
    if len(steps) != len(differences):
        raise ValueError(f"{len(steps)} steps but {len(differences)} differences.")
    levels = [255 * d for d in differences]
    top = _axis_top(max(levels, default=0))
    left, right, header, footer, plot_h, bar_w = 56, 16, 34, 40, 180, BAR_WIDTH
    width = left + right + bar_w * max(1, len(steps))
    picture = Image.new("RGB", (max(width, 360), header + plot_h + footer), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    pen.font = label_font(14)
    pen.text((8, 8), "mean |step image - base image| (0-255)", fill=INK)
    base_y = header + plot_h
    for tick in range(5):  # grid lines at 0, 1/4 ... of the axis
        value = top * tick / 4
        y = base_y - plot_h * tick / 4
        pen.line([left, y, left + bar_w * len(steps), y], fill=DIM if tick else INK)
        pen.text((4, y - 8), f"{value:g}", fill=DIM)
    for i, (step, level) in enumerate(zip(steps, levels)):
        x = left + bar_w * i
        if level > 0:  # PIL draws a zero-height box as a line
            pen.rectangle([x + 6, base_y - plot_h * level / top, x + bar_w - 6, base_y], fill=BAR)
        pen.text((x + bar_w / 2, base_y + 4), str(step), fill=INK, anchor="ma")
    pen.text((left, base_y + 22), "step that sees the alternative prompt", fill=DIM)
    return from_pil(picture)
