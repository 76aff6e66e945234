"""Scale schedules: the grid (h, w) of every scale, per aspect template and pixel budget.

Infinity was trained on 15 aspect templates; for each, 13 scales make the 1M (1024^2-class)
schedule, and its first 7 / 10 / 12 scales make the 0.06M / 0.25M / 0.60M ones. Images use t = 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InfinityError

VAE_STRIDE = 16
PIXEL_BUDGETS = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}

# h/w >= 1 templates; the h/w < 1 ones are these transposed.
_TALL_GRIDS = {
    1.000: [(1, 1), (2, 2), (4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32), (40, 40), (48, 48), (64, 64)],
    1.250: [(1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28), (45, 36), (55, 44), (70, 56)],
    1.333: [(1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27), (48, 36), (60, 45), (72, 54)],
    1.500: [(1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26), (48, 32), (63, 42), (78, 52)],
    1.750: [(1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24), (56, 32), (70, 40), (84, 48)],
    2.000: [(1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23), (60, 30), (74, 37), (90, 45)],
    2.500: [(1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20), (65, 26), (80, 32), (100, 40)],
    3.000: [(1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18), (72, 24), (90, 30), (111, 37)],
}


def _all_templates() -> dict[float, list[tuple[int, int]]]:
    grids = {}
    for ratio, hws in _TALL_GRIDS.items():
        grids[ratio] = hws
        if ratio != 1.0:
            grids[int(1 / ratio * 1000) / 1000] = [(w, h) for h, w in hws]  # 0.8, 0.75, 0.666, ...
    return grids


TEMPLATE_GRIDS = _all_templates()
H_DIV_W_TEMPLATES = tuple(TEMPLATE_GRIDS)


@dataclass(frozen=True)
class Schedule:
    """The scales of one generation: `scales[si]` is the (h, w) token grid of step si."""
    h_div_w: float
    pn: str
    scales: tuple[tuple[int, int], ...]

    @property
    def final_grid(self) -> tuple[int, int]:
        return self.scales[-1]

    @property
    def image_hw(self) -> tuple[int, int]:
        h, w = self.final_grid
        return h * VAE_STRIDE, w * VAE_STRIDE

    @property
    def rope_grid(self) -> tuple[int, int]:
        """RoPE positions live on the final grid of the 1M schedule of the same aspect."""
        return TEMPLATE_GRIDS[self.h_div_w][-1]

    @property
    def token_counts(self) -> list[int]:
        return [h * w for h, w in self.scales]

    def __len__(self) -> int:
        return len(self.scales)


def nearest_template(h_div_w: float) -> float:
    return min(H_DIV_W_TEMPLATES, key=lambda t: abs(t - h_div_w))


def schedule(h_div_w: float, pn: str = "1M") -> Schedule:
    """The schedule of the template nearest to `h_div_w` at pixel budget `pn`."""
    if pn not in PIXEL_BUDGETS:
        raise InfinityError(f"Unknown pixel budget {pn!r}; choose one of {', '.join(PIXEL_BUDGETS)}.")
    if not h_div_w > 0:
        raise InfinityError(f"Aspect ratio h/w must be positive, got {h_div_w}.")
    template = nearest_template(h_div_w)
    return Schedule(template, pn, tuple(TEMPLATE_GRIDS[template][:PIXEL_BUDGETS[pn]]))


def schedule_for_size(height: int, width: int, pn: str = "1M") -> Schedule:
    if height <= 0 or width <= 0:
        raise InfinityError(f"Image size must be positive, got {width}x{height}.")
    return schedule(height / width, pn)
