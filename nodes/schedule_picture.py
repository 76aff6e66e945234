"""The stage schedule as a picture: every scale step with its token grid, the key, fine and
initialization steps coloured, the pixel budgets' last steps marked. Drawn for the square
schedule at 1M (13 scales); other aspects have the same steps with other grid shapes."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..infinity_core.images import label_font
from ..infinity_core.schedules import PIXEL_BUDGETS, schedule
from ..infinity_core.style import Stages, describe_schedule

CELL, MARGIN, TOP, LABEL = 72, 12, 44, 80
BACKGROUND, INK, DIM, WARN = (32, 32, 36), (230, 230, 230), (120, 120, 128), (255, 110, 90)
ROLES = {  # role -> (label, colour, the switch that turns it on)
    "init": ("init", (90, 140, 220), "feature_init"),
    "key": ("key", (240, 160, 60), "key_sharing"),
    "fine": ("fine", (90, 190, 120), "query_sharing"),
}


def _ranges(steps) -> str:
    """{4, 5, 6, 7, 9} -> '4-7,9'."""
    runs = []
    for step in sorted(steps):
        if runs and step == runs[-1][1] + 1:
            runs[-1][1] = step
        else:
            runs.append([step, step])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs) or "-"


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def _summary(stages: Stages) -> list[str]:
    layers = "all" if stages.layers is None else (
        f"{stages.layers[0]}-last" if stages.layers[1] == -1 else f"{stages.layers[0]}-{stages.layers[1]}")
    return [f"key steps {_ranges(stages.key_steps)} | fine steps {_ranges(stages.fine_steps)}"
            f" | layers {layers} | uncond {_on_off(stages.uncond)}",
            f"Feature Init {_on_off(stages.feature_init)}"
            f" | Key Sharing {_on_off(stages.key_sharing)} ({stages.key_strength:.2f})"
            f" | Query Sharing {_on_off(stages.query_sharing)} ({stages.fine_strength:.2f})"]


def draw_schedule(stages: Stages) -> Image.Image:
    square = schedule(1.0, "1M")
    steps = describe_schedule(square, stages)
    width = 2 * MARGIN + CELL * len(steps) + LABEL  # room for the budget labels
    picture = Image.new("RGB", (width, TOP + CELL + 40 + 14 * len(PIXEL_BUDGETS)), BACKGROUND)
    pen = ImageDraw.Draw(picture)
    pen.font = label_font(12)
    for row, line in enumerate(_summary(stages)):
        pen.text((MARGIN, 6 + 16 * row), line, fill=INK)

    biggest = square.final_grid[0]
    for step, (h, w), role in steps:
        x = MARGIN + CELL * step
        label, colour, switch = ROLES.get(role, ("", DIM, None))
        if switch is not None and not getattr(stages, switch):
            colour, label = DIM, label + " off"
        side = 8 + (CELL - 24) * h / biggest  # the token grid, drawn to scale
        left, top = x + (CELL - side) / 2, TOP + (CELL - 16 - side) / 2
        pen.rectangle([left, top, left + side, top + side], fill=colour if role else None, outline=colour)
        pen.text((x + 4, TOP + CELL - 14), f"{step}: {h}x{w}", fill=INK)
        pen.text((x + 4, TOP + CELL + 2), label, fill=colour)

    y = TOP + CELL + 22
    for name, count in PIXEL_BUDGETS.items():  # which steps each budget runs
        pen.line([MARGIN, y + 6, MARGIN + CELL * count - 4, y + 6], fill=DIM, width=2)
        pen.text((MARGIN + CELL * count + 2, y), f"{name}: 0-{count - 1}", fill=INK)
        y += 14

    beyond = sorted(s for s in stages.key_steps | stages.fine_steps if s >= len(steps))
    if beyond:
        pen.text((MARGIN, y), f"steps {_ranges(beyond)} are past the last scale ({len(steps) - 1})", fill=WARN)
    return picture


def as_image_tensor(picture: Image.Image) -> torch.Tensor:
    """PIL -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)[None]
